"""Fixtures for the pod tests: the pods run as real processes against loopback servers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest
from eth_account import Account

from tests.pods.kubo import KuboServer
from tests.pods.servers import DatasetServer, OceanServer

ROOT = Path(__file__).resolve().parents[2]
OPERATOR_KEY = "0x" + "11" * 32
OPERATOR = Account.from_key(OPERATOR_KEY).address
BIG = 1 << 30
BIG_MARKS = {0: b"head", BIG // 2: b"middle", BIG - 4: b"tail"}


@dataclass
class PodRun:
    code: int
    message: dict[str, Any]
    stderr: str
    peak_rss: int


def run_pod(module: str, tmp: Path, env: dict[str, str], args: tuple[str, ...] = (),
            timeout: float = 120) -> PodRun:
    """Run `python -m <module>` to completion, sampling its resident memory meanwhile."""
    termination = tmp / f"termination-{module.rsplit('.', 2)[-2]}"
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(ROOT),
                "HOME": str(tmp), "VOLUME": str(tmp / "data"),
                "WORKFLOW": str(tmp / "workflow.json"),
                "TERMINATION_MESSAGE_PATH": str(termination),
                "JOB_ID": "wf-test", "LOG_LEVEL": "INFO", "C2D_STORAGE_DIR": str(tmp / "storage"),
                **env}
    process = subprocess.Popen([sys.executable, "-m", module, *args], cwd=ROOT, env=full_env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    watched = psutil.Process(process.pid)
    peak = 0
    deadline = time.monotonic() + timeout
    while process.poll() is None:
        try:
            peak = max(peak, watched.memory_info().rss)
        except psutil.Error:
            pass
        if time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise AssertionError(f"{module} did not finish within {timeout} s")
        time.sleep(0.02)  # sampling interval of the memory probe
    _, stderr = process.communicate()
    message = json.loads(termination.read_text()) if termination.exists() else {}
    return PodRun(process.returncode, message, stderr.decode(errors="replace"), peak)


def write_workflow(tmp: Path, inputs: list[dict], algorithm: dict, output: dict | None = None
                   ) -> Path:
    stage = {"index": 0, "input": inputs, "algorithm": algorithm,
             "compute": {"Instances": 1, "namespace": "c2d", "maxtime": 3600},
             "output": output or {}}
    path = tmp / "workflow.json"
    path.write_text(json.dumps({"jobId": "wf-test", "namespace": "c2d", "chainId": 8996,
                                "stages": [stage]}))
    return path


@pytest.fixture(scope="session")
def big_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1 GiB sparse file with a few marks to check the copy."""
    path = tmp_path_factory.mktemp("big") / "big.bin"
    with path.open("wb") as stream:
        stream.truncate(BIG)
        for offset, mark in BIG_MARKS.items():
            stream.seek(offset)
            stream.write(mark)
    return path


@pytest.fixture(scope="session")
def datasets(big_file: Path):
    files = {"a.csv": b"x,y\n1,2\n", "b.csv": b"x,y\n3,4\n", "c.txt": b"third file\n",
             "algo.py": b"print('hello from the algorithm')\n", "extra.json": b'{"k": 1}\n'}
    server = DatasetServer(files, big_file).start()
    yield server
    server.stop()


@pytest.fixture
def ocean():
    server = OceanServer(consumers={OPERATOR}).start()
    yield server
    server.stop()


@pytest.fixture
def kubo():
    server = KuboServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_server():
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(moto_server: str, monkeypatch: pytest.MonkeyPatch):
    """A boto3 client on the moto server, and the env that points a pod at it."""
    import boto3

    env = {"AWS_ENDPOINT_URL": moto_server, "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3", endpoint_url=moto_server, region_name="us-east-1",
                          aws_access_key_id="testing", aws_secret_access_key="testing")
    return client, env
