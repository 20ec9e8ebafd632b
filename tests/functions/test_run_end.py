"""The end of a run: clean-up and the final status are one write; a failed write is retried
from the publish Job, which stays until the outcome is recorded."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
from cloudevents.core.v1.event import CloudEvent

from devstack.cluster import EmbeddedCluster
from functions.publish import app as publish
from shared import events, settings
from shared import workflow as wf
from shared.app import Stage
from shared.connection import connect
from shared.kube import Kube, KubeError
from tests.functions.conftest import environment
from tests.functions.harness import (
    Counting,
    Functions,
    Relay,
    drive,
    finished_job,
    resource_event,
)

LEFT_BY_A_RUN = ("Job", "PersistentVolumeClaim", "ConfigMap", "Secret", "NetworkPolicy")


@pytest.fixture(scope="module")
def config(receiver, tmp_path_factory: pytest.TempPathFactory) -> settings.Settings:
    return settings.load(environment(tmp_path_factory.mktemp("end"), receiver))


@pytest.fixture(scope="module")
def relay(cluster: EmbeddedCluster, config: settings.Settings) -> Iterator[Relay]:
    running = Functions(str(cluster.kubeconfig), config)
    yield Relay(running.urls)
    running.close()


def is_publish_job_update(event: Any) -> bool:
    return event.get_type() == events.RESOURCE_UPDATE \
        and (event.get_subject() or "").endswith("-publish")


def published_but_not_told(relay: Relay, kube: Kube, workflow: dict) -> CloudEvent:
    """Run `workflow` until its publish Job ended; that Job's event, kept back."""
    with pytest.raises(AssertionError, match="did not finish"):
        drive(relay, kube, workflow, timeout=20, drop=is_publish_job_update)
    return resource_event("update", finished_job(kube, "default", f"{wf.name(workflow)}-publish"))


def publish_stage(config: settings.Settings, kube: Kube) -> Stage:
    return Stage("publish", config, kube, logging.getLogger("test"))


def assert_ended_and_cleaned_up(kube: Kube, name: str) -> None:
    status = kube.get("Workflow", "default", name)["status"]
    assert (status["statusCode"], status["phase"]) == (70, "Succeeded")
    assert status["results"] and wf.condition(status, "CleanedUp")["status"] == "True"
    assert left_by(kube, name) == {}


def left_by(kube: Kube, name: str) -> dict[str, list[str]]:
    found = {kind: [o["metadata"]["name"] for o in
                    kube.list(kind, "default", f"c2d.oceanprotocol.com/workflow={name}")]
             for kind in LEFT_BY_A_RUN}
    return {kind: names for kind, names in found.items() if names}


def test_the_final_status_and_the_clean_up_are_one_write(relay, kube: Kube, cluster,
                                                         config, make_workflow):
    created = make_workflow()
    publish_ended = published_but_not_told(relay, kube, created)
    counting = Counting(connect(str(cluster.kubeconfig)))

    reply = publish.on_job_updated(publish_ended, publish_stage(config, counting))

    assert reply is not None and reply.get_type() == events.WORKFLOW_FINISHED
    assert counting.writes == {("Workflow", wf.name(created)): 1}
    assert_ended_and_cleaned_up(kube, wf.name(created))


class FailingOnce(Kube):
    """The first write of a Workflow's status fails as an API hiccup would."""

    failed = False

    def replace(self, obj: dict, subresource: str = "") -> dict:
        if obj["kind"] == "Workflow" and not self.failed:
            self.failed = True
            raise KubeError("etcd leader changed", status=503)
        return super().replace(obj, subresource)


def test_a_failed_final_write_keeps_the_publish_job_for_the_retry(relay, kube: Kube, cluster,
                                                                   config, make_workflow):
    created = make_workflow()
    name = wf.name(created)
    publish_ended = published_but_not_told(relay, kube, created)
    # Seen once in CI: no write was tried. Should it recur, this says where the run was.
    before = wf.status(kube.get("Workflow", "default", name))
    assert wf.code_of(before) == wf.PUBLISHING, before
    stage = publish_stage(config, FailingOnce(connect(str(cluster.kubeconfig))))

    with pytest.raises(KubeError):
        publish.on_job_updated(publish_ended, stage)

    assert wf.status_code(kube.get("Workflow", "default", name)) == wf.PUBLISHING
    assert left_by(kube, name) == {"Job": [f"{name}-publish"]}

    retried = publish.on_job_updated(publish_ended, stage)  # the Broker's retry

    assert retried is not None and retried.get_type() == events.WORKFLOW_FINISHED
    assert_ended_and_cleaned_up(kube, name)
