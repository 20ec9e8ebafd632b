"""At-least-once delivery: duplicates, reordering and lost events change nothing."""

from __future__ import annotations

import time

import pytest

from shared import events
from shared import workflow as wf
from shared.kube import Kube
from tests.functions.harness import Relay, drive, finished_job, ping, resource_event


def pods_of(kube: Kube, name: str) -> dict[str, int]:
    """How many pods each stage's Job created (a duplicate step would make two)."""
    counts: dict[str, int] = {}
    for pod in kube.list("Pod", "default", f"c2d.oceanprotocol.com/workflow={name}"):
        stage = pod["metadata"]["labels"]["c2d.oceanprotocol.com/stage"]
        counts[stage] = counts.get(stage, 0) + 1
    return counts


class Twice(Relay):
    """Delivers every event twice in a row, as an at-least-once Broker may."""

    def post(self, stage, event, structured=None):
        first = super().post(stage, event, structured)
        second = super().post(stage, event, structured)
        assert not (first.reply and second.reply), f"{stage} replied twice to the same event"
        return first if first.reply else second


def test_every_event_twice(functions, kube: Kube, make_workflow, receiver, cluster):
    relay = Twice(functions.urls)
    created = make_workflow()
    name = wf.name(created)
    seen_pods: dict[str, int] = {}

    def count_pods(event):  # before cleanup removes them, note each stage's pods
        for stage, n in pods_of(kube, name).items():
            seen_pods[stage] = max(seen_pods.get(stage, 0), n)
        return False

    final = drive(relay, kube, created, drop=count_pods)
    assert final["status"]["phase"] == "Succeeded"
    assert final["status"]["statusCode"] == 70
    assert seen_pods == {"configure": 1, "algorithm": 1, "publish": 1}, seen_pods
    assert len(receiver.for_job(name, "/start")) == 1
    assert len(receiver.for_job(name, "/stop")) == 1
    # each state-changing reply was produced once; the duplicate got 202
    for event_type in (events.WORKFLOW_STARTED, events.CONFIGURE_SUCCEEDED,
                       events.ALGORITHM_FINISHED, events.WORKFLOW_FINISHED):
        assert len(relay.replies(event_type)) == 1, event_type


def test_late_duplicates_after_the_end_change_nothing(relay: Relay, kube: Kube, make_workflow,
                                                      receiver):
    created = make_workflow()
    final = drive(relay, kube, created)
    name = wf.name(created)
    before = final["status"]
    # replay every event already delivered, newest first (reversed order)
    for delivery in list(reversed(relay.log)):
        again = relay.post(delivery.stage, delivery.event)
        assert again.status in (200, 202)
        assert again.reply is None, f"{delivery.stage} replied again to {delivery.event.get_type()}"
    after = kube.get("Workflow", "default", name)["status"]
    assert after == before
    assert len(receiver.for_job(name, "/start")) == 1
    assert len(receiver.for_job(name, "/stop")) == 1


def test_job_update_before_its_stage_event(relay: Relay, kube: Kube, make_workflow):
    """The configure Job's end arrives twice; the algorithm's start comes once."""
    created = make_workflow()
    name = wf.name(created)
    relay.send(resource_event("add", created), follow=False)
    job = finished_job(kube, "default", f"{name}-configure")
    first = relay.post("configure", resource_event("update", job))
    second = relay.post("configure", resource_event("update", job))
    assert first.reply.get_type() == events.CONFIGURE_SUCCEEDED
    assert second.reply is None and second.status == 202
    relay.send(first.reply)
    relay.send(first.reply)  # configure.succeeded twice: still one algorithm Job
    finished_job(kube, "default", f"{name}-algorithm")
    assert len(kube.list("Pod", "default", f"job-name={name}-algorithm")) == 1


LOST = {
    "add": lambda e: e.get_type() == events.RESOURCE_ADD,
    "configure-job": lambda e: e.get_type() == events.RESOURCE_UPDATE
    and (e.get_subject() or "").endswith("-configure"),
    "configure.succeeded": lambda e: e.get_type() == events.CONFIGURE_SUCCEEDED,
    "algorithm-job": lambda e: e.get_type() == events.RESOURCE_UPDATE
    and (e.get_subject() or "").endswith("-algorithm"),
    "algorithm.finished": lambda e: e.get_type() == events.ALGORITHM_FINISHED,
    "publish-job": lambda e: e.get_type() == events.RESOURCE_UPDATE
    and (e.get_subject() or "").endswith("-publish"),
    "workflow.started": lambda e: e.get_type() == events.WORKFLOW_STARTED,
    "workflow.finished": lambda e: e.get_type() == events.WORKFLOW_FINISHED,
}


@pytest.mark.parametrize("lost", list(LOST))
def test_a_lost_event_is_recovered_by_the_tick(lost, relay: Relay, kube: Kube, make_workflow,
                                               receiver):
    created = make_workflow()
    name = wf.name(created)
    dropped: list[float] = []  # when the event was lost

    def drop_once(event):
        if not dropped and LOST[lost](event):
            dropped.append(time.monotonic())
            return True
        return False

    # Up to the lost event, however long the stages before it take on a slow machine,
    # and 5 s beyond: what can go on without it does, the tick must do the rest.
    final = drive(relay, kube, created, drop=drop_once, timeout=60,
                  until=lambda: bool(dropped) and time.monotonic() > dropped[0] + 5)
    deadline = time.monotonic() + 90
    while not (wf.status(final).get("notifications") or {}).get("stop"):
        assert time.monotonic() < deadline, f"not recovered: {final}"
        relay.send(ping())  # the PingSource's tick
        final = kube.get("Workflow", "default", name)
        if not wf.is_final(final):
            time.sleep(0.2)
    assert dropped, "the scenario never produced the event it meant to lose"
    assert final["status"]["phase"] == "Succeeded", final["status"]
    assert len(receiver.for_job(name, "/start")) == 1
    assert len(receiver.for_job(name, "/stop")) == 1
