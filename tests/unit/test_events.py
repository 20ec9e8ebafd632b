"""shared.events: parsing binary and structured CloudEvents, our replies, ApiServerSource events."""

from __future__ import annotations

import json
import uuid

import pytest
from cloudevents.core.bindings.http import to_binary_event, to_structured_event
from cloudevents.core.v1.event import CloudEvent
from flask import Flask, request

from shared import events
from shared.events import MalformedEvent

from .helpers import make_workflow

APISERVER = "https://10.96.0.1:443"


def via_flask(headers: dict[str, str], body: bytes) -> CloudEvent:
    """Parse as a handler does: headers and body of a real Flask (werkzeug) request."""
    app = Flask("test")
    with app.test_request_context("/", method="POST", headers=headers, data=body):
        return events.parse(request.headers, request.get_data())


def binary(attributes: dict, data) -> tuple[dict[str, str], bytes]:
    message = to_binary_event(CloudEvent(attributes=dict(attributes), data=data))
    return dict(message.headers), message.body


def structured(attributes: dict, data) -> tuple[dict[str, str], bytes]:
    message = to_structured_event(CloudEvent(attributes=dict(attributes), data=data))
    return dict(message.headers), message.body


ATTRIBUTES = {"type": "com.example.test", "source": "/test", "subject": "wf-1",
              "datacontenttype": "application/json", "c2dworkflow": "c2d/wf-1"}


@pytest.mark.parametrize("encode", [binary, structured])
def test_parse_both_content_modes(encode):
    headers, body = encode(ATTRIBUTES, {"namespace": "c2d", "name": "wf-1"})
    event = via_flask(headers, body)
    assert event.get_type() == "com.example.test"
    assert event.get_source() == "/test"
    assert event.get_subject() == "wf-1"
    assert event.get_extension("c2dworkflow") == "c2d/wf-1"
    assert events.data_of(event) == {"namespace": "c2d", "name": "wf-1"}


def test_parse_go_style_canonical_headers():
    """Knative's Go senders canonicalise header names (Ce-Id, Content-Type)."""
    headers = {"Ce-Id": "42", "Ce-Source": "/go", "Ce-Specversion": "1.0",
               "Ce-Type": "com.example.go", "Ce-Kind": "Job", "Content-Type": "application/json"}
    event = via_flask(headers, b'{"a": 1}')
    assert (event.get_id(), event.get_extension("kind")) == ("42", "Job")


def test_structured_mode_with_charset():
    _, body = structured(ATTRIBUTES, {"a": 1})
    event = events.parse({"Content-Type": "application/cloudevents+json; charset=utf-8"}, body)
    assert events.data_of(event) == {"a": 1}


BINARY_OK = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t",
             "content-type": "application/json"}
STRUCTURED = {"content-type": "application/cloudevents+json"}


def _without(key: str) -> dict[str, str]:
    return {k: v for k, v in BINARY_OK.items() if k != key}


def _doc(**fields) -> bytes:
    return json.dumps({"specversion": "1.0", "id": "1", "source": "/s", "type": "t", **fields})\
        .encode()


MALFORMED = [
    ("binary without ce-source", _without("ce-source"), b"{}"),
    ("binary without ce-id", _without("ce-id"), b"{}"),
    ("binary without ce-type", _without("ce-type"), b"{}"),
    ("binary with empty id", {**BINARY_OK, "ce-id": ""}, b"{}"),
    ("binary specversion 0.3", {**BINARY_OK, "ce-specversion": "0.3"}, b"{}"),
    ("binary specversion 2.0", {**BINARY_OK, "ce-specversion": "2.0"}, b"{}"),
    ("binary bad extension name", {**BINARY_OK, "ce-Bad_Ext": "x"}, b"{}"),
    ("binary bad time", {**BINARY_OK, "ce-time": "yesterday"}, b"{}"),
    ("structured bad JSON", STRUCTURED, b"{not json"),
    ("structured not UTF-8", STRUCTURED, b"\xff\xfe{}"),
    ("structured without source", STRUCTURED,
     json.dumps({"specversion": "1.0", "id": "1", "type": "t"}).encode()),
    ("structured specversion 2.0", STRUCTURED,
     json.dumps({"specversion": "2.0", "id": "1", "source": "/s", "type": "t"}).encode()),
    ("structured specversion 0.3", STRUCTURED,
     json.dumps({"specversion": "0.3", "id": "1", "source": "/s", "type": "t"}).encode()),
    ("plain JSON, not a CloudEvent", {"content-type": "application/json"}, b'{"type": "t"}'),
    ("no headers, empty body", {}, b""),
    ("form post", {"content-type": "application/x-www-form-urlencoded"}, b"a=1"),
    ("structured JSON array", STRUCTURED, b"[1, 2]"),
    ("structured JSON string", STRUCTURED, b'"event"'),
]


