"""Drive the four functions as the Broker would, against the embedded Kubernetes.

`Functions` serves the real Flask apps over HTTP on loopback; `Relay` posts
CloudEvents to them along the routes of DESIGN section 5 and feeds their
replies back, so that a test chooses exactly which events arrive, twice, late
or never.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import requests
from cloudevents.core.bindings.http import to_structured_event
from cloudevents.core.v1.event import CloudEvent
from werkzeug.serving import make_server

from devstack.testing import wait_until
from functions.algorithm import app as algorithm_app
from functions.configure import app as configure_app
from functions.notify import app as notify_app
from functions.publish import app as publish_app
from shared import events
from shared import workflow as wf
from shared.jobs import finished
from shared.kube import Kube
from shared.settings import Settings

BUILDERS = {"configure": configure_app.build, "algorithm": algorithm_app.build,
            "publish": publish_app.build, "notify": notify_app.build}

# (event type, ApiServerSource kind, subject suffix) -> functions, as knative/ routes them.
ROUTES: list[tuple[str, str | None, tuple[str, ...] | None, str]] = [
    (events.RESOURCE_ADD, "Workflow", None, "configure"),
    (events.RESOURCE_UPDATE, "Workflow", None, "algorithm"),
    (events.RESOURCE_UPDATE, "Job", ("-configure",), "configure"),
    (events.RESOURCE_UPDATE, "Job", ("-algorithm",), "algorithm"),
    (events.RESOURCE_UPDATE, "Job", ("-filter", "-publish"), "publish"),
    (events.WORKFLOW_STARTED, None, None, "notify"),
    (events.CONFIGURE_SUCCEEDED, None, None, "algorithm"),
    (events.CONFIGURE_FAILED, None, None, "publish"),
    (events.ALGORITHM_FINISHED, None, None, "publish"),
    (events.WORKFLOW_FINISHED, None, None, "notify"),
    (events.WORKFLOW_FINISHED, None, None, "configure"),
    (events.PING, None, None, "configure"),
    (events.PING, None, None, "algorithm"),
    (events.PING, None, None, "publish"),
    (events.PING, None, None, "notify"),
]


def targets(event: CloudEvent) -> list[str]:
    found = []
    for event_type, kind, suffixes, stage in ROUTES:
        if event.get_type() != event_type:
            continue
        if kind is not None and event.get_extension("kind") != kind:
            continue
        if suffixes is not None and not (event.get_subject() or "").endswith(suffixes):
            continue
        found.append(stage)
    return found


def resource_event(verb: str, obj: dict) -> CloudEvent:
    """An event of exactly the ApiServerSource adapter's shape (mode Resource)."""
    api_version, kind = obj["apiVersion"], obj["kind"]
    plural = {"Workflow": "workflows", "Job": "jobs"}[kind]
    metadata = obj["metadata"]
    return CloudEvent(attributes={
        "type": events.APISERVER_PREFIX + verb, "source": "https://127.0.0.1:6443",
        "subject": f"/apis/{api_version}/namespaces/{metadata['namespace']}/{plural}/"
                   f"{metadata['name']}",
        "id": str(uuid.uuid4()), "datacontenttype": "application/json",
        "kind": kind, "name": metadata["name"], "namespace": metadata["namespace"],
        "apiversion": api_version}, data=obj)


def ping() -> CloudEvent:
    return CloudEvent(attributes={"type": events.PING,
                                  "source": "/apis/v1/namespaces/default/pingsources/c2d-resync",
                                  "datacontenttype": "application/json"}, data={})


