"""Fixtures for the stage functions: the embedded cluster, the four apps, a relay,
a dataset server and a notification receiver, all real and on loopback."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer, SimpleHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from devstack.cluster import EmbeddedCluster
from shared import settings
from shared.connection import connect
from shared.kube import Kube
from tests.functions.harness import Functions, Relay

OPERATOR_KEY = "0x" + "4c0883a69102937d6231471b5dbb6204fe5129617082792ae468d01a3f362318"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCluster]:
    with EmbeddedCluster(tmp_path_factory.mktemp("cluster")) as running:
        yield running


@pytest.fixture(scope="module")
def kube(cluster: EmbeddedCluster) -> Kube:
    """Unrestricted access for the tests themselves."""
    return Kube(connect(str(cluster.kubeconfig)))


class _Quiet:
    def log_message(self, *args: Any) -> None:  # keep pytest output readable
        pass


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An HTTP server for datasets: /lines.txt has 3 lines."""
    root = tmp_path_factory.mktemp("datasets")
    (root / "lines.txt").write_text("one\ntwo\nthree\n")

    class Handler(_Quiet, SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any):
            super().__init__(*args, directory=str(root), **kwargs)

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


class Receiver:
    """Records notification POSTs; `fail_next` makes the next N answer 503."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        self.headers: list[dict] = []
        self.fail_next = 0
        receiver = self

        class Handler(_Quiet, BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if receiver.fail_next > 0:
                    receiver.fail_next -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                receiver.received.append({"path": self.path, **json.loads(body)})
                receiver.headers.append(dict(self.headers))
                self.send_response(200)
                self.end_headers()

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def for_job(self, name: str, path: str | None = None) -> list[dict]:
        return [r for r in self.received
                if r["jobId"] == name and (path is None or r["path"] == path)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.close()


def environment(tmp: Path, receiver: Receiver, **overrides: str) -> dict[str, str]:
    """The settings every functions test runs with (local storage, notifications on)."""
    return {"C2D_NAMESPACE": "default", "C2D_STORAGE_DIR": str(tmp / "storage"),
            "OPERATOR_PRIVATE_KEY": OPERATOR_KEY, "LOG_LEVEL": "WARNING",
            "NOTIFY_START_URL": receiver.url + "/start", "NOTIFY_STOP_URL": receiver.url + "/stop",
            "maxJobDuration": "60", "JOB_DEADLINE_SECONDS": "60", "maxJobs": "10", **overrides}


@pytest.fixture(scope="module")
def functions(cluster: EmbeddedCluster, receiver: Receiver,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[Functions]:
    config = settings.load(environment(tmp_path_factory.mktemp("fn"), receiver))
    running = Functions(str(cluster.kubeconfig), config)
    yield running
    running.close()


@pytest.fixture
def relay(functions: Functions) -> Relay:
    return Relay(functions.urls)


ALGORITHM_COUNT_LINES = (
    "import json, os, pathlib\n"
    "total = sum(len(p.read_text().splitlines())\n"
    "            for p in pathlib.Path(os.environ['INPUTS']).rglob('*') if p.is_file()\n"
    "            and p.name != 'algoCustomData.json')\n"
    "pathlib.Path(os.environ['OUTPUTS'], 'count.txt').write_text(str(total))\n"
    "print('counted', total)\n"
)


@pytest.fixture
def make_workflow(kube: Kube, datasets: str) -> Callable[..., dict]:
    """Create a Workflow in the cluster; keyword arguments adjust its stage."""

    def make(rawcode: str = ALGORITHM_COUNT_LINES, url: str | None = None,
             maxtime: int | None = None, name: str | None = None, **stage: Any) -> dict:
        body = {
            "index": 0,
            "input": [{"index": 0, "id": "did:op:dataset1",
                       "url": [url or f"{datasets}/lines.txt"]}],
            "algorithm": {"id": "did:op:algo1", "rawcode": rawcode,
                          "container": {"image": "python", "tag": "3.11",
                                        "entrypoint": "python $ALGO"}},
            "compute": {"Instances": 1, **({"maxtime": maxtime} if maxtime else {})},
            "output": {"publishOutput": 1, "publishAlgorithmLog": 1},
            **stage,
        }
        workflow = {"apiVersion": "oceanprotocol.com/v1alpha1", "kind": "Workflow",
                    "metadata": {"name": name or f"wf-{uuid.uuid4().hex[:10]}",
                                 "namespace": "default"},
                    "spec": {"secret": "job-secret", "metadata": {"stages": [body],
                                                                 "chainId": 8996}}}
        return kube.create(workflow)

    return make
