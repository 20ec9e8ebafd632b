"""One pod on the node: its containers as processes, and its status in the API.

A :class:`PodWorker` thread prepares the pod's volumes, runs the init
containers one after the other, then starts the containers together, restarts
them as ``restartPolicy`` says, and reports every change through the pod's
``status`` subresource: phase ``Pending`` → ``Running`` → ``Succeeded`` /
``Failed``, conditions, and per container ``state`` / ``lastState`` /
``restartCount`` with the exit code, reason and termination message.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes.client.exceptions import ApiException

from devstack.kubelet import status as st
from devstack.kubelet.informer import MERGE_PATCH, Rest, path
from devstack.kubelet.podconfig import ConfigError, EnvResolver, Getter, expand
from devstack.kubelet.sandbox import (
    BWRAP,
    ContainerProcess,
    Mount,
    bwrap_argv,
    rewrite_paths,
)
from devstack.kubelet.volumes import container_mounts, prepare_volumes

log = logging.getLogger(__name__)

NODE_NAME = "c2d-embedded"
HOST_IP = "127.0.0.1"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEFAULT_GRACE = 30  # terminationGracePeriodSeconds when the pod does not say
CONFIG_RETRY_SECONDS = 1.0  # how often a pod waiting on a missing Secret/ConfigMap retries
RESTART_BACKOFF = 0.2  # first container restart delay (doubles, see MAX_RESTART_BACKOFF)
MAX_RESTART_BACKOFF = 10.0
REPO_ROOT = Path(__file__).resolve().parents[2]


def delete_pod_object(rest: Rest, namespace: str, name: str, uid: str) -> None:
    """Remove the pod object at once, only if it is still the pod with `uid`."""
    rest.call("DELETE", path("pods", namespace, name),
              {"gracePeriodSeconds": 0, "preconditions": {"uid": uid}})


@dataclass
class Runtime:
    """What every pod worker shares: API access, folders and the sandbox mode."""

    rest: Rest
    mode: str
    log_dir: Path
    pods_dir: Path
    claims_dir: Path
    get_secret: Getter
    get_configmap: Getter
    get_claim: Getter
    extra_env: dict[str, str] = field(default_factory=dict)

    def base_env(self, pod: dict) -> dict[str, str]:
        """What the container runtime sets before the pod's own env."""
        env = {
            "PATH": DEFAULT_PATH,
            "HOME": "/root",
            "HOSTNAME": pod["metadata"]["name"],
            "PYTHONPATH": str(REPO_ROOT),
            "LANG": "C.UTF-8",
        }
        env.update(self.extra_env)
        return env


def log_path(log_dir: Path, pod: dict, container: str) -> Path:
    """Where a container's output goes: ``<log_dir>/<namespace>/<pod>/<container>.log``."""
    meta = pod["metadata"]
    return log_dir / (meta.get("namespace") or "default") / meta["name"] / f"{container}.log"


