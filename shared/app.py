"""The Flask plumbing every stage function shares.

A function is a `route(event) -> handler | None` plus handlers
`handler(event, stage) -> reply | None`. This module parses the request,
runs the handler and answers as the Broker expects: 200 with a CloudEvent
reply, 202 with an empty body when there is nothing to say, 400 for a
malformed event (not retried), 503 for a transient failure (retried).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from cloudevents.core.v1.event import CloudEvent
from flask import Flask, Response, jsonify, request

from shared import events, jobs, logs, settings, templates
from shared import workflow as wf
from shared.connection import connect
from shared.kube import Kube, KubeError, Permission
from shared.settings import Settings
from shared.workflow import InvalidTransition


@dataclass
class Stage:
    """What a handler works with: its settings, its Kubernetes access, its logger."""

    name: str
    settings: Settings
    kube: Kube
    log: logging.Logger
    source: str = field(init=False)

    def __post_init__(self) -> None:
        self.source = f"/c2d/{self.name}"

    def reply(self, event_type: str, workflow: dict, **data: Any) -> CloudEvent:
        """One of our events about `workflow`, sent from this function."""
        return events.make(event_type, self.source, workflow, **data)

    def workflow(self, namespace: str, name: str) -> dict | None:
        """The Workflow as the API has it now (events may carry an older copy)."""
        return self.kube.get("Workflow", namespace, name)

    def referenced_workflow(self, event: CloudEvent) -> dict | None:
        """The Workflow one of our own events is about, read fresh."""
        ref = events.workflow_ref(event)
        return self.workflow(ref.namespace, ref.name)

    def job_event(self, event: CloudEvent) -> tuple[dict, dict, str] | None:
        """From a finished Job's ApiServerSource event: the Job, its Workflow (fresh), its stage.

        None, without a call to the API, for a Job still running (most of a Job's
        updates: every stage acts only on the finished ones) or one the engine did
        not name; None too when its Workflow is gone.
        """
        job = events.resource_event(event).object
        owner = wf.job_stage(job["metadata"]["name"])
        if owner is None or jobs.finished(job) is None:
            return None
        workflow = self.workflow(job["metadata"].get("namespace", "default"), owner[0])
        return (job, workflow, owner[1]) if workflow else None

    def workflows(self) -> list[dict]:
        """The Workflows of the engine's namespace, oldest first."""
        found = self.kube.list("Workflow", self.settings.namespace)
        return sorted(found, key=lambda w: (w["metadata"].get("creationTimestamp", ""),
                                            w["metadata"]["name"]))

    def update_status(self, workflow: dict, change: Callable[[dict], dict | None]) -> dict | None:
        """Compare-and-set `change(workflow) -> new status | None`; the object if written.

        `workflow` itself is tried first (handlers hold a copy read moments ago), which
        saves a read; a stale copy costs a conflict and a fresh read.
        """
        return self.kube.update_status("Workflow", wf.namespace(workflow), wf.name(workflow),
                                       change, known=workflow)

    def create_all(self, objects: Iterable[dict]) -> None:
        """Create each object unless it exists (a retried step creates nothing new).

        The Jobs come last, once what their pods use exists (volumes, the
        ConfigMap, the NetworkPolicy that confines the algorithm). Those are
        created together: one after the other, an admission waited for four round
        trips to a busy API server before it could create its Job.
        """
        objects = list(objects)
        together(*(partial(self.kube.create_or_get, obj)
                   for obj in objects if obj["kind"] != "Job"))
        for obj in objects:
            if obj["kind"] == "Job":
                self.kube.create_or_get(obj)

    def job_outcome(self, job: dict) -> jobs.Outcome | None:
        """How the Job ended (None while it runs), from its status and its pod."""
        metadata = job["metadata"]
        pods = self.kube.list("Pod", metadata["namespace"], f"job-name={metadata['name']}")
        return jobs.outcome(job, pods)

    def stage_job(self, workflow: dict, stage: str) -> dict | None:
        return self.kube.get("Job", wf.namespace(workflow), wf.names(workflow).job(stage))


