"""The embedded kubelet: runs the pods of the single node ``c2d-embedded`` as local processes.

It watches pods over HTTP like a node's kubelet, binds unscheduled pods to its
node (the scheduler's job, trivial with one node), runs each pod in a
:class:`~devstack.kubelet.worker.PodWorker`, and finishes deletions: a pod with
a ``deletionTimestamp`` gets SIGTERM, its grace period, SIGKILL, then its
object is removed (delete with grace 0). Images are never pulled: the
container's command runs with the host's tools, with ``python`` being the
interpreter of the running virtualenv and the project importable.

Containers see their volumes on their real mount paths when bubblewrap works
(``mode == "bwrap"``), otherwise mount paths are rewritten (``mode ==
"rewrite"``); see :mod:`devstack.kubelet.sandbox`. The mode is logged at start.

Logs go to ``<log_dir>/<namespace>/<pod>/<container>.log`` (stdout and stderr
interleaved; a restarted container's previous log is kept as
``<container>.previous.log``), where the API server reads them for
``pods/log``. Claims are folders under ``claims_dir`` (see
:mod:`devstack.kubelet.volumes`).

Limits (a development node, not a production one):

- no image is pulled: ``image`` is only reported back; a container without
  ``command`` cannot run (``StartError``), since the image's entrypoint is unknown;
- in ``bwrap`` mode the root file system is the host's, read-only (like
  ``readOnlyRootFilesystem: true``); only volumes and a private ``/tmp`` are
  writable. There is no network isolation: NetworkPolicies are not enforced;
- ``securityContext`` (user, capabilities), ``resources`` (requests/limits),
  probes, ``nodeSelector``/affinity/tolerations and image pull secrets are
  accepted and ignored; every pod runs as the kubelet's own user;
- configMap and secret volumes are written once at pod start, not refreshed;
- no Events are recorded; no Node object is registered.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from devstack.kubelet.informer import MERGE_PATCH, Informer, Rest, path
from devstack.kubelet.podconfig import ConfigError
from devstack.kubelet.sandbox import detect_mode
from devstack.kubelet.volumes import ClaimBinder
from devstack.kubelet.worker import (
    HOST_IP,
    NODE_NAME,
    PodWorker,
    Runtime,
    delete_pod_object,
    log_path,
)

__all__ = ["HOST_IP", "NODE_NAME", "Kubelet", "log_path"]

log = logging.getLogger(__name__)

SHUTDOWN_GRACE = 2.0  # seconds a container gets to exit when the whole stack stops
GONE_GRACE = 2.0  # a pod removed without graceful deletion: the kubelet's minimum grace


class Kubelet:
    """Runs the pods of node :data:`NODE_NAME`; ``start()`` / ``stop()``.

    ``mode`` forces ``"bwrap"`` or ``"rewrite"`` (default: bwrap when it works).
    ``extra_env`` is added to every container's environment before its own env.
    """

    def __init__(
        self,
        api_client: client.ApiClient,
        log_dir: Path,
        work_dir: Path,
        mode: str | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.mode = detect_mode(mode)
        self.claims_dir = Path(work_dir) / "volumes"
        self._rest = Rest(api_client)
        self._rt = Runtime(
            rest=self._rest,
            mode=self.mode,
            log_dir=Path(log_dir),
            pods_dir=Path(work_dir) / "pods",
            claims_dir=self.claims_dir,
            get_secret=self._getter("secrets"),
            get_configmap=self._getter("configmaps"),
            get_claim=self._getter("persistentvolumeclaims"),
            extra_env=dict(extra_env or {}),
        )
        self._workers: dict[str, PodWorker] = {}
        self._finished: set[str] = set()  # uids never to run (again): done, deleted
        self._lock = threading.Lock()
        self._stopping = False
        self._calls = ThreadPoolExecutor(max_workers=4, thread_name_prefix="kubelet-api")
        self._bind_subresource = True
        self.claims = ClaimBinder(self._rest, self.claims_dir)
        self.pods = Informer("pods", self._rest, path("pods"), self._on_pod)

    def start(self) -> None:
        log.info("kubelet: node %s, containers run in %s mode", NODE_NAME, self.mode)
        self.claims.start()
        self.pods.start()

    def stop(self) -> None:
        """Stop watching, stop every container (SIGTERM, short grace, SIGKILL), wait."""
        with self._lock:
            self._stopping = True
            workers = list(self._workers.values())
        self.pods.stop()
        self.claims.stop()
        for w in workers:
            w.stop(SHUTDOWN_GRACE, quiet=True)
        for w in workers:
            w.thread.join(timeout=SHUTDOWN_GRACE + 10)
        self._calls.shutdown(wait=True, cancel_futures=True)

    def running_pids(self, pod_uid: str | None = None) -> list[int]:
        """Process ids of the containers running now, of one pod or all (diagnostics, tests)."""
        with self._lock:
            workers = [w for uid, w in self._workers.items() if pod_uid in (None, uid)]
        return [pid for w in workers for pid in w.pids()]

    # -- events ------------------------------------------------------------

    def _on_pod(self, kind: str, pod: dict) -> None:
        meta, spec = pod["metadata"], pod.get("spec") or {}
        uid = meta["uid"]
        node = spec.get("nodeName")
        log.debug("pod %s %s rv=%s node=%s deleting=%s phase=%s", kind, meta.get("name"),
                  meta.get("resourceVersion"), node, meta.get("deletionTimestamp"),
                  (pod.get("status") or {}).get("phase"))
        if node and node != NODE_NAME:
            return
        with self._lock:
            if self._stopping:
                return
            worker = self._workers.get(uid)
            if kind == "DELETED":
                self._finished.add(uid)  # a binding still in flight must not start it
                if worker is not None:
                    worker.stop(_grace(pod, GONE_GRACE), quiet=True)
                return
            if meta.get("deletionTimestamp"):
                if worker is not None:
                    worker.stop(_grace(pod, worker.grace), deleting=True)
                else:  # nothing runs for it: finish the deletion now
                    self._finished.add(uid)
                    self._submit(self._remove, pod)
                return
            if worker is not None or uid in self._finished:
                return
            if (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                self._finished.add(uid)
                return
            if node:
                self._start_worker(pod)
            else:
                self._submit(self._bind_and_start, pod)

    def _start_worker(self, pod: dict) -> None:
        """Start a worker for ``pod`` (caller holds the lock)."""
        worker = PodWorker(self._rt, pod, self._worker_done)
        self._workers[worker.uid] = worker
        worker.start()

    def _worker_done(self, worker: PodWorker) -> None:
        with self._lock:
            self._workers.pop(worker.uid, None)
            self._finished.add(worker.uid)

    def _submit(self, fn, *args) -> None:  # noqa: ANN001
        """Run an API call off the informer thread; failures are logged, not lost."""
        def run() -> None:
            try:
                fn(*args)
            except Exception:
                log.exception("kubelet: %s failed", fn.__name__)
        try:
            self._calls.submit(run)
        except RuntimeError:  # shutting down
            pass

    # -- API calls (on the kubelet-api threads) ----------------------------

    def _bind_and_start(self, pod: dict) -> None:
        meta = pod["metadata"]
        if not self._bind(meta["name"], meta.get("namespace") or "default"):
            return
        bound = dict(pod, spec=dict(pod.get("spec") or {}, nodeName=NODE_NAME))
        with self._lock:
            uid = meta["uid"]
            if not self._stopping and uid not in self._workers and uid not in self._finished:
                self._start_worker(bound)

    def _bind(self, name: str, ns: str) -> bool:
        """Assign the pod to this node: the ``binding`` subresource, else a spec patch."""
        if self._bind_subresource:
            body = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                    "target": {"apiVersion": "v1", "kind": "Node", "name": NODE_NAME}}
            try:
                self._rest.call("POST", path("pods", ns, name, "binding"), body)
                return True
            except ApiException as exc:
                if exc.status not in (404, 405) or self._getter("pods")(
                    ns, name
                ) is None:  # a failure, or the pod is gone: nothing to bind
                    if exc.status not in (404, 409):
                        log.warning("binding pod %s/%s failed: %s", ns, name, exc)
                    return False
                log.info("no pods/binding subresource (%s); binding by patching spec.nodeName",
                         exc.status)
                self._bind_subresource = False
        try:
            self._rest.call("PATCH", path("pods", ns, name), {"spec": {"nodeName": NODE_NAME}},
                            MERGE_PATCH)
            return True
        except ApiException as exc:
            if exc.status != 404:
                log.warning("binding pod %s/%s failed: %s", ns, name, exc)
            return False

    def _remove(self, pod: dict) -> None:
        """Finish the deletion of a pod with no running container."""
        meta = pod["metadata"]
        try:
            delete_pod_object(self._rest, meta.get("namespace") or "default", meta["name"],
                              meta["uid"])
        except ApiException as exc:
            if exc.status not in (404, 409):
                log.warning("deleting pod %s failed: %s", meta["name"], exc)

    def _getter(self, resource: str) -> Callable[[str, str], dict | None]:
        def get(namespace: str, name: str) -> dict | None:
            try:
                return self._rest.get(path(resource, namespace, name))
            except ApiException as exc:
                raise ConfigError(f"reading {name!r}: {exc.status} {exc.reason}") from exc
            except Exception as exc:  # noqa: BLE001 - API unreachable: retry later
                raise ConfigError(f"reading {name!r}: {exc}") from exc
        return get


def _grace(pod: dict, default: float) -> float:
    meta = pod["metadata"]
    value = meta.get("deletionGracePeriodSeconds")
    return float(default if value is None else value)
