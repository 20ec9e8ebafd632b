"""The manifests are the routing: a stack started on a private copy of knative/.

In the copy, the Trigger that sends Workflow `add` events to configure is removed
(every such event is lost), and a spy Trigger sends to a local receiver. The
resync tick (every second here) must still admit and finish the workflows, and
editing the spy's filter while the stack runs must change what it receives.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from shared import workflow as wf
from tests.e2e.helpers import REPO, EmbeddedStack, Receiver, wait_until

LOST_TRIGGER = "c2d-configure-workflow-add"
ALGORITHM = {"id": "did:op:a", "rawcode": "print('hi')",
             "container": {"image": "python", "tag": "3.11", "entrypoint": "python $ALGO"}}


def spy_trigger(receiver: Receiver, filters: list[dict]) -> dict:
    return {"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger",
            "metadata": {"name": "e2e-spy"},
            "spec": {"broker": "c2d", "filters": filters,
                     "subscriber": {"uri": f"{receiver.url}/spy"}}}


def write_manifest(path: Path, documents: list[dict]) -> None:
    """Replace a manifest in one rename, so the Broker never reads half a file."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(yaml.safe_dump_all(documents, sort_keys=False))
    temporary.replace(path)


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    running = Receiver()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def manifests(tmp_path_factory: pytest.TempPathFactory, receiver: Receiver) -> Path:
    folder = tmp_path_factory.mktemp("knative")
    shutil.copytree(REPO / "knative", folder, dirs_exist_ok=True)
    triggers = folder / "triggers.yaml"
    documents = [d for d in yaml.safe_load_all(triggers.read_text()) if d]
    kept = [d for d in documents if d["metadata"]["name"] != LOST_TRIGGER]
    assert len(kept) == len(documents) - 1, f"{LOST_TRIGGER} not found in knative/triggers.yaml"
    write_manifest(triggers, kept)
    write_manifest(folder / "spy.yaml", [spy_trigger(receiver, [
        {"exact": {"type": "dev.knative.apiserver.resource.add", "kind": "Workflow"}}])])
    return folder


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, manifests: Path) -> Iterator[EmbeddedStack]:
    running = EmbeddedStack(tmp_path_factory.mktemp("home"), tmp_path_factory.mktemp("site"),
                            up_args=("--manifests", str(manifests), "--ping-period", "1"))
    yield running
    running.stop()


def spied(receiver: Receiver, name: str) -> list[dict[str, str]]:
    """Headers of the events the spy received about workflow `name` or its Jobs."""
    return [headers for _, headers, _ in receiver.posts("/spy")
            if headers.get("ce-name", "").startswith(name)]


def submit(stack: EmbeddedStack, folder: str) -> str:
    path = stack.workflow_file(folder, {"input": [], "algorithm": ALGORITHM,
                                        "output": {"publishOutput": 1}})
    return stack.submit(path)


def test_a_lost_add_event_is_recovered_by_the_tick(stack: EmbeddedStack,
                                                   receiver: Receiver) -> None:
    name = submit(stack, "lost")

    done = stack.wait_final(name, timeout=60)
    assert wf.status(done)["phase"] == "Succeeded"
    # The source did emit the add event, but no Trigger took it to configure.
    [added] = [h for h in spied(receiver, name) if h["ce-type"].endswith(".add")]
    assert added["ce-kind"] == "Workflow"


def test_editing_a_trigger_filter_changes_the_routing(stack: EmbeddedStack, manifests: Path,
                                                      receiver: Receiver) -> None:
    write_manifest(manifests / "spy.yaml", [spy_trigger(receiver, [
        {"exact": {"type": "dev.knative.apiserver.resource.update", "kind": "Job"}},
        {"suffix": {"subject": "-configure"}}])])
    name = submit(stack, "rerouted")

    assert wf.status(stack.wait_final(name, timeout=60))["phase"] == "Succeeded"
    events = wait_until(lambda: spied(receiver, name), 10, what=f"spied events about {name}")
    assert {h["ce-type"] for h in events} == {"dev.knative.apiserver.resource.update"}
    assert {h["ce-name"] for h in events} == {f"{name}-configure"}
