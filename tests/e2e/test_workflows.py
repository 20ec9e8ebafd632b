"""End to end on one background stack (`c2d up`): every outcome a workflow can have.

Driven only through the `c2d` command and the Kubernetes API. Notifications go
to a receiver on 127.0.0.1 and are checked against the operator's address.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account

from shared import signing
from shared import workflow as wf
from tests.e2e.helpers import (
    OPERATOR_KEY,
    EmbeddedStack,
    Receiver,
    read_result,
    results_of,
    wait_until,
)

PYTHON = {"image": "python", "tag": "3.11", "entrypoint": "python $ALGO"}
LOGS = {"publishOutput": 1, "publishAlgorithmLog": 1}
SLEEP = "import time\nprint('sleeping', flush=True)\ntime.sleep(60)\n"


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Iterator[EmbeddedStack]:
    env = {"OPERATOR_PRIVATE_KEY": OPERATOR_KEY, "NOTIFY_START_URL": f"{receiver.url}/start",
           "NOTIFY_STOP_URL": f"{receiver.url}/stop"}
    running = EmbeddedStack(tmp_path_factory.mktemp("home"), tmp_path_factory.mktemp("site"),
                            env)
    yield running
    running.stop()


def test_hello_counts_the_lines_and_notifies_with_valid_signatures(
        stack: EmbeddedStack, receiver: Receiver) -> None:
    name = stack.submit(stack.example("hello"))
    done = stack.wait_final(name)

    status = wf.status(done)
    assert (status["phase"], status["statusCode"]) == ("Succeeded", wf.FINISHED)
    lines = len((stack.site / "hello" / "data" / "lines.txt").read_text().splitlines())
    [output] = results_of(done, "output")
    assert output["filename"] == "count.txt"
    assert read_result(output).strip() == str(lines)
    assert stack.recorder.codes(name)[-1] == wf.FINISHED
    # The CLI shows the same results and the algorithm's (published) log.
    table = stack.c2d("results", name, check=True).stdout
    assert "count.txt" in table and output["url"] in table
    assert f"total: {lines} lines" in stack.c2d("logs", name, check=True).stdout

    operator = Account.from_key(OPERATOR_KEY).address
    for kind in ("start", "stop"):
        posts = wait_until(lambda k=kind: [p for p in receiver.posts(f"/{k}")
                                           if p[2]["jobId"] == name], 20,
                           what=f"the {kind} notification of {name}")
        assert len(posts) == 1, f"{kind} notification sent {len(posts)} times"
        payload = posts[0][2]
        assert payload["secret"] == "hello-secret"
        assert payload["DID"] == ["did:op:hello-dataset"]
        assert payload["algoDID"] == "did:op:count-lines"
        signer = signing.recover_signer(signing.notification_message(payload),
                                        payload["signature"])
        assert signer == operator


def test_unreachable_dataset_fails_at_31_and_still_publishes_logs(stack: EmbeddedStack) -> None:
    path = stack.workflow_file("unreachable", {
        "input": [{"index": 0, "id": "did:op:gone", "url": "http://127.0.0.1:9/data.csv"}],
        "algorithm": {"id": "did:op:a", "rawcode": "print('never runs')", "container": PYTHON},
        "output": LOGS})
    name = stack.submit(path)
    done = stack.wait_final(name, timeout=90)

    assert wf.DATA_FAILED in stack.recorder.codes(name)
    assert wf.RUNNING not in stack.recorder.codes(name)
    assert wf.status(done)["phase"] == "Failed"
    assert "127.0.0.1:9" in wf.status(done)["message"]
    [configure_log] = results_of(done, "configurationLog")
    assert "127.0.0.1:9" in read_result(configure_log)


def test_missing_algorithm_fails_at_32(stack: EmbeddedStack) -> None:
    path = stack.workflow_file("no-algorithm", {
        "input": [{"index": 0, "id": "did:op:d", "url": "{{DATA_URL}}/rows.txt"}],
        "algorithm": {"id": "did:op:a", "url": "{{DATA_URL}}/no-such-algorithm.py",
                      "container": PYTHON},
        "output": LOGS}, files={"rows.txt": "a\nb\n"})
    name = stack.submit(path)
    done = stack.wait_final(name)

    assert wf.ALGORITHM_PROVISIONING_FAILED in stack.recorder.codes(name)
    assert wf.DATA_FAILED not in stack.recorder.codes(name)
    assert wf.status(done)["phase"] == "Failed"
    assert "HTTP 404" in wf.status(done)["message"]
    assert results_of(done, "configurationLog")


def test_crashing_algorithm_fails_at_41_with_its_log_published(stack: EmbeddedStack) -> None:
    name = stack.submit(stack.example("failing"))
    done = stack.wait_final(name)

    assert wf.ALGORITHM_FAILED in stack.recorder.codes(name)
    assert wf.status(done)["phase"] == "Failed"
    assert not results_of(done, "output")
    [log] = results_of(done, "algorithmLog")
    assert "ZeroDivisionError" in read_result(log)
    assert "ZeroDivisionError" in stack.c2d("logs", name, check=True).stdout


def test_timeout_stops_the_algorithm_and_publishes_logs(stack: EmbeddedStack) -> None:
    name = stack.submit(stack.example("timeout"))
    done = stack.wait_final(name, timeout=45)

    status = wf.status(done)
    assert (status["phase"], status.get("stopReason")) == ("Stopped", "Timeout")
    assert status["statusCode"] == wf.FINISHED
    [log] = results_of(done, "algorithmLog")
    assert "sleeping for 60 s" in read_result(log)
    assert "woke up" not in read_result(log)


def test_stop_request_mid_run(stack: EmbeddedStack) -> None:
    path = stack.workflow_file("stopme", {
        "input": [], "algorithm": {"id": "did:op:a", "rawcode": SLEEP, "container": PYTHON},
        "output": LOGS})
    name = stack.submit(path)
    stack.wait_code(name, wf.RUNNING)
    # "sleeping" in the pod's log: the algorithm really runs when the stop arrives.
    wait_until(lambda: "sleeping" in stack.c2d("logs", name).stdout, 20,
               what="the algorithm's log")

    stopped = stack.c2d("stop", name)
    assert stopped.returncode == 0, stopped.stderr
    done = stack.wait_final(name, timeout=30)

    status = wf.status(done)
    assert (status["phase"], status.get("stopReason")) == ("Stopped", "StopRequested")
    assert done["spec"]["stopRequested"] is True
    assert results_of(done, "algorithmLog")


def test_cli_errors_are_one_line_against_the_stack(stack: EmbeddedStack, tmp_path: Path) -> None:
    missing = stack.c2d("status", "no-such-workflow")
    assert missing.returncode == 1
    assert missing.stderr.strip() == ("c2d: error: workflow no-such-workflow not found in "
                                      "namespace default")
    bad = tmp_path / "bad.yaml"
    bad.write_text("spec:\n  metadata:\n    stages: []\n")
    invalid = stack.c2d("submit", str(bad))
    assert invalid.returncode == 1
    assert "spec.metadata.stages" in invalid.stderr and "Traceback" not in invalid.stderr
    listed = stack.c2d("list", check=True).stdout
    assert listed.splitlines()[0].split() == ["NAME", "PHASE", "CODE", "STATUS", "AGE"]


def test_the_stack_holds_the_operator_secret_for_the_pods(stack: EmbeddedStack) -> None:
    secret = stack.core.read_namespaced_secret("c2d-secrets", "default")
    assert set(secret.data) == {"OPERATOR_PRIVATE_KEY"}
    assert base64.b64decode(secret.data["OPERATOR_PRIVATE_KEY"]).decode() == OPERATOR_KEY