@pytest.mark.parametrize("case, headers, body", MALFORMED)
def test_malformed_request_is_a_malformed_event(case, headers, body):
    with pytest.raises(MalformedEvent):
        via_flask(headers, body)


@pytest.mark.parametrize("headers", [BINARY_OK, STRUCTURED])
def test_huge_body_is_refused_before_parsing(headers):
    body = b'{"a": "' + b"x" * events.MAX_BODY_BYTES + b'"}'
    with pytest.raises(MalformedEvent, match="larger than"):
        events.parse(headers, body)


def test_body_at_the_limit_is_read():
    head, tail = b'{"a": "', b'"}'
    body = head + b"x" * (events.MAX_BODY_BYTES - len(head) - len(tail)) + tail
    assert len(body) == events.MAX_BODY_BYTES
    event = events.parse(BINARY_OK, body)
    assert len(events.data_of(event)["a"]) == events.MAX_BODY_BYTES - len(head) - len(tail)


@pytest.mark.parametrize("body, problem", [
    (b"{not json", "not valid JSON"), (b"[1, 2]", "must be a JSON object"),
    (b'"text"', "data: "), (b"", "must be a JSON object"),
    (b"null", "must be a JSON object")])
def test_data_that_is_not_a_json_object(body, problem):
    event = events.parse(BINARY_OK, body)
    with pytest.raises(MalformedEvent, match=problem):
        events.data_of(event)


# ---------------------------------------------------------------- our own events


@pytest.mark.parametrize("event_type", events.OUR_TYPES)
def test_make_follows_design_section_5(event_type):
    workflow = make_workflow(name="job-7", namespace="ocean")
    event = events.make(event_type, "/c2d/configure", workflow, results=3)
    assert event_type.startswith("com.oceanprotocol.c2d.")
    assert event.get_type() == event_type
    assert event.get_source() == "/c2d/configure"
    assert event.get_specversion() == "1.0"
    assert event.get_subject() == "job-7"
    assert event.get_extension("c2dworkflow") == "ocean/job-7"
    assert event.get_datacontenttype() == "application/json"
    assert event.get_data() == {"namespace": "ocean", "name": "job-7",
                                "uid": workflow["metadata"]["uid"], "results": 3}


def test_each_made_event_has_its_own_id(workflow):
    ids = {events.make(events.WORKFLOW_STARTED, "/c2d/x", workflow).get_id() for _ in range(5)}
    assert len(ids) == 5


def test_reply_is_binary_mode_json(workflow):
    headers, body = events.to_http(events.make(events.CONFIGURE_SUCCEEDED, "/c2d/configure",
                                               workflow))
    lowered = {k.lower(): v for k, v in headers.items()}
    assert lowered["ce-type"] == events.CONFIGURE_SUCCEEDED
    assert lowered["ce-subject"] == "wf-1"
    assert lowered["ce-c2dworkflow"] == "c2d/wf-1"
    assert lowered["ce-specversion"] == "1.0"
    assert lowered["content-type"] == "application/json"
    assert json.loads(body) == {"namespace": "c2d", "name": "wf-1",
                                "uid": workflow["metadata"]["uid"]}


def test_reply_round_trips_through_parse(workflow):
    sent = events.make(events.ALGORITHM_FINISHED, "/c2d/algorithm", workflow, exitCode=0)
    received = via_flask(*events.to_http(sent))
    for getter in ("get_id", "get_type", "get_source", "get_subject", "get_datacontenttype"):
        assert getattr(received, getter)() == getattr(sent, getter)()
    ref = events.workflow_ref(received)
    assert (ref.namespace, ref.name, ref.uid) == ("c2d", "wf-1", workflow["metadata"]["uid"])
    assert ref.data["exitCode"] == 0


def test_workflow_without_uid_gives_an_empty_uid():
    workflow = make_workflow()
    del workflow["metadata"]["uid"]
    assert events.make(events.WORKFLOW_FINISHED, "/c2d/publish", workflow).get_data()["uid"] == ""


@pytest.mark.parametrize("data, problem", [
    ({"name": "wf"}, "data.namespace"), ({"namespace": "ns"}, "data.name"),
    ({"namespace": "ns", "name": ""}, "data.name"), ({"namespace": 1, "name": "wf"},
                                                      "data.namespace")])
