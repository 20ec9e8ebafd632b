"""maxJobs=1: two workflows submitted while one runs queue, then run one at a time, oldest first."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import yaml

from shared import workflow as wf
from tests.e2e.helpers import EmbeddedStack

NAP = "import time\nprint('napping', flush=True)\ntime.sleep(1.5)\n"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStack]:
    running = EmbeddedStack(tmp_path_factory.mktemp("home"), tmp_path_factory.mktemp("site"),
                            {"maxJobs": "1"})
    yield running
    running.stop()


def test_max_jobs_queues_then_admits_each_in_turn(stack: EmbeddedStack) -> None:
    path = stack.workflow_file("nap", {
        "input": [], "algorithm": {"id": "did:op:nap", "rawcode": NAP, "container": {
            "image": "python", "tag": "3.11", "entrypoint": "python $ALGO"}},
        "output": {"publishOutput": 1}})
    # Through the API, as `kubectl create` would: three `c2d submit` processes one after
    # the other took longer, on a slow machine, than the first workflow's whole run.
    body = yaml.safe_load(path.read_text())
    del body["metadata"]["generateName"]
    names = [f"nap-{i}" for i in range(3)]

    def create(name: str) -> None:
        stack.custom.create_namespaced_custom_object(
            wf.GROUP, wf.VERSION, "default", wf.PLURAL, {**body, "metadata": {"name": name}})

    # Each is created once the one before has its slot or its place in the queue: adds
    # that arrive together race for both (their events are delivered concurrently, and
    # creationTimestamp has whole seconds only), so "oldest" would mean nothing between
    # them. Queued workflows then keep the order they queued in.
    create(names[0])
    stack.wait_code(names[0], wf.CONFIGURING)
    for name in names[1:]:
        create(name)
        stack.wait_code(name, wf.QUEUED)
    for name in names:
        assert wf.status(stack.wait_final(name, timeout=60))["phase"] == "Succeeded"

    # Replay every status change in the order the API recorded them.
    running: set[str] = set()
    most, order = 0, []
    for name, code, phase in stack.recorder.events:
        if name not in names:
            continue
        if code >= wf.STARTED and phase not in wf.FINAL_PHASES:
            if name not in running:
                order.append(name)
            running.add(name)
        else:
            running.discard(name)
        most = max(most, len(running))
    assert most == 1, "more than maxJobs workflows ran at once"
    assert order == names, "queued workflows were not admitted oldest first"
    queued = [n for n in names if wf.QUEUED in stack.recorder.codes(n)]
    assert queued == names[1:], f"expected the 2nd and 3rd to queue, got {queued}"
