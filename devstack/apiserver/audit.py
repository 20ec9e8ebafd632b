"""An audit log of the writes, as kube-apiserver's `--audit-log-path` writes it.

One JSON line per completed write request (create, update, patch, delete): an
`audit.k8s.io/v1` Event at level `Metadata`, stage `ResponseComplete`, with
microsecond timestamps. Reads are left out: they change nothing and are most
of the traffic. The benchmark reads it for the instant an object was created
*in the API*, which `creationTimestamp` gives only to the second.
"""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from . import codec

VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def micro_time(instant: float) -> str:
    """Kubernetes' MicroTime: RFC 3339 in UTC with six fractional digits."""
    return datetime.fromtimestamp(instant, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_micro_time(text: str) -> float:
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


@dataclass
class ObjectRef:
    """What a request is about, as routing found it (the name of a create comes later)."""

    resource: str
    namespace: str | None
    name: str | None
    subresource: str | None
    group: str
    version: str

    def as_dict(self) -> dict[str, str]:
        ref = {"resource": self.resource, "namespace": self.namespace, "name": self.name,
               "subresource": self.subresource, "apiGroup": self.group,
               "apiVersion": self.version}
        return {key: value for key, value in ref.items() if value}


class AuditLog:
    """Appends one line per write; safe to call from every handler thread."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._lock = threading.Lock()
        self._file = open(self.path, "ab")  # noqa: SIM115 - closed in close()

    def record(self, method: str, uri: str, ref: ObjectRef | None, code: int,
               received: float, completed: float) -> None:
        verb = VERBS.get(method)
        if verb is None:
            return
        event: dict[str, Any] = {
            "kind": "Event", "apiVersion": "audit.k8s.io/v1", "level": "Metadata",
            "auditID": str(uuid.uuid4()), "stage": "ResponseComplete", "requestURI": uri,
            "verb": verb, "responseStatus": {"code": code},
            "requestReceivedTimestamp": micro_time(received),
            "stageTimestamp": micro_time(completed)}
        if ref is not None:
            event["objectRef"] = ref.as_dict()
        line = codec.dumps(event) + b"\n"
        with self._lock:
            if not self._file.closed:  # a request that outlived stop() goes unrecorded
                self._file.write(line)
                self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


def created(path: Path, resource: str, namespace: str) -> dict[str, float]:
    """name -> the instant its create completed, for one resource of one namespace."""
    found: dict[str, float] = {}
    if not Path(path).is_file():
        return found
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            event = json.loads(line)
            ref = event.get("objectRef") or {}
            if event.get("verb") == "create" and ref.get("resource") == resource \
                    and ref.get("namespace") == namespace and not ref.get("subresource") \
                    and event.get("responseStatus", {}).get("code") == 201 and ref.get("name"):
                found.setdefault(ref["name"], parse_micro_time(event["stageTimestamp"]))
    return found
