"""Scenarios 4 and 5: a function's cold start and the memory of its worker.

Each function runs as Knative runs it: `gunicorn functions.<stage>.app:app`, one
worker, against a bare embedded API server (no kubelet: Jobs the functions create
stay pending, so the state the events meet is stable).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import requests

from benchmarks.stats import summary
from devstack.apiserver import APIServer
from devstack.kubeconfig import write_kubeconfig
from devstack.stack import FUNCTIONS, REPO_ROOT, free_port, gunicorn_argv
from shared import events
from shared import workflow as wf

CRD = REPO_ROOT / "knative" / "crd.yaml"
POLL = 0.005  # how often a starting process is probed


@contextlib.contextmanager
def bare_api(workdir: Path) -> Iterator[Path]:
    """An embedded API server with the Workflow CRD; yields its kubeconfig."""
    server = APIServer(crd_files=[CRD], data_dir=None, log_dir=workdir / "logs")
    url = server.start()
    try:
        yield write_kubeconfig(url, workdir / "kubeconfig")
    finally:
        server.stop()


def ping_event() -> tuple[dict[str, str], bytes]:
    """A resync tick as the PingSource sends it (binary mode)."""
    headers = {"ce-specversion": "1.0", "ce-id": str(uuid.uuid4()), "ce-type": events.PING,
               "ce-source": "/apis/v1/namespaces/default/pingsources/c2d-resync",
               "content-type": "application/json"}
    return headers, b'{"reason": "resync"}'


def added_event(workflow: dict[str, Any]) -> tuple[dict[str, str], bytes]:
    """The ApiServerSource's `add` of `workflow` (binary mode)."""
    name = workflow["metadata"]["name"]
    headers = {"ce-specversion": "1.0", "ce-id": str(uuid.uuid4()),
               "ce-type": events.RESOURCE_ADD,
               "ce-source": "https://kubernetes.default.svc", "ce-kind": wf.KIND,
               "ce-name": name, "ce-namespace": "default", "ce-apiversion": wf.API_VERSION,
               "ce-subject": f"/apis/{wf.API_VERSION}/namespaces/default/workflows/{name}",
               "content-type": "application/json"}
    return headers, json.dumps(workflow).encode()


class Function:
    """`gunicorn functions.<stage>.app:app` with one worker, as the stack starts it."""

    def __init__(self, service: str, kubeconfig: Path, log_path: Path,
                 env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        argv = gunicorn_argv(FUNCTIONS[service], self.port, workers=1)
        environ = {**os.environ, "KUBECONFIG": str(kubeconfig), "LOG_LEVEL": "INFO",
                   "PYTHONPATH": str(REPO_ROOT), **(env or {})}
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.started = time.time()
        self.process = subprocess.Popen(argv, env=environ, cwd=REPO_ROOT,  # noqa: S603
                                        stdin=subprocess.DEVNULL, stdout=self.log,
                                        stderr=subprocess.STDOUT)

    def first(self, probe: Any, timeout: float = 30.0) -> float:
        """Seconds from the process start to the first time `probe()` is true."""
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited with {self.process.returncode}")
            try:
                if probe():
                    return time.time() - self.started
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.url} did not answer in {timeout} s")
            time.sleep(POLL)

    def healthy(self) -> bool:
        return requests.get(f"{self.url}/healthz", timeout=5).status_code == 200

    def post(self, message: tuple[dict[str, str], bytes]) -> int:
        headers, body = message
        return requests.post(self.url, headers=headers, data=body, timeout=30).status_code

    def worker(self) -> psutil.Process:
        """The worker process (gunicorn's only child)."""
        children = psutil.Process(self.process.pid).children()
        if len(children) != 1:
            raise RuntimeError(f"expected one gunicorn worker, found {len(children)}")
        return children[0]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def cold_start(workdir: Path, samples: int,
               services: tuple[str, ...] = tuple(FUNCTIONS)) -> dict[str, Any]:
    """Per function: process start -> first 200 on /healthz, and -> first event handled.

    Two separate starts per sample, so that neither probe warms the other up.
    The event is a resync tick (it needs the Kubernetes client and a list).
    """
    results: dict[str, Any] = {}
    with bare_api(workdir) as kubeconfig:
        for service in services:
            health, event = [], []
            for _ in range(samples):
                for probe, into in (("health", health), ("event", event)):
                    function = Function(service, kubeconfig, workdir / f"{service}.log")
                    try:
                        if probe == "health":
                            into.append(function.first(function.healthy))
                        else:
                            into.append(function.first(
                                lambda f=function: 200 <= f.post(ping_event()) < 300))
                    finally:
                        function.stop()
            results[service] = {"healthz": {"samples": health, **summary(health)},
                                "first_event": {"samples": event, **summary(event)}}
    return results


def memory(workdir: Path, events_count: int, service: str = "c2d-configure",
           workflows: int = 5) -> dict[str, Any]:
    """RSS of one worker every 100 events: resync ticks and Workflow adds, alternately.

    A few Workflows exist, so each tick lists and reconciles them and each add
    reads and re-admits one (a no-op after the first time): the steady work of a
    configure function.
    """
    from kubernetes import client, config

    from benchmarks.engine import workflow_body

    with bare_api(workdir) as kubeconfig:
        api = config.new_client_from_config(config_file=str(kubeconfig))
        custom = client.CustomObjectsApi(api)
        bodies = [custom.create_namespaced_custom_object(
            wf.GROUP, wf.VERSION, "default", wf.PLURAL, workflow_body(f"mem-{i}", "default"))
            for i in range(workflows)]
        api.close()
        function = Function(service, kubeconfig, workdir / f"{service}-memory.log")
        rss: dict[int, int] = {}
        statuses: dict[int, int] = {}
        started = time.time()
        try:
            function.first(function.healthy)
            worker = function.worker()
            rss[0] = worker.memory_info().rss
            for number in range(1, events_count + 1):
                message = ping_event() if number % 2 else added_event(
                    bodies[number % len(bodies)])
                status = function.post(message)
                statuses[status] = statuses.get(status, 0) + 1
                if number % 100 == 0 or number == events_count:
                    rss[number] = worker.memory_info().rss
            master = psutil.Process(function.process.pid).memory_info().rss
        finally:
            function.stop()
    half = max(k for k in rss if k <= events_count // 2)
    growth = (rss[events_count] - rss[half]) / rss[half] if rss.get(half) else None
    return {"service": service, "events": events_count, "seconds": time.time() - started,
            "statuses": statuses, "rss_bytes": rss, "rss_final_bytes": rss[events_count],
            "rss_at_half_bytes": rss[half], "growth_second_half": growth,
            "master_rss_bytes": master}
