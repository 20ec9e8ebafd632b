"""The four Knative Services: scale to zero, bounded, probed, least-privileged, and
runnable: each is started exactly as its manifest and the image say (gunicorn,
the Dockerfile's GUNICORN_CMD_ARGS, $PORT, the env of c2d-config) and must answer
its health probe."""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from devstack import stack

from .manifests import FUNCTIONS, KNATIVE, REPO, SECRET_KEYS, documents, find, load_yaml

DOCS = documents()
MAX_REVISION_TIMEOUT = 600  # Knative's default max-revision-timeout-seconds


def service(fn: str) -> dict:
    return find(DOCS, "Service", f"c2d-{fn}")


def container(fn: str) -> dict:
    [only] = service(fn)["spec"]["template"]["spec"]["containers"]
    return only


def gunicorn_args() -> list[str]:
    """GUNICORN_CMD_ARGS as the Dockerfile sets it."""
    match = re.search(r'GUNICORN_CMD_ARGS="([^"]*)"', (REPO / "Dockerfile").read_text())
    assert match, "the Dockerfile sets GUNICORN_CMD_ARGS"
    return shlex.split(match.group(1))


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


@pytest.mark.parametrize("fn", FUNCTIONS)
def test_service_scales_to_zero_within_bounds(fn: str):
    template = service(fn)["spec"]["template"]
    annotations = template["metadata"]["annotations"]
    assert annotations["autoscaling.knative.dev/min-scale"] == "0"
    assert 1 <= int(annotations["autoscaling.knative.dev/max-scale"]) <= 20
    spec = template["spec"]
    assert 0 < spec["timeoutSeconds"] <= MAX_REVISION_TIMEOUT
    args = gunicorn_args()
    # Knative sends at most what gunicorn can take at once; gunicorn outlives a request.
    assert spec["containerConcurrency"] == (int(option(args, "--workers"))
                                            * int(option(args, "--threads")))
    assert int(option(args, "--timeout")) >= spec["timeoutSeconds"]


def test_the_embedded_stack_runs_gunicorn_as_the_image_does():
    args = gunicorn_args()
    assert (stack.GUNICORN_WORKERS, stack.GUNICORN_THREADS) == (
        int(option(args, "--workers")), int(option(args, "--threads")))


@pytest.mark.parametrize("fn", FUNCTIONS)
def test_service_is_cluster_local(fn: str):
    labels = service(fn)["metadata"]["labels"]
    assert labels["networking.knative.dev/visibility"] == "cluster-local"


@pytest.mark.parametrize("fn", FUNCTIONS)
def test_container_runs_its_function_with_probes_and_limits(fn: str):
    main = container(fn)
    assert main["command"] == ["gunicorn"] and main["args"] == [f"functions.{fn}.app:app"]
    assert main["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert main["livenessProbe"]["httpGet"]["path"] == "/healthz"
    resources = main["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"]
    context = main["securityContext"]
    assert context["runAsNonRoot"] is True and context["runAsUser"] > 0
    assert context["allowPrivilegeEscalation"] is False
    assert context["readOnlyRootFilesystem"] is True
    assert context["capabilities"] == {"drop": ["ALL"]}
    labels = service(fn)["spec"]["template"]["metadata"]["labels"]
    assert labels["c2d.oceanprotocol.com/function"] == fn
    assert "c2d.oceanprotocol.com/stage" not in labels, "Job pods' label: their policies apply"


@pytest.mark.parametrize("fn", FUNCTIONS)
def test_config_from_the_configmap_and_only_needed_secrets(fn: str):
    main = container(fn)
    assert main["envFrom"] == [{"configMapRef": {"name": "c2d-config"}}]
    for variable in main.get("env", []):
        ref = variable["valueFrom"]["secretKeyRef"]
        assert ref["name"] == "c2d-secrets" and ref["key"] == variable["name"]
        assert ref["key"] in SECRET_KEYS
    names = {v["name"] for v in main.get("env", [])}
    assert ("OPERATOR_PRIVATE_KEY" in names) == (fn in ("configure", "notify")), (
        "the operator's key: configure announces its address, notify signs")
    assert not (names & {"AWS_SECRET_ACCESS_KEY", "IPFS_API_KEY"}) or fn == "publish"


def test_image_user_is_the_one_the_services_run_as():
    match = re.search(r"^USER (\d+):(\d+)$", (REPO / "Dockerfile").read_text(), re.MULTILINE)
    assert match, "the Dockerfile's USER is numeric (runAsNonRoot can only verify numbers)"
    for fn in FUNCTIONS:
        context = container(fn)["securityContext"]
        assert (context["runAsUser"], context["runAsGroup"]) == tuple(map(int, match.groups()))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, deadline: float) -> int:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return -1
        try:
            with urllib.request.urlopen(url, timeout=5) as answer:
                return answer.status
        except OSError:  # not listening yet, or a worker still importing the app
            time.sleep(0.05)
    return 0


@pytest.mark.parametrize("fn", FUNCTIONS)
def test_function_starts_as_deployed_and_answers_health(fn: str, tmp_path: Path):
    if not (REPO / "functions" / fn / "app.py").is_file():
        pytest.skip(f"functions/{fn}/app.py is not written yet")
    config = load_yaml(KNATIVE / "config.yaml")[0]["data"]
    port = free_port()
    env = {"PATH": os.environ["PATH"], **config, "PORT": str(port),
           "GUNICORN_CMD_ARGS": shlex.join(gunicorn_args() + ["--bind", f"127.0.0.1:{port}"]),
           "HOME": str(tmp_path)}
    main = container(fn)
    # The image's PATH puts the virtualenv's gunicorn first; here it is this venv's.
    command = [str(Path(sys.executable).with_name(main["command"][0])), *main["args"]]
    log = (tmp_path / "gunicorn.log").open("w")
    process = subprocess.Popen(command, env=env, cwd=tmp_path, stdout=log,
                               stderr=subprocess.STDOUT)
    try:
        status = wait_healthy(f"http://127.0.0.1:{port}/healthz", process,
                              time.monotonic() + 30)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
    assert status == 200, (tmp_path / "gunicorn.log").read_text()[-3000:]
