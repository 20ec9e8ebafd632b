"""Bad input gets a clear error and creates nothing."""

from __future__ import annotations

import base64
import json
import uuid

import pytest
import requests

from shared import events
from shared import workflow as wf
from shared.kube import Kube
from tests.functions.harness import Relay, ping, resource_event


def objects_of(kube: Kube, name: str) -> list[dict]:
    selector = f"c2d.oceanprotocol.com/workflow={name}"
    return [o for kind in ("Job", "ConfigMap", "Secret", "PersistentVolumeClaim")
            for o in kube.list(kind, "default", selector)]


def test_invalid_workflow_fails_with_the_field_named(relay: Relay, kube: Kube, make_workflow):
    created = make_workflow(algorithm={"id": "did:op:a", "rawcode": "print(1)",
                                       "container": {"tag": "3", "entrypoint": "python $ALGO"}})
    name = wf.name(created)
    deliveries = relay.send(resource_event("add", created))
    assert [d.status for d in deliveries] == [202]
    status = kube.get("Workflow", "default", name)["status"]
    assert status["phase"] == "Failed"
    assert "spec.metadata.stages[0].algorithm.container.image: required" in status["message"]
    assert objects_of(kube, name) == []


def test_hostile_strings_stay_data(relay: Relay, kube: Kube, make_workflow):
    """A secret and entrypoint full of YAML/JSON syntax reach the pod as plain values."""
    hostile = 'x"\n  evil: true\n{{ config }}\n---\nkind: Pod'
    created = make_workflow(name=f"hostile-{uuid.uuid4().hex[:6]}")
    kube.update("Workflow", "default", wf.name(created),
                lambda w: {**w, "spec": {**w["spec"], "secret": hostile}})
    relay.send(resource_event("add", kube.get("Workflow", "default", wf.name(created))))
    secret = kube.get("Secret", "default", wf.name(created))
    assert base64.b64decode(secret["data"]["secret"]).decode() == hostile
    assert set(secret["data"]) == {"secret"}


@pytest.mark.parametrize("headers,body,field", [
    ({"Content-Type": "application/json"}, b'{"hello": 1}', "not a CloudEvent"),
    ({"ce-specversion": "1.0", "ce-type": "x", "ce-id": "1"}, b"", "source"),
    ({"Content-Type": "application/cloudevents+json"}, b"{not json", "invalid CloudEvent"),
    ({"ce-specversion": "1.0", "ce-type": events.WORKFLOW_FINISHED, "ce-id": "1",
      "ce-source": "/t", "Content-Type": "application/json"}, b'{"namespace": "default"}',
     "data.name"),
    ({"ce-specversion": "1.0", "ce-type": events.RESOURCE_ADD, "ce-id": "1", "ce-source": "/t",
      "ce-kind": "Workflow", "Content-Type": "application/json"}, b'{"spec": {}}',
     "data.metadata.name"),
])
def test_malformed_events_get_400(functions, headers, body, field):
    for stage in ("configure", "notify"):
        response = requests.post(functions.urls[stage] + "/", data=body, headers=headers,
                                 timeout=10)
        if response.status_code == 202:  # not an event this function handles
            continue
        assert response.status_code == 400, (stage, response.text)
        assert field in response.json()["error"]


def test_healthz_and_environment(functions, relay: Relay, kube: Kube):
    for url in functions.urls.values():
        assert requests.get(url + "/healthz", timeout=5).json()["status"] == "ok"
    announced = requests.get(functions.urls["configure"] + "/environment", timeout=5).json()
    assert announced["consumerAddress"] == "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"
    assert announced["maxJobs"] == 10 and announced["currentJobs"] >= 0
    relay.send(ping())  # the tick keeps the c2d-environment ConfigMap current
    stored = json.loads(kube.get("ConfigMap", "default", "c2d-environment")["data"]
                        ["environment.json"])
    assert stored == requests.get(functions.urls["configure"] + "/environment", timeout=5).json()