class Functions:
    """The four real Flask apps, each on its own loopback port."""

    def __init__(self, kubeconfig: str, config: Settings, stages: Iterable[str] = BUILDERS):
        self.urls: dict[str, str] = {}
        self._servers = []
        for stage in stages:
            server = make_server("127.0.0.1", 0, BUILDERS[stage](kubeconfig, config),
                                 threaded=True)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self._servers.append(server)
            self.urls[stage] = f"http://127.0.0.1:{server.server_port}"

    def close(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()


@dataclass
class Delivery:
    stage: str
    event: CloudEvent
    status: int
    reply: CloudEvent | None


@dataclass
class Relay:
    """A hand-driven Broker: deliver, record, and feed replies back."""

    urls: dict[str, str]
    structured: bool = False
    log: list[Delivery] = field(default_factory=list)

    def post(self, stage: str, event: CloudEvent, structured: bool | None = None) -> Delivery:
        use_structured = self.structured if structured is None else structured
        if use_structured:
            message = to_structured_event(event)
            headers, body = dict(message.headers), message.body
        else:
            headers, body = events.to_http(event)
        response = requests.post(self.urls[stage] + "/", data=body,
                                 headers={**headers, "Prefer": "reply"}, timeout=30)
        reply = events.parse(response.headers, response.content) \
            if response.status_code == 200 else None
        delivery = Delivery(stage, event, response.status_code, reply)
        self.log.append(delivery)
        return delivery

    def send(self, event: CloudEvent, follow: bool = True,
             drop: Callable[[CloudEvent], bool] = lambda e: False) -> list[Delivery]:
        """Deliver `event` to every routed function; with `follow`, replies too."""
        pending, done = [event], []
        while pending:
            current = pending.pop(0)
            if drop(current):
                continue
            for stage in targets(current):
                delivery = self.post(stage, current)
                assert delivery.status in (200, 202), \
                    f"{stage} answered {delivery.status} to {current.get_type()}"
                done.append(delivery)
                if follow and delivery.reply is not None:
                    pending.append(delivery.reply)
        return done

    def replies(self, event_type: str) -> list[CloudEvent]:
        return [d.reply for d in self.log if d.reply and d.reply.get_type() == event_type]


def finished_job(kube: Kube, namespace: str, name: str, timeout: float = 60.0) -> dict:
    """The Job once its controller marked it Complete or Failed."""
    def done() -> dict | None:
        job = kube.get("Job", namespace, name)
        return job if job and finished(job) else None

    return wait_until(done, timeout, what=f"Job {name} to finish")


def drive(relay: Relay, kube: Kube, workflow: dict, timeout: float = 90.0,
          drop: Callable[[CloudEvent], bool] = lambda e: False,
          until: Callable[[], bool] = lambda: False) -> dict:
    """Run a created workflow to its end, delivering each Job's update as it finishes;
    or only until `until()` holds, returning the workflow as it then is."""
    namespace, name = wf.namespace(workflow), wf.name(workflow)
    relay.send(resource_event("add", workflow), drop=drop)
    delivered: set[str] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = kube.get("Workflow", namespace, name)
        if until() or (current and wf.is_final(current) and all(
                d.status in (200, 202) for d in relay.log)):
            return current
        for stage in wf.STAGES:
            job = kube.get("Job", namespace, f"{name}-{stage}")
            if job and finished(job) and job["metadata"]["uid"] not in delivered:
                delivered.add(job["metadata"]["uid"])
                relay.send(resource_event("update", job), drop=drop)
        time.sleep(0.05)
    raise AssertionError(f"workflow {name} did not finish in {timeout}s: "
                         f"{(kube.get('Workflow', namespace, name) or {}).get('status')}")


class Counting(Kube):
    """Counts the reads and the writes (replacements) of each object, by (kind, name),
    and the listings of each kind."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.reads: dict[tuple[str, str], int] = {}
        self.writes: dict[tuple[str, str], int] = {}
        self.lists: dict[str, int] = {}

    def list(self, kind: str, namespace: str, label_selector: str | None = None,
             field_selector: str | None = None) -> list[dict]:
        self.lists[kind] = self.lists.get(kind, 0) + 1
        return super().list(kind, namespace, label_selector, field_selector)

    def get(self, kind: str, namespace: str, name: str) -> dict | None:
        self.reads[kind, name] = self.reads.get((kind, name), 0) + 1
        return super().get(kind, namespace, name)

    def replace(self, obj: dict, subresource: str = "") -> dict:
        key = obj["kind"], obj["metadata"]["name"]
        self.writes[key] = self.writes.get(key, 0) + 1
        return super().replace(obj, subresource)
