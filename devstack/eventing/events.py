"""CloudEvents over HTTP for the embedded eventing, on top of the `cloudevents` 2.x SDK.

Inside the eventing an event's `data` is always kept as the raw bytes it arrived
with, so that forwarding never re-encodes a payload (a JSON list, a number or a
non-JSON body travel unchanged).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from cloudevents.core.base import BaseCloudEvent
from cloudevents.core.bindings.http import (
    HTTPMessage,
    from_binary,
    to_binary,
    to_structured,
)
from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from devstack.eventing.manifests import ManifestError

STRUCTURED_CONTENT_TYPE = "application/cloudevents+json"
REQUIRED = ("specversion", "id", "source", "type")
_JSON_TYPE = JSONFormat.JSON_CONTENT_TYPE_PATTERN


class MalformedEvent(ValueError):
    """The HTTP message is not a valid CloudEvent (a 400 for the sender)."""


class _RawDataFormat(JSONFormat):
    """JSON event format whose binary-mode data stays the raw body bytes."""

    def read_data(self, body: bytes, datacontenttype: str | None) -> bytes | None:
        return bytes(body) if body else None


_RAW = _RawDataFormat()
_JSON = JSONFormat()


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def is_cloudevent_message(headers: Mapping[str, str]) -> bool:
    """True when headers announce a CloudEvent (binary `ce-*` or structured content type)."""
    if any(key.lower().startswith("ce-") for key in headers):
        return True
    content_type = (_header(headers, "content-type") or "").split(";")[0].strip().lower()
    return content_type == STRUCTURED_CONTENT_TYPE


def from_http(headers: Mapping[str, str], body: bytes) -> BaseCloudEvent:
    """Parse a binary or structured HTTP CloudEvent; `MalformedEvent` says why it is not one."""
    headers = {str(k): str(v) for k, v in headers.items()}
    try:
        if any(key.lower().startswith("ce-") for key in headers):
            _require({k.lower()[3:] for k in headers if k.lower().startswith("ce-")}, "ce-")
            return from_binary(HTTPMessage(headers, body), _RAW)
        content_type = (_header(headers, "content-type") or "").split(";")[0].strip().lower()
        if content_type != STRUCTURED_CONTENT_TYPE:
            raise MalformedEvent(
                "not a CloudEvent: no ce-* headers (binary mode) and Content-Type is "
                f"{content_type or 'absent'!r}, not {STRUCTURED_CONTENT_TYPE!r} (structured mode)"
            )
        doc = json.loads(body.decode("utf-8"))
        if not isinstance(doc, dict):
            raise MalformedEvent("structured CloudEvent: the body must be a JSON object")
        _require(set(doc), "")
        event = _JSON.read(None, json.dumps(doc))
        return replace(event, data=_data_bytes(event))
    except MalformedEvent:
        raise
    except Exception as exc:  # the SDK raises several types; all mean "malformed"
        raise MalformedEvent(f"invalid CloudEvent: {exc}") from exc


def _require(present: set[str], prefix: str) -> None:
    """The SDK would invent a missing id or specversion; a received event must carry them."""
    for name in REQUIRED:
        if name not in present:
            raise MalformedEvent(f"invalid CloudEvent: attribute {prefix}{name} is missing")


def _data_bytes(event: BaseCloudEvent) -> bytes | None:
    """A structured event's decoded `data` back to the bytes a binary body would carry."""
    data = event.get_data()
    if data is None or isinstance(data, bytes):
        return data
    content_type = event.get_datacontenttype() or "application/json"
    if isinstance(data, str) and not _JSON_TYPE.match(content_type):
        return data.encode("utf-8")
    return json.dumps(data).encode("utf-8")


def to_http(event: BaseCloudEvent, structured: bool = False) -> tuple[dict[str, str], bytes]:
    """Headers and body of an event in binary (default) or structured content mode."""
    if not structured:
        message = to_binary(event, _RAW)
        return dict(message.headers), message.body
    data = event.get_data()
    content_type = event.get_datacontenttype() or "application/json"
    if isinstance(data, bytes) and _JSON_TYPE.match(content_type):
        try:  # JSON data goes in `data`, not base64 in `data_base64`
            event = replace(event, data=json.loads(data))
        except ValueError:
            pass
    message = to_structured(event, _JSON)
    return dict(message.headers), message.body


def replace(event: BaseCloudEvent, data: Any = ..., **attributes: Any) -> BaseCloudEvent:
    """A copy of an (immutable) event with some attributes changed (None removes one)."""
    merged = dict(event.get_attributes())
    for name, value in attributes.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    new_data = event.get_data() if data is ... else data
    return type(event)(merged, new_data)


def attribute_strings(event: BaseCloudEvent) -> dict[str, str]:
    """Every context attribute as the string a Trigger filter compares against."""
    strings = {}
    for name, value in event.get_attributes().items():
        if value is None:
            continue
        if isinstance(value, datetime):
            value = value.isoformat().replace("+00:00", "Z")
        strings[name] = str(value)
    return strings


def make_event(attributes: dict[str, Any], data: bytes | None = None) -> CloudEvent:
    """A CloudEvent 1.0 (id, time and specversion filled in when absent)."""
    return CloudEvent(dict(attributes), data)


_EXTENSION_NAME = re.compile(r"^[a-z0-9]+$")


def ce_overrides(spec: Mapping[str, Any], where: str) -> dict[str, str]:
    """A source's `spec.ceOverrides.extensions`: extra attributes on every event it sends."""
    extensions = (spec.get("ceOverrides") or {}).get("extensions") or {}
    if not isinstance(extensions, Mapping):
        raise ManifestError(f"{where}: spec.ceOverrides.extensions must be a mapping")
    for name in extensions:
        if not isinstance(name, str) or not _EXTENSION_NAME.match(name):
            raise ManifestError(f"{where}: spec.ceOverrides.extensions: {name!r} is not a "
                                "CloudEvents attribute name (lowercase letters and digits)")
    return {name: str(value) for name, value in extensions.items()}
