"""Timestamps for the benchmark: a raw watch on the API server and a tap on the Broker.

The embedded API server writes `creationTimestamp`, `startedAt` and `finishedAt`
to the second (as Kubernetes does), too coarse for tens of milliseconds. So
every instant here is `time.time()` taken in this process when something is
*seen*: a watch event received (`Timeline`) or an event entering the Broker
(`BrokerTap`, at the moment the Broker accepts it). A watch event arrives after
the write, and later still when this process (the stack's: Broker, sources,
controllers) is busy: in a burst, 1-20 ms. The instant a Job was *created in
the API* therefore comes from the API server's audit log when the stack keeps
one (`Stack(audit=True)`, see `EngineRun.jobs`); the watch's instant is kept
beside it.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import requests

from shared import jobs
from shared import workflow as wf
from shared.manifests import STAGE_LABEL, WORKFLOW_LABEL

log = logging.getLogger(__name__)

STAGE_OF_JOB = {"configure", "algorithm", "filter", "publish"}


class RawWatch:
    """GET ...?watch=true on `path`, calling `on_event(type, object, seen_at)` per line.

    Plain `requests` and `json`: the official client's model deserialisation
    costs milliseconds per event, which would load the machine being measured.
    """

    def __init__(self, server: str, path: str, on_event: Any, name: str):
        self.url = server.rstrip("/") + path
        self.on_event = on_event
        self.session = requests.Session()
        self._stopped = threading.Event()
        self._response: requests.Response | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"bench-watch-{name}",
                                        daemon=True)

    def start(self, timeout: float = 10.0) -> RawWatch:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the watch on {self.url} did not start in {timeout} s")
        return self

    def _run(self) -> None:
        version = ""
        while not self._stopped.is_set():
            try:
                if not version:
                    listed = self.session.get(self.url, timeout=30)
                    listed.raise_for_status()
                    body = listed.json()
                    version = body["metadata"]["resourceVersion"]
                    for item in body.get("items") or []:
                        self.on_event("LISTED", item, time.time())
                version = self._follow(version)
            except (requests.RequestException, ValueError, KeyError):
                if self._stopped.wait(0.2):
                    return

    def _follow(self, version: str) -> str:
        params = {"watch": "true", "resourceVersion": version, "timeoutSeconds": "600"}
        with self.session.get(self.url, params=params, stream=True, timeout=(5, 60)) as response:
            self._response = response
            response.raise_for_status()
            self._ready.set()
            for line in response.iter_lines(chunk_size=None):
                seen = time.time()
                if not line:
                    continue
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    return ""  # 410 Gone and friends: list again
                version = (obj.get("metadata") or {}).get("resourceVersion") or version
                if kind != "BOOKMARK":
                    self.on_event(kind, obj, seen)
        return version

    def stop(self) -> None:
        self._stopped.set()
        response = self._response
        if response is not None:
            try:  # unblocks iter_lines in the watch thread
                response.raw._fp.fp.raw._sock.shutdown(2)  # noqa: SLF001
            except (AttributeError, OSError):
                response.close()
        self._thread.join(timeout=5)
        self.session.close()


class Timeline:
    """Jobs, pods and Workflows of one namespace, as seen through watches."""

    def __init__(self, server: str, namespace: str, workflows: bool = True):
        self.namespace = namespace
        self._lock = threading.Lock()
        self.job_added: dict[str, float] = {}
        self.job_finished: dict[str, float] = {}
        self.pod_started: dict[str, float] = {}
        self.pod_finished: dict[str, float] = {}
        self.pod_owner: dict[str, tuple[str, str]] = {}  # pod -> (workflow, stage)
        self.wf_admitted: dict[str, float] = {}
        self.wf_queued: set[str] = set()
        self.wf_final: dict[str, float] = {}
        self.wf_phase: dict[str, str] = {}
        self._changed = threading.Condition(self._lock)
        ns = f"/namespaces/{namespace}"
        self._watches = [
            RawWatch(server, f"/apis/batch/v1{ns}/jobs", self._on_job, "jobs"),
            RawWatch(server, f"/api/v1{ns}/pods", self._on_pod, "pods"),
        ]
        if workflows:
            self._watches.append(RawWatch(
                server, f"/apis/{wf.GROUP}/{wf.VERSION}{ns}/{wf.PLURAL}", self._on_workflow,
                "workflows"))

    def start(self) -> Timeline:
        for watch in self._watches:
            watch.start()
        return self

    def stop(self) -> None:
        for watch in self._watches:
            watch.stop()

    def _on_job(self, kind: str, job: dict, seen: float) -> None:
        name = job["metadata"]["name"]
        with self._lock:
            if kind == "ADDED":
                self.job_added.setdefault(name, seen)
            if jobs.finished(job) and name not in self.job_finished:
                self.job_finished[name] = seen
                self._changed.notify_all()

    def _on_pod(self, kind: str, pod: dict, seen: float) -> None:
        name = pod["metadata"]["name"]
        labels = pod["metadata"].get("labels") or {}
        states = [s.get("state") or {} for s in (pod.get("status") or {}).get(
            "containerStatuses") or []]
        with self._lock:
            if WORKFLOW_LABEL in labels:
                self.pod_owner[name] = (labels[WORKFLOW_LABEL], labels.get(STAGE_LABEL, ""))
            if any("running" in s or "terminated" in s for s in states):
                self.pod_started.setdefault(name, seen)
            if states and all("terminated" in s for s in states):
                self.pod_finished.setdefault(name, seen)

    def _on_workflow(self, kind: str, workflow: dict, seen: float) -> None:
        name = workflow["metadata"]["name"]
        with self._lock:
            if wf.status_code(workflow) == wf.QUEUED:
                self.wf_queued.add(name)
            if wf.status_code(workflow) >= wf.STARTED:
                self.wf_admitted.setdefault(name, seen)
            if wf.is_final(workflow) and name not in self.wf_final:
                self.wf_final[name] = seen
                self.wf_phase[name] = wf.status(workflow).get("phase", "")
                self._changed.notify_all()

    def wait(self, predicate: Any, timeout: float) -> bool:
        """Wait until `predicate(self)` holds (checked on every final Job or Workflow)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self):
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._changed.wait(min(left, 0.5))
        return True

    def pod_seconds(self, workflow: str) -> float | None:
        """The summed run time of the workflow's pods (None when one was not seen whole)."""
        with self._lock:
            pods = [p for p, (owner, _) in self.pod_owner.items() if owner == workflow]
            if not pods or any(p not in self.pod_started or p not in self.pod_finished
                               for p in pods):
                return None
            return sum(self.pod_finished[p] - self.pod_started[p] for p in pods)

    def pod_seconds_by_stage(self) -> dict[str, list[float]]:
        with self._lock:
            found: dict[str, list[float]] = defaultdict(list)
            for pod, (_, stage) in self.pod_owner.items():
                if pod in self.pod_started and pod in self.pod_finished:
                    found[stage].append(self.pod_finished[pod] - self.pod_started[pod])
            return dict(found)


