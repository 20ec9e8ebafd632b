"""The configure transition: the workflows admitted at once from their add, the queued
ones from the slot that freed before their Job, and every workflow from either."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from benchmarks.engine import EngineRun, transitions
from benchmarks.observe import Accepted
from shared import events

EVERY = "  (every workflow) add or slot freed -> configure Job"
QUEUED = "  (queued) workflow.finished -> next configure Job"


def run(accepted: list[Accepted], jobs: dict[str, float], queued: set[str]) -> EngineRun:
    timeline = SimpleNamespace(pod_owner={}, pod_finished={}, wf_queued=queued, wf_final={},
                               job_added={})
    return EngineRun("t", ["a", "b", "c"], {}, 0.0, 0.0, timeline,  # type: ignore[arg-type]
                     accepted, job_created=jobs)


def add(name: str, at: float) -> Accepted:
    return Accepted(at, events.RESOURCE_ADD, name, None, False)


def test_every_workflow_counts_from_the_event_that_let_it_in() -> None:
    accepted = [add("a", 1.0), add("b", 1.1), add("c", 1.2),
                Accepted(5.0, events.WORKFLOW_FINISHED, "a", None, False),
                Accepted(9.0, events.WORKFLOW_FINISHED, "b", None, False)]
    jobs = {"a-configure": 1.02, "b-configure": 1.15, "c-configure": 5.03}

    found = transitions(run(accepted, jobs, queued={"c"}))

    assert found["add->configure"] == pytest.approx([0.02, 0.05])
    assert found[QUEUED] == pytest.approx([0.03])  # from 5.0, the last slot freed before
    assert sorted(found[EVERY]) == pytest.approx([0.02, 0.03, 0.05])


def test_a_queued_workflow_never_started_counts_nowhere() -> None:
    accepted = [add("a", 1.0), add("b", 1.1), add("c", 1.2)]
    jobs = {"a-configure": 1.02, "b-configure": 1.15}

    found = transitions(run(accepted, jobs, queued={"c"}))

    assert len(found[EVERY]) == 2 and QUEUED not in found
