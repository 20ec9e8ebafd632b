"""The API server as a child process (how the stack runs it): it serves, stops, keeps its
objects when persisted, and never outlives the process that started it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import requests

from devstack.apiserver.process import APIServerProcess, APIServerProcessError
from devstack.testing import wait_until

from .conftest import WORKFLOW_CRD

REPO = Path(__file__).resolve().parents[2]


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_it_serves_the_api_and_stops(tmp_path: Path):
    server = APIServerProcess(crd_files=[WORKFLOW_CRD], log_dir=tmp_path / "logs",
                              log_path=tmp_path / "apiserver.log")
    url = server.start()
    pid = server.pid
    try:
        assert requests.get(f"{url}/version", timeout=5).json()["major"] == "1"
        listed = requests.get(f"{url}/apis/oceanprotocol.com/v1alpha1/namespaces/default/"
                              "workflows?fieldSelector=status.phase%3DQueued", timeout=5)
        assert listed.status_code == 200 and listed.json()["items"] == []
    finally:
        server.stop()
    assert pid is not None and gone(pid)
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{url}/version", timeout=5)


def test_persisted_objects_survive_a_restart(tmp_path: Path):
    store = tmp_path / "store"
    server = APIServerProcess(data_dir=store)
    url = server.start()
    try:
        created = requests.post(f"{url}/api/v1/namespaces/default/configmaps", timeout=5, json={
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "kept"}})
        assert created.status_code == 201
    finally:
        server.stop()
    again = APIServerProcess(data_dir=store)
    url = again.start()
    try:
        assert requests.get(f"{url}/api/v1/namespaces/default/configmaps/kept",
                            timeout=5).status_code == 200
    finally:
        again.stop()


def test_a_failed_start_names_its_log(tmp_path: Path):
    log = tmp_path / "apiserver.log"
    server = APIServerProcess(crd_files=[tmp_path / "missing.yaml"], log_path=log, timeout=20)
    with pytest.raises(APIServerProcessError, match="apiserver.log"):
        server.start()
    assert "missing.yaml" in log.read_text()


def test_it_dies_with_the_process_that_started_it(tmp_path: Path):
    program = ("from devstack.apiserver.process import APIServerProcess\n"
               "import time\n"
               "server = APIServerProcess()\n"
               "print(server.start(), server.pid, flush=True)\n"
               "time.sleep(120)\n")
    parent = subprocess.Popen([sys.executable, "-c", program], cwd=REPO, text=True,
                              stdout=subprocess.PIPE, env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        url, pid = parent.stdout.readline().split()
        assert requests.get(f"{url}/version", timeout=5).ok
        os.kill(parent.pid, signal.SIGKILL)
        wait_until(lambda: gone(int(pid)), 15, what=f"API server {pid} to exit")
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()
