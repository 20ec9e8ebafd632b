"""The benchmark's Broker tap: what it records, and that routing never waits on reading."""

from __future__ import annotations

import json

from cloudevents.core.v1.event import CloudEvent

from benchmarks.observe import BrokerTap


class FakeBroker:
    def __init__(self) -> None:
        self.routed: list[CloudEvent] = []

    def ingest(self, event: CloudEvent) -> list[str]:
        self.routed.append(event)
        return []


def job_event(name: str, data: bytes) -> CloudEvent:
    return CloudEvent(attributes={"type": "dev.knative.apiserver.resource.update",
                                  "source": "/k", "id": name, "kind": "Job"}, data=data)


def job(name: str, finished: bool) -> bytes:
    conditions = [{"type": "Complete", "status": "True"}] if finished else []
    return json.dumps({"kind": "Job", "metadata": {"name": name},
                       "status": {"conditions": conditions}}).encode()


def test_events_are_read_at_the_snapshot_in_the_order_they_came() -> None:
    broker = FakeBroker()
    tap = BrokerTap(broker)
    broker.ingest(job_event("a", job("wf-1-configure", finished=False)))
    broker.ingest(job_event("b", b"{not json"))  # an event the tap cannot read
    broker.ingest(job_event("c", job("wf-1-configure", finished=True)))
    assert [e.get_id() for e in broker.routed] == ["a", "b", "c"]
    assert tap.accepted == []  # nothing read while routing

    seen = tap.snapshot()
    assert [(a.workflow, a.stage, a.job_finished) for a in seen] == [
        ("wf-1", "configure", False), ("wf-1", "configure", True)]
    assert seen[0].at <= seen[1].at

    broker.ingest(job_event("d", job("wf-2-publish", finished=True)))
    assert [a.workflow for a in tap.snapshot()] == ["wf-1", "wf-1", "wf-2"]
    tap.detach()
    broker.ingest(job_event("e", job("wf-3-publish", finished=True)))
    assert len(tap.snapshot()) == 3
