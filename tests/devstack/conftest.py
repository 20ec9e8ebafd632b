"""Fixtures for the embedded API server tests: a running server and clients for it."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from devstack.apiserver import APIServer
from devstack.kubeconfig import write_kubeconfig

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW_CRD = ROOT / "knative" / "crd.yaml"
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"


@pytest.fixture
def apiserver(tmp_path: Path) -> Iterator[APIServer]:
    """A running server with the Workflow CRD, pod logs under ``tmp_path/logs``."""
    srv = APIServer(crd_files=[WORKFLOW_CRD], log_dir=tmp_path / "logs")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def kube_api_client(apiserver: APIServer) -> Iterator[client.ApiClient]:
    """The official client, configured for ``apiserver``."""
    cfg = client.Configuration()
    cfg.host = apiserver.url
    with client.ApiClient(cfg) as api_client:
        yield api_client


@pytest.fixture
def core(kube_api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(kube_api_client)


@pytest.fixture
def batch(kube_api_client: client.ApiClient) -> client.BatchV1Api:
    return client.BatchV1Api(kube_api_client)


@pytest.fixture
def custom(kube_api_client: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(kube_api_client)


@pytest.fixture
def kubectl(apiserver: APIServer, tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    """Run the machine's kubectl against ``apiserver``; fails the command on non-zero exit
    unless ``check=False``."""
    if not os.path.exists(KUBECTL):
        pytest.skip("kubectl is not installed on this machine (looked for /usr/bin/kubectl)")
    config = write_kubeconfig(apiserver.url, tmp_path / "kubeconfig")
    env = dict(os.environ, KUBECONFIG=str(config), HOME=str(tmp_path),
               KUBECACHEDIR=str(tmp_path / "kube-cache"))

    def run(*args: str, check: bool = True, stdin: str | None = None,
            timeout: float = 30) -> subprocess.CompletedProcess:
        done = subprocess.run([KUBECTL, *args], env=env, input=stdin, capture_output=True,
                              text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({done.returncode}):\n"
                                 f"{done.stdout}\n{done.stderr}")
        return done
    return run


def job_manifest(name: str, restart_policy: str = "Never", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"template": {"spec": {
            "restartPolicy": restart_policy,
            "containers": [{"name": "main", "image": "busybox:1.36",
                            "command": ["sh", "-c", "echo hi"]}]}}, **spec},
    }


def workflow_manifest(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "oceanprotocol.com/v1alpha1", "kind": "Workflow",
        "metadata": {"name": name},
        "spec": {"metadata": {"stages": [{
            "index": 0,
            "input": [{"index": 0, "id": "did:op:1", "url": ["http://127.0.0.1/x"]}],
            "algorithm": {"id": "did:op:2", "rawcode": "print(1)",
                          "container": {"image": "python", "tag": "3.11",
                                        "entrypoint": "python $ALGO"}},
            "compute": {"Instances": 1, "maxtime": 60},
            "output": {}}], "chainId": 8996}, "secret": "s3cret", **spec},
    }


def owner_ref(obj: dict[str, Any], block: bool = False) -> dict[str, Any]:
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"],
            "name": obj["metadata"]["name"], "uid": obj["metadata"]["uid"],
            "controller": True, "blockOwnerDeletion": block}
