"""notify sends only where a URL is set, and reads nothing when no URL is."""

from __future__ import annotations

import logging

from devstack.cluster import EmbeddedCluster
from functions.notify import app as notify
from shared import events, settings
from shared import workflow as wf
from shared.app import Stage
from shared.connection import connect
from shared.kube import Kube
from tests.functions.conftest import Receiver, environment
from tests.functions.harness import Counting
from tests.unit.helpers import create_workflow


def stage_with(cluster: EmbeddedCluster, config: settings.Settings) -> Stage:
    return Stage("notify", config, Counting(connect(str(cluster.kubeconfig))),
                 logging.getLogger("test"))


def test_without_urls_an_event_reads_nothing(cluster: EmbeddedCluster, kube: Kube,
                                             receiver: Receiver, tmp_path):
    workflow = create_workflow(kube, "no-urls", "default")
    config = settings.load({**environment(tmp_path, receiver), "NOTIFY_START_URL": "",
                            "NOTIFY_STOP_URL": ""})
    stage = stage_with(cluster, config)
    for event_type in (events.WORKFLOW_STARTED, events.WORKFLOW_FINISHED):
        notify.on_workflow_event(events.make(event_type, "/c2d/configure", workflow), stage)
    assert stage.kube.reads == {} and stage.kube.writes == {}
    assert receiver.for_job("no-urls") == []


def test_a_stop_url_alone_sends_no_start(cluster: EmbeddedCluster, kube: Kube,
                                         receiver: Receiver, tmp_path):
    workflow = kube.update_status("Workflow", "default", wf.name(
        create_workflow(kube, "stop-only", "default")), lambda w: {
            "statusCode": wf.FINISHED, "statusText": "Job finished", "phase": "Succeeded",
            "dateStarted": "2026-12-01T00:00:00Z", "dateFinished": "2026-12-01T00:01:00Z"})
    config = settings.load({**environment(tmp_path, receiver), "NOTIFY_START_URL": ""})
    stage = stage_with(cluster, config)
    notify.on_workflow_event(events.make(events.WORKFLOW_FINISHED, "/c2d/publish", workflow),
                             stage)
    assert [sent["path"] for sent in receiver.for_job("stop-only")] == ["/stop"]
    assert stage.kube.reads == {("Workflow", "stop-only"): 1}
    notifications = wf.status(kube.get("Workflow", "default", "stop-only"))["notifications"]
    assert set(notifications) == {"stop"}