class PodWorker:
    """Runs one pod until its containers are done or it is stopped."""

    def __init__(self, rt: Runtime, pod: dict, on_exit: Callable[[PodWorker], None]) -> None:
        self.rt = rt
        self.pod = pod
        meta, self.spec = pod["metadata"], pod.get("spec") or {}
        self.uid, self.name = meta["uid"], meta["name"]
        self.namespace = meta.get("namespace") or "default"
        self.policy = self.spec.get("restartPolicy") or "Always"
        self.grace = float(self.spec.get("terminationGracePeriodSeconds", DEFAULT_GRACE))
        self.dir = rt.pods_dir / self.uid
        self._on_exit = on_exit
        self._resolver = EnvResolver(rt.get_secret, rt.get_configmap)
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._procs: dict[str, ContainerProcess] = {}
        self._deleting = False  # the pod has a deletionTimestamp: finish it off at the end
        self._quiet = False  # the pod is gone (or the node stops): no more API writes
        self._deadline_hit = False
        self._volumes: dict[str, Path] = {}
        # status
        self._phase = "Pending"
        self._start_time = st.now()
        self._reason: str | None = None
        self._message: str | None = None
        self._conditions: list[dict] = []
        self._init = {c["name"]: self._fresh(c, "PodInitializing") for c in self._containers(True)}
        first = "PodInitializing" if self._init else "ContainerCreating"
        self._main = {c["name"]: self._fresh(c, first) for c in self._containers(False)}
        self.thread = threading.Thread(target=self._run, name=f"pod-{self.name}", daemon=True)

    # -- control -----------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def stop(self, grace: float | None = None, deleting: bool = False, quiet: bool = False) -> None:
        """Stop the containers: SIGTERM, ``grace`` seconds, SIGKILL. Returns at once."""
        grace = self.grace if grace is None else grace
        log.debug("pod %s: stop grace=%s deleting=%s quiet=%s", self.name, grace, deleting, quiet)
        with self._lock:
            self._deleting |= deleting
            self._quiet |= quiet
            self._stop.set()
            procs = list(self._procs.values())
        for proc in procs:
            threading.Thread(target=proc.stop, args=(grace,), daemon=True).start()

    def pids(self) -> list[int]:
        """Process ids of this pod's running containers (their process-group leaders)."""
        with self._lock:
            return [p.pid for p in self._procs.values()]

    # -- the pod's life ----------------------------------------------------

    def _containers(self, init: bool) -> list[dict]:
        return list(self.spec.get("initContainers" if init else "containers") or [])

    def _run(self) -> None:
        deadline = self._start_deadline_timer()
        try:
            self._conditions = st.set_condition(self._conditions, "PodScheduled", True)
            self._publish()
            if self._prepare() and self._run_init_containers():
                self._run_main_containers()
            self._finish()
        except Exception:  # never leave a pod half-run without saying so
            log.exception("pod %s/%s: worker failed", self.namespace, self.name)
            self._phase, self._reason = "Failed", "KubeletError"
            self._publish()
        finally:
            if deadline is not None:
                deadline.cancel()
            self._cleanup()
            self._on_exit(self)

    def _start_deadline_timer(self) -> threading.Timer | None:
        seconds = self.spec.get("activeDeadlineSeconds")
        if seconds is None:
            return None
        timer = threading.Timer(float(seconds), self._on_deadline)
        timer.daemon = True
        timer.start()
        return timer

    def _on_deadline(self) -> None:
        self._deadline_hit = True
        self._reason = "DeadlineExceeded"
        self._message = "Pod was active on the node longer than the specified deadline"
        self.stop()

    def _prepare(self) -> bool:
        """Create the volumes; wait (retrying) while a referenced object is missing."""
        self.dir.mkdir(parents=True, exist_ok=True)
        while not self._stop.is_set():
            try:
                self._volumes = prepare_volumes(
                    self.pod, self.dir, self.rt.claims_dir,
                    self.rt.get_secret, self.rt.get_configmap, self.rt.get_claim,
                )
                self._conditions = st.set_condition(
                    self._conditions, "PodReadyToStartContainers", True
                )
                return True
            except ConfigError as exc:
                self._set_waiting_all("CreateContainerConfigError", str(exc))
                self._stop.wait(CONFIG_RETRY_SECONDS)
        return False

    def _run_init_containers(self) -> bool:
        for c in self._containers(True):
            rc = self._run_with_restarts(c, self._init)
            if rc != 0:
                if rc is not None and not self._stop.is_set():
                    self._phase = "Failed"  # restartPolicy Never: the pod fails here
                return False
        with self._lock:
            for cs in self._main.values():
                cs["state"] = st.waiting("ContainerCreating")
        return True

    def _run_main_containers(self) -> None:
        threads = [
            threading.Thread(
                target=self._run_with_restarts, args=(c, self._main),
                name=f"pod-{self.name}-{c['name']}", daemon=True,
            )
            for c in self._containers(False)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def _finish(self) -> None:
        """Set the final phase; finish a deletion by removing the pod object."""
        codes = [
            (cs["state"].get("terminated") or {}).get("exitCode")
            for cs in self._main.values()
        ]
        if self._phase != "Failed":
            all_ran = codes and all(c is not None for c in codes)
            ok = all_ran and all(c == 0 for c in codes) and not self._deadline_hit
            self._phase = "Succeeded" if ok else "Failed"
        self._publish()
        log.debug("pod %s: finished %s deleting=%s quiet=%s", self.name, self._phase,
                  self._deleting, self._quiet)
        if self._deleting and not self._quiet:
            self._remove_pod_object()

    def _remove_pod_object(self) -> None:
        try:
            delete_pod_object(self.rt.rest, self.namespace, self.name, self.uid)
        except ApiException as exc:
            if exc.status not in (404, 409):
                log.warning("pod %s/%s: final delete failed: %s", self.namespace, self.name, exc)

    def _cleanup(self) -> None:
        with self._lock:
            procs = list(self._procs.values())
        for proc in procs:  # only after an unexpected error: normally none are left
            proc.stop(0)
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- one container -----------------------------------------------------

    def _run_with_restarts(self, c: dict, table: dict[str, dict]) -> int | None:
        """Run a container, restarting it as the restart policy says; its last exit code."""
        init = table is self._init
        restarts = 0
        while True:
            rc = self._run_once(c, table, restarts)
            if rc is None or self._stop.is_set():
                return rc
            if not self._restarts(rc) or (init and rc == 0):
                return rc
            restarts += 1
            delay = min(RESTART_BACKOFF * 2 ** (restarts - 1), MAX_RESTART_BACKOFF)
            with self._lock:
                cs = table[c["name"]]
                cs["lastState"], cs["restartCount"] = cs["state"], restarts
                if rc != 0:
                    cs["state"] = st.waiting(
                        "CrashLoopBackOff",
                        f"back-off {delay:g}s restarting failed container={c['name']} "
                        f"pod={self.name}_{self.namespace}({self.uid})",
                    )
            self._publish()
            if self._stop.wait(delay):
                return rc

    def _run_once(self, c: dict, table: dict[str, dict], restarts: int) -> int | None:
        """Start the container once and wait for it; None if stopped before it started."""
        name = c["name"]
        env, mounts = self._configure(c, table)
        if env is None:
            return None
        command = [expand(a, env) for a in (c.get("command") or [])]
        command += [expand(a, env) for a in (c.get("args") or [])]
        if not c.get("command"):
            return self._start_error(
                table, name, "no command: the embedded kubelet does not pull images, so "
                "it cannot run an image's entrypoint; set the container's command",
            )
        env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
        if "/" not in command[0] and shutil.which(command[0], path=env["PATH"]) is None:
            return self._start_error(
                table, name, f'exec: "{command[0]}": executable file not found in $PATH'
            )
        message_file = self.dir / "termination" / name
        message_file.parent.mkdir(parents=True, exist_ok=True)
        message_file.write_bytes(b"")
        message_path = c.get("terminationMessagePath") or "/dev/termination-log"
        mounts.append(Mount(message_file, message_path))
        out = log_path(self.rt.log_dir, self.pod, name)
        out.parent.mkdir(parents=True, exist_ok=True)
        if restarts and out.exists():  # `kubectl logs --previous` material
            out.replace(out.with_name(f"{name}.previous.log"))
        out.write_bytes(b"")
        argv, cwd = self._argv(command, env, mounts, c.get("workingDir"))
        container_id = f"c2d://{self.uid[:8]}-{name}-{restarts}"
        with self._lock:
            if self._stop.is_set():
                return None
            try:
                proc = ContainerProcess(argv, env, cwd, out, kill_with_parent=self.rt.mode != BWRAP)
            except OSError as exc:
                return self._start_error(table, name, str(exc))
            self._procs[name] = proc
            started = st.now()
            cs = table[name]
            cs.update(state=st.running(started), ready=True, started=True, containerID=container_id)
            if table is self._main:
                self._phase = "Running"
        self._publish()
        rc = proc.wait()
        with self._lock:
            self._procs.pop(name, None)
            if rc == 0:
                reason = "Completed"
            elif self._deadline_hit:
                reason = "DeadlineExceeded"
            else:
                reason = "Error"
            message = st.termination_message(
                message_file, out, c.get("terminationMessagePolicy") or "File", rc
            )
            cs.update(
                state=st.terminated(rc, reason, started, message, container_id),
                ready=False, started=False,
            )
            pod_ends = table is self._main and not self._restarts(rc) and all(
                "terminated" in other["state"] for other in self._main.values()
            )
        if not pod_ends:  # else _finish() reports it together with the final phase
            self._publish()
        return rc

    def _restarts(self, rc: int) -> bool:
        """Whether a container that exited with ``rc`` is started again."""
        return self.policy == "Always" or (self.policy == "OnFailure" and rc != 0)

    def _configure(self, c: dict, table: dict[str, dict]) -> tuple[dict | None, list[Mount]]:
        """The container's env and mounts; waits while a Secret/ConfigMap is missing."""
        while not self._stop.is_set():
            try:
                env = self._resolver.environment(self.pod, c, self.rt.base_env(self.pod))
                return env, container_mounts(c, self._volumes, self.pod, env)
            except ConfigError as exc:
                with self._lock:
                    table[c["name"]]["state"] = st.waiting("CreateContainerConfigError", str(exc))
                self._publish()
                self._stop.wait(CONFIG_RETRY_SECONDS)
        return None, []

    def _argv(
        self, command: list[str], env: dict[str, str], mounts: list[Mount], workdir: str | None
    ) -> tuple[list[str], str]:
        if self.rt.mode == BWRAP:
            return bwrap_argv(command, mounts, workdir, self.name), "/"
        for key, value in env.items():  # rewrite mode: see sandbox.py
            env[key] = rewrite_paths(value, mounts)
        cwd = Path(rewrite_paths(workdir, mounts)) if workdir else self.dir
        cwd.mkdir(parents=True, exist_ok=True)
        return [rewrite_paths(a, mounts) for a in command], str(cwd)

    def _start_error(self, table: dict[str, dict], name: str, message: str) -> int:
        """The runtime could not start the process: exit 128, reason StartError."""
        with self._lock:
            table[name].update(state=st.terminated(128, "StartError", None, message), ready=False)
        self._publish()
        return 128

    # -- status ------------------------------------------------------------

    @staticmethod
    def _fresh(c: dict, reason: str) -> dict:
        return {
            "name": c["name"],
            "image": c.get("image") or "",
            "imageID": "",
            "ready": False,
            "started": False,
            "restartCount": 0,
            "state": st.waiting(reason),
            "lastState": {},
        }

    def _set_waiting_all(self, reason: str, message: str) -> None:
        with self._lock:
            for cs in [*self._init.values(), *self._main.values()]:
                cs["state"] = st.waiting(reason, message)
        self._publish()

    def _publish(self) -> None:
        """Write the pod's whole status through the status subresource."""
        with self._lock:
            if self._quiet:
                return
            body = {"status": self._status()}
            try:
                self.rt.rest.call("PATCH", path("pods", self.namespace, self.name, "status"),
                                  body, MERGE_PATCH)
            except ApiException as exc:
                if exc.status == 404:
                    self._quiet = True  # the pod object is gone; nothing left to report to
                else:
                    log.warning("pod %s/%s: status update: %s", self.namespace, self.name, exc)
            except Exception as exc:  # noqa: BLE001 - API server down (stack stopping)
                log.warning("pod %s/%s: status update: %s", self.namespace, self.name, exc)

    def _status(self) -> dict:
        terminal = self._phase in ("Succeeded", "Failed")
        conds = self._conditions
        pending_init = [n for n, cs in self._init.items() if not _succeeded(cs)]
        if pending_init:
            conds = st.set_condition(
                conds, "Initialized", False, "ContainersNotInitialized",
                f"containers with incomplete status: [{' '.join(pending_init)}]",
            )
        else:
            conds = st.set_condition(conds, "Initialized", True)
        unready = [n for n, cs in self._main.items() if not cs.get("ready")]
        if unready:
            reason = "PodCompleted" if terminal else "ContainersNotReady"
            message = None if terminal else f"containers with unready status: [{' '.join(unready)}]"
            conds = st.set_condition(conds, "ContainersReady", False, reason, message)
            conds = st.set_condition(conds, "Ready", False, reason, message)
        else:
            conds = st.set_condition(conds, "ContainersReady", True)
            conds = st.set_condition(conds, "Ready", True)
        self._conditions = conds
        status = {
            "phase": self._phase,
            "conditions": conds,
            "hostIP": HOST_IP,
            "hostIPs": [{"ip": HOST_IP}],
            "podIP": HOST_IP,
            "podIPs": [{"ip": HOST_IP}],
            "startTime": self._start_time,
            "qosClass": "BestEffort",
            "containerStatuses": [dict(cs) for cs in self._main.values()],
            "reason": self._reason,
            "message": self._message,
        }
        if self._init:
            status["initContainerStatuses"] = [dict(cs) for cs in self._init.values()]
        return status


def _succeeded(cs: dict) -> bool:
    return (cs["state"].get("terminated") or {}).get("exitCode") == 0