_HELPERS = 4  # with a worker's 4 request threads, within the pool's connections
# (shared.connection.POOL_SIZE: 10 on two cores)
_helper_pool: ThreadPoolExecutor | None = None
_helper_lock = threading.Lock()


def _helpers() -> ThreadPoolExecutor:
    """The process's threads for calls made together (made after gunicorn forks)."""
    global _helper_pool
    with _helper_lock:
        if _helper_pool is None:
            _helper_pool = ThreadPoolExecutor(_HELPERS, thread_name_prefix="c2d-together")
        return _helper_pool


def together(*calls: Callable[[], Any]) -> list[Any]:
    """Make `calls` at once, the first on this thread; their results, in order.

    For calls to the API server that do not depend on each other: one after the
    other, a handler waited for each round trip to a busy server in turn. All of
    them are done before the first failure is raised.
    """
    if not calls:
        return []
    others = [_helpers().submit(call) for call in calls[1:]]
    try:
        first = calls[0]()
    finally:
        for future in others:
            future.exception()
    return [first, *(future.result() for future in others)]


class RetryLater(RuntimeError):
    """A transient failure outside Kubernetes (e.g. a notify URL down): answer 503."""


Handler = Callable[[CloudEvent, Stage], CloudEvent | None]
Router = Callable[[CloudEvent], Handler | None]


def create_app(name: str, route: Router, permissions: Iterable[Permission],
               kubeconfig: str | None = None, config: Settings | None = None) -> Flask:
    """A Flask app for stage `name`, allowed only `permissions` on Kubernetes.

    Settings (default: the environment) and the Kubernetes client (default:
    in-cluster, else KUBECONFIG) are built on first use, so importing is cheap.
    """
    app = Flask(f"c2d.{name}")
    state: dict[str, Stage] = {}
    log = logging.getLogger(f"c2d.{name}")

    def stage() -> Stage:
        if "stage" not in state:
            current = config or settings.get()
            logs.setup(current.log_level, current.log_cfg)
            kube = Kube(connect(kubeconfig), permissions=permissions)
            state["stage"] = Stage(name, current, kube, log)
        return state["stage"]

    def warm_up() -> None:
        """Settings, Kubernetes client and templates before the first event (gunicorn's
        post_worker_init): otherwise the first event in each worker pays for them."""
        try:
            templates.compile_all(stage().settings.templates_dir)
        except Exception as error:  # noqa: BLE001 - the first event meets it again and answers
            log.warning("warm-up failed: %s", error, extra={"function": name})

    app.config["c2d_stage"] = stage
    app.config["c2d_warm_up"] = warm_up

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok", function=name)

    @app.post("/")
    def receive() -> Response | tuple[str, int]:
        started = time.perf_counter()
        try:
            event = events.parse(request.headers, request.get_data())
        except events.MalformedEvent as error:
            log.warning("malformed event: %s", error, extra={"function": name})
            return jsonify(error=str(error)), 400
        context = {"function": name, "event_id": event.get_id(), "event_type": event.get_type(),
                   "workflow": event.get_extension("c2dworkflow") or event.get_subject()}
        handler = route(event)
        if handler is None:
            log.debug("no handler for this event", extra=context)
            return "", 202
        try:
            answer = handler(event, stage())
        except events.MalformedEvent as error:
            log.warning("malformed event: %s", error, extra=context)
            return jsonify(error=str(error)), 400
        except KubeError as error:
            level = logging.WARNING if error.transient else logging.ERROR
            log.log(level, "kubernetes call failed: %s", error, extra=context)
            return jsonify(error=str(error)), 503 if error.transient else 500
        except RetryLater as error:
            log.warning("will be retried: %s", error, extra=context)
            return jsonify(error=str(error)), 503
        except InvalidTransition as error:
            # A late or duplicate event about a workflow that has moved on.
            log.info("ignored: %s", error, extra=context)
            return "", 202
        elapsed_ms = round((time.perf_counter() - started) * 1000, 1)
        if answer is None:
            log.info("handled in %s ms", elapsed_ms, extra=context)
            return "", 202
        log.info("handled in %s ms, replying %s", elapsed_ms, answer.get_type(), extra=context)
        headers, body = events.to_http(answer)
        return Response(body, status=200, headers=headers)

    return app
