"""The functions as deployed: gunicorn processes configured by their environment."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator

import pytest
import requests

from devstack.stack import gunicorn_argv
from devstack.testing import wait_until
from shared import workflow as wf
from tests.functions.conftest import environment
from tests.functions.harness import Relay, drive


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def gunicorn_functions(cluster, receiver, tmp_path_factory) -> Iterator[dict[str, str]]:
    env = {**os.environ, "KUBECONFIG": str(cluster.kubeconfig),
           **environment(tmp_path_factory.mktemp("gunicorn"), receiver)}
    processes, urls = [], {}
    for stage in ("configure", "algorithm", "publish", "notify"):
        port = free_port()
        processes.append(subprocess.Popen(
            gunicorn_argv(f"functions.{stage}.app", port, workers=1),
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        urls[stage] = f"http://127.0.0.1:{port}"
    try:
        for url in urls.values():
            wait_until(lambda u=url: _healthy(u), 20, what=f"gunicorn at {url}")
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=20)


def _healthy(url: str) -> bool:
    try:
        return requests.get(url + "/healthz", timeout=1).status_code == 200
    except requests.RequestException:  # not listening yet, or still importing
        return False


def test_happy_path_through_gunicorn(gunicorn_functions, kube, make_workflow, receiver):
    created = make_workflow()
    final = drive(Relay(gunicorn_functions), kube, created)
    assert final["status"]["phase"] == "Succeeded", final["status"]
    assert final["status"]["statusCode"] == 70
    assert len(receiver.for_job(wf.name(created), "/start")) == 1
    assert len(receiver.for_job(wf.name(created), "/stop")) == 1


def test_gunicorn_rejects_malformed_events(gunicorn_functions):
    response = requests.post(gunicorn_functions["configure"] + "/", data=b"{}",
                             headers={"Content-Type": "application/json"}, timeout=5)
    assert response.status_code == 400
    assert "not a CloudEvent" in response.json()["error"]
