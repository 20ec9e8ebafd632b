"""The whole embedded Kubernetes in one object: API server, Job controller, kubelet.

::

    with EmbeddedCluster(Path("/tmp/c2d"), [Path("knative/crd.yaml")]) as cluster:
        batch = kubernetes.client.BatchV1Api(cluster.api_client())
        ...  # or: KUBECONFIG=/tmp/c2d/kubeconfig kubectl get pods

Layout of ``workdir``: ``kubeconfig``, ``logs/<ns>/<pod>/<container>.log`` (pod
logs, served by the API server), ``volumes/<ns>/<claim>/`` (one folder per
PersistentVolumeClaim), ``pods/<uid>/`` (emptyDir, configMap and secret
volumes of running pods), and with ``persist=True`` ``store/`` (the API
objects, so that a restarted cluster keeps them). With ``apiserver_process=True``
the API server runs as a child process (its log: ``apiserver.log``) instead of
threads of this one; the stack runs it so. With ``audit=True`` it appends an
audit.k8s.io/v1 Event per write request to ``audit.log`` (the benchmark's
instants of creation).

The controllers reach the API server only over HTTP with the official client,
through the kubeconfig written here, as they would on a real cluster.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import TracebackType
from typing import Any

from kubernetes import client, config

from devstack.apiserver import APIServer
from devstack.apiserver.process import APIServerProcess
from devstack.jobcontroller import JobController
from devstack.kubeconfig import write_kubeconfig
from devstack.kubelet import Kubelet

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CRDS = [REPO_ROOT / "knative" / "crd.yaml"]
CLIENT_POOL_SIZE = 64


class EmbeddedCluster:
    """Start with :meth:`start` (or ``with``); stop with :meth:`stop`. Not restartable."""

    def __init__(
        self,
        workdir: Path,
        crd_files: list[Path] | None = None,
        persist: bool = False,
        kubelet_mode: str | None = None,
        job_retry_backoff: float = 0.0,
        namespace: str = "default",
        apiserver_process: bool = False,
        audit: bool = False,
    ) -> None:
        self.workdir = Path(workdir)
        self.crd_files = list(DEFAULT_CRDS if crd_files is None else crd_files)
        self.persist = persist
        self.namespace = namespace
        self.log_dir = self.workdir / "logs"
        self.volumes_dir = self.workdir / "volumes"
        self.kubeconfig = self.workdir / "kubeconfig"
        self.audit_log = self.workdir / "audit.log" if audit else None
        self.url = ""
        self._kubelet_mode = kubelet_mode
        self._job_retry_backoff = job_retry_backoff
        self._apiserver_process = apiserver_process
        self._clients: list[client.ApiClient] = []
        self.apiserver: APIServer | APIServerProcess | None = None
        self.jobs: JobController | None = None
        self.kubelet: Kubelet | None = None

    @property
    def kubelet_mode(self) -> str:
        """``bwrap`` (containers see their real mount paths) or ``rewrite``."""
        if self.kubelet is None:
            raise RuntimeError("the cluster is not started")
        return self.kubelet.mode

    def api_client(self) -> client.ApiClient:
        """An official-client ``ApiClient`` configured from this cluster's kubeconfig.

        Its pool keeps up to CLIENT_POOL_SIZE connections: the kubelet's informers hold
        theirs for their watches, and each running pod's worker writes its status. With
        the client's default (5 per CPU) a pod burst opened connections only to close
        them again ("Connection pool is full, discarding connection").
        """
        configuration = client.Configuration()
        configuration.connection_pool_maxsize = CLIENT_POOL_SIZE
        api = config.new_client_from_config(config_file=str(self.kubeconfig),
                                            client_configuration=configuration)
        self._clients.append(api)
        return api

    def start(self) -> EmbeddedCluster:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(exist_ok=True)
        try:
            common: dict[str, Any] = {
                "crd_files": self.crd_files, "log_dir": self.log_dir, "host": "127.0.0.1",
                "port": 0, "data_dir": self.workdir / "store" if self.persist else None,
                "audit_log": self.audit_log}
            self.apiserver = (
                APIServerProcess(**common, log_path=self.workdir / "apiserver.log")
                if self._apiserver_process else APIServer(**common))
            self.url = self.apiserver.start()
            write_kubeconfig(self.url, self.kubeconfig, namespace=self.namespace)
            self.kubelet = Kubelet(
                self.api_client(), self.log_dir, self.workdir, mode=self._kubelet_mode
            )
            self.jobs = JobController(self.api_client(), retry_backoff=self._job_retry_backoff)
            self.kubelet.start()
            self.jobs.start()
            for informer in (self.kubelet.pods, self.jobs.jobs, self.jobs.pods):
                if not informer.wait_synced(timeout=10):
                    raise RuntimeError(f"{informer.name} informer did not sync with {self.url}")
        except BaseException:
            self.stop()
            raise
        log.info("embedded cluster at %s (kubeconfig %s, kubelet mode %s)",
                 self.url, self.kubeconfig, self.kubelet.mode)
        return self

    def stop(self) -> None:
        """Stop the controllers, every container process, then the API server."""
        if self.jobs is not None:
            self.jobs.stop()
        if self.kubelet is not None:
            self.kubelet.stop()
        if self.apiserver is not None:
            self.apiserver.stop()
        for api in self._clients:
            api.close()
        self._clients.clear()

    def __enter__(self) -> EmbeddedCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