@dataclass(frozen=True)
class Accepted:
    """One event entering the Broker."""

    at: float
    type: str
    workflow: str | None  # the workflow it is about, when it is about one
    stage: str | None  # for Job events: the stage of the Job
    job_finished: bool  # for Job events: the Job has a Complete/Failed condition


class BrokerTap:
    """Records every event entering `broker` (from a source or as a re-ingested reply).

    Wraps the instance's `ingest`, through which both paths go; the wrapper only
    notes the instant and the event and then calls the original, so routing is
    unchanged. Events are read when a snapshot is taken, not while they are
    routed: reading a Job's JSON in the Broker's process cost the engine's runs
    CPU that the reference does not pay.
    """

    def __init__(self, broker: Any):
        self.broker = broker
        self.accepted: list[Accepted] = []
        self._unread: list[tuple[float, Any]] = []
        self._lock = threading.Lock()
        self._original = broker.ingest
        broker.ingest = self._ingest

    def _ingest(self, event: Any) -> list[str]:
        with self._lock:
            self._unread.append((time.time(), event))
        return self._original(event)

    def detach(self) -> None:
        self.broker.ingest = self._original

    def snapshot(self) -> list[Accepted]:
        with self._lock:
            unread, self._unread = self._unread, []
            for at, event in unread:
                try:
                    self.accepted.append(describe(event, at))
                except Exception:  # one unreadable event must not lose the others
                    log.exception("benchmark tap: cannot read an event")
            return list(self.accepted)


def describe(event: Any, at: float) -> Accepted:
    event_type = event.get_type()
    subject = event.get_subject() or ""
    if event_type.startswith("dev.knative.apiserver.resource."):
        data = event.get_data()
        obj = json.loads(data) if isinstance(data, bytes | str) else (data or {})
        name = (obj.get("metadata") or {}).get("name", "")
        if obj.get("kind") == "Job":
            owner = wf.job_stage(name)
            return Accepted(at, event_type, owner[0] if owner else None,
                            owner[1] if owner else None, bool(jobs.finished(obj)))
        return Accepted(at, event_type, name if obj.get("kind") == wf.KIND else None,
                        None, False)
    return Accepted(at, event_type, subject or None, None, False)
