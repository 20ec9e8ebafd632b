"""CloudEvents in and out: parse a request, build c2d's events, answer a reply.

Types follow DESIGN section 5. Our own events carry `subject` = workflow name,
the extension `c2dworkflow` = `<namespace>/<name>` and JSON `data` with at
least `namespace`, `name` and `uid`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cloudevents.core.bindings.http import HTTPMessage, from_http_event, to_binary_event
from cloudevents.core.exceptions import BaseCloudEventException
from cloudevents.core.v1.event import CloudEvent

from shared import workflow as wf

PREFIX = "com.oceanprotocol.c2d."
WORKFLOW_STARTED = PREFIX + "workflow.started"
WORKFLOW_FINISHED = PREFIX + "workflow.finished"
CONFIGURE_SUCCEEDED = PREFIX + "configure.succeeded"
CONFIGURE_FAILED = PREFIX + "configure.failed"
ALGORITHM_FINISHED = PREFIX + "algorithm.finished"
OUR_TYPES = (WORKFLOW_STARTED, WORKFLOW_FINISHED, CONFIGURE_SUCCEEDED, CONFIGURE_FAILED,
             ALGORITHM_FINISHED)

APISERVER_PREFIX = "dev.knative.apiserver.resource."
RESOURCE_ADD = APISERVER_PREFIX + "add"
RESOURCE_UPDATE = APISERVER_PREFIX + "update"
RESOURCE_DELETE = APISERVER_PREFIX + "delete"
PING = "dev.knative.sources.ping"

MAX_BODY_BYTES = 4 * 1024 * 1024
REQUIRED = ("specversion", "id", "source", "type")


class MalformedEvent(ValueError):
    """The request is not a CloudEvent c2d can read (answered with 400)."""


def parse(headers: Mapping[str, str], body: bytes) -> CloudEvent:
    """A CloudEvent from an HTTP request, binary or structured mode."""
    if len(body) > MAX_BODY_BYTES:
        raise MalformedEvent(f"body larger than {MAX_BODY_BYTES} bytes")
    lowered = {k.lower(): v for k, v in headers.items()}
    if any(k.startswith("ce-") for k in lowered):
        missing = [a for a in REQUIRED if not lowered.get(f"ce-{a}")]
    elif "cloudevents" in lowered.get("content-type", ""):
        missing = _missing_in_structured(body)
    else:
        raise MalformedEvent("not a CloudEvent: no ce-* headers and content type is not "
                             "application/cloudevents+json")
    if missing:
        raise MalformedEvent(f"invalid CloudEvent: required attribute {missing[0]} is missing")
    try:
        event = from_http_event(HTTPMessage(lowered, body))
    except (BaseCloudEventException, ValueError, TypeError, KeyError) as error:
        raise MalformedEvent(f"invalid CloudEvent: {error}") from None
    if event.get_specversion() != "1.0":
        raise MalformedEvent(f"unsupported specversion {event.get_specversion()!r}")
    return event


def _missing_in_structured(body: bytes) -> list[str]:
    """Required attributes absent from a structured-mode body (which must be an object)."""
    try:
        document = json.loads(body)
    except ValueError:
        raise MalformedEvent("invalid CloudEvent: the body is not valid JSON") from None
    if not isinstance(document, dict):
        raise MalformedEvent("invalid CloudEvent: a structured event must be a JSON object")
    return [a for a in REQUIRED if not document.get(a)]


def data_of(event: CloudEvent) -> dict[str, Any]:
    """The event's data as a JSON object; MalformedEvent if it is anything else."""
    data = event.get_data()
    if isinstance(data, bytes | str):
        try:
            data = json.loads(data)
        except ValueError:
            raise MalformedEvent("data: not valid JSON") from None
    if not isinstance(data, dict):
        raise MalformedEvent("data: must be a JSON object")
    return data


def to_http(event: CloudEvent) -> tuple[dict[str, str], bytes]:
    """Headers and body of `event` in binary mode."""
    message = to_binary_event(event)
    return dict(message.headers), message.body


def make(event_type: str, source: str, workflow: dict, **data: Any) -> CloudEvent:
    """One of c2d's own events about `workflow`, with extra `data` fields."""
    body = {"namespace": wf.namespace(workflow), "name": wf.name(workflow),
            "uid": workflow["metadata"].get("uid", ""), **data}
    return CloudEvent(
        attributes={"type": event_type, "source": source, "subject": wf.name(workflow),
                    "datacontenttype": "application/json", "c2dworkflow": wf.key(workflow)},
        data=body,
    )


@dataclass(frozen=True)
class WorkflowRef:
    """Which workflow one of our events is about."""

    namespace: str
    name: str
    uid: str
    data: dict[str, Any]


def workflow_ref(event: CloudEvent) -> WorkflowRef:
    """The workflow a `com.oceanprotocol.c2d.*` event refers to."""
    data = data_of(event)
    for field in ("namespace", "name"):
        if not isinstance(data.get(field), str) or not data[field]:
            raise MalformedEvent(f"data.{field}: required")
    return WorkflowRef(data["namespace"], data["name"], str(data.get("uid", "")), data)


@dataclass(frozen=True)
class ResourceEvent:
    """An ApiServerSource event in Resource mode: verb, kind and the whole object."""

    verb: str
    kind: str
    object: dict[str, Any]

    @property
    def name(self) -> str:
        return self.object["metadata"]["name"]

    @property
    def namespace(self) -> str:
        return self.object["metadata"].get("namespace", "default")


def resource_event(event: CloudEvent) -> ResourceEvent:
    """Read an ApiServerSource event; MalformedEvent when it is not one."""
    event_type = event.get_type()
    if not event_type.startswith(APISERVER_PREFIX):
        raise MalformedEvent(f"type: {event_type!r} is not an ApiServerSource resource event")
    kind = event.get_extension("kind")
    if not kind:
        raise MalformedEvent("extension kind: required on an ApiServerSource event")
    obj = data_of(event)
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str):
        raise MalformedEvent("data.metadata.name: required (the whole object)")
    if obj.get("kind", kind) != kind:
        raise MalformedEvent(f"data.kind {obj.get('kind')!r} does not match extension {kind!r}")
    return ResourceEvent(event_type.removeprefix(APISERVER_PREFIX), kind, obj)