def test_workflow_ref_requires_namespace_and_name(data, problem):
    event = CloudEvent(attributes={"type": events.WORKFLOW_FINISHED, "source": "/x"}, data=data)
    with pytest.raises(MalformedEvent, match=problem):
        events.workflow_ref(event)


# ---------------------------------------------------------------- ApiServerSource events


PLURALS = {"Workflow": "workflows", "Job": "jobs"}


def apiserver_request(verb: str, obj: dict, kind: str | None = None) -> tuple[dict, bytes]:
    """Headers and body as the ApiServerSource adapter sends them (Go, binary mode)."""
    kind = kind or obj["kind"]
    metadata = obj["metadata"]
    subject = (f"/apis/{obj['apiVersion']}/namespaces/{metadata['namespace']}/"
               f"{PLURALS.get(kind, kind.lower() + 's')}/{metadata['name']}")
    headers = {
        "Ce-Id": str(uuid.uuid4()), "Ce-Source": APISERVER, "Ce-Specversion": "1.0",
        "Ce-Type": f"dev.knative.apiserver.resource.{verb}", "Ce-Subject": subject,
        "Ce-Time": "2025-01-01T12:00:00.123456789Z", "Ce-Kind": kind,
        "Ce-Name": metadata["name"], "Ce-Namespace": metadata["namespace"],
        "Ce-Apiversion": obj["apiVersion"], "Content-Type": "application/json",
        "Ce-Knativebrokerttl": "255",
    }
    return headers, json.dumps(obj).encode()


def job_object(name: str, namespace: str = "c2d") -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "namespace": namespace, "uid": "u-1",
                         "resourceVersion": "12", "labels": {"c2d.oceanprotocol.com/stage": "x"}},
            "spec": {"template": {}}, "status": {"succeeded": 1}}


@pytest.mark.parametrize("verb", ["add", "update", "delete"])
def test_resource_event_of_a_workflow(verb):
    workflow = make_workflow(name="wf-9")
    workflow["status"] = {"statusCode": 40}
    event = via_flask(*apiserver_request(verb, workflow))
    resource = events.resource_event(event)
    assert (resource.verb, resource.kind) == (verb, "Workflow")
    assert (resource.name, resource.namespace) == ("wf-9", "c2d")
    assert resource.object == workflow
    assert event.get_subject() == "/apis/oceanprotocol.com/v1alpha1/namespaces/c2d/workflows/wf-9"


@pytest.mark.parametrize("stage", ["configure", "algorithm", "filter", "publish"])
def test_resource_event_of_a_stage_job(stage):
    event = via_flask(*apiserver_request("update", job_object(f"wf-9-{stage}")))
    resource = events.resource_event(event)
    assert (resource.verb, resource.kind, resource.name) == ("update", "Job", f"wf-9-{stage}")
    assert event.get_subject().endswith(f"-{stage}")
    assert resource.object["status"] == {"succeeded": 1}


def test_object_without_kind_takes_the_extensions():
    job = job_object("wf-configure")
    del job["kind"]
    headers, body = apiserver_request("update", {**job, "kind": "Job"})
    resource = events.resource_event(via_flask(headers, json.dumps(job).encode()))
    assert resource.kind == "Job"


def test_kind_mismatch_is_malformed():
    headers, body = apiserver_request("update", job_object("wf-configure"), kind="Workflow")
    with pytest.raises(MalformedEvent, match="does not match"):
        events.resource_event(via_flask(headers, body))


def test_missing_kind_extension_is_malformed():
    headers, body = apiserver_request("update", job_object("wf-configure"))
    del headers["Ce-Kind"]
    with pytest.raises(MalformedEvent, match="kind"):
        events.resource_event(via_flask(headers, body))


@pytest.mark.parametrize("event_type", [
    "dev.knative.apiserver.ref.update",  # Reference mode: data is a reference, not the object
    "dev.knative.sources.ping", events.WORKFLOW_STARTED, "dev.knative.apiserver.resourceadd"])
def test_other_types_are_not_resource_events(event_type):
    headers, body = apiserver_request("update", job_object("wf-configure"))
    headers["Ce-Type"] = event_type
    with pytest.raises(MalformedEvent, match="type"):
        events.resource_event(via_flask(headers, body))


@pytest.mark.parametrize("data", [
    {"kind": "Job"}, {"kind": "Job", "metadata": None}, {"kind": "Job", "metadata": {}},
    {"kind": "Job", "metadata": {"name": 5}}, [1, 2], "job"])
def test_resource_event_without_the_object_is_malformed(data):
    headers, _ = apiserver_request("update", job_object("wf-configure"))
    with pytest.raises(MalformedEvent):
        events.resource_event(via_flask(headers, json.dumps(data).encode()))
