"""configure: admission, volumes and the configure Job; its outcome (30/31/32).

Events: a Workflow `add`, `workflow.finished` (a slot is free), the configure
Job's updates, and the resync tick. Serves GET /environment.
"""

from __future__ import annotations

from functools import partial

from cloudevents.core.v1.event import CloudEvent
from flask import Flask, Response, jsonify

from functions.configure import admission, decide, environment
from shared import events, jobs, manifests
from shared import workflow as wf
from shared.app import Handler, Stage, create_app, together
from shared.kube import KubeError
from shared.settings import Settings

PERMISSIONS = {
    ("workflows", "get"), ("workflows", "list"), ("workflows/status", "update"),
    ("configmaps", "get"), ("configmaps", "create"), ("configmaps", "update"),
    ("secrets", "create"), ("secrets", "get"),
    ("persistentvolumeclaims", "create"), ("persistentvolumeclaims", "get"),
    ("jobs", "create"), ("jobs", "get"),
    ("pods", "list"),
}


def on_workflow_added(event: CloudEvent, stage: Stage) -> CloudEvent | None:
    """Admit or queue the workflow, read fresh."""
    added = events.resource_event(event)
    workflow = stage.workflow(added.namespace, added.name)
    if workflow is None:
        return None
    return admit(workflow, stage, slots_of(stage, added.namespace))


def on_workflow_finished(event: CloudEvent, stage: Stage) -> CloudEvent | None:
    """A slot is free: release it and start the workflow it went to."""
    ref = events.workflow_ref(event)
    slots = slots_of(stage, ref.namespace)
    return start_given(stage, ref.namespace, slots.release([ref.name], stage.settings.max_jobs),
                       slots)


def on_job_updated(event: CloudEvent, stage: Stage) -> CloudEvent | None:
    found = stage.job_event(event)
    return record_outcome(found[1], found[0], stage) if found else None


def on_tick(event: CloudEvent, stage: Stage) -> CloudEvent | None:
    """Reconcile from the cluster: lost adds, finished Jobs, stale slots, the queue."""
    namespace = stage.settings.namespace
    slots = slots_of(stage, namespace)
    # The slots first: a workflow admitted or queued after the listing would look gone.
    before = slots.read()
    workflows = stage.workflows()
    for workflow in workflows:
        if not wf.status_code(workflow):
            admit(workflow, stage, slots)
        elif wf.status_code(workflow) == wf.CONFIGURING:
            job = stage.stage_job(workflow, "configure")
            if job is not None and jobs.settled(job):
                record_outcome(workflow, job, stage)
    live = {wf.name(w) for w in workflows if not wf.is_final(w)}
    waiting = [w for w in workflows if waits(w)]
    waiting_names = {wf.name(w) for w in waiting}
    held = admission.admitted(before)
    given = slots.reconcile(
        [name for name in held if name not in live],
        [name for name in admission.queued(before) if name not in waiting_names],
        # Those the listing shows at 0, admit() above has just admitted, queued or failed.
        [wf.name(w) for w in waiting if wf.status_code(w) == wf.QUEUED],
        stage.settings.max_jobs)
    # Queued and holding a slot: its starter may have died. A second start creates nothing.
    stalled = [wf.name(w) for w in workflows
               if wf.status_code(w) == wf.QUEUED and wf.name(w) in held]
    reply = start_given(stage, namespace, given + stalled, slots)
    slots.publish()  # an announcement from before a change of settings
    return reply


def waits(workflow: dict) -> bool:
    """Whether `workflow` is waiting for a slot: not started, not stopped."""
    return wf.status_code(workflow) in (0, wf.QUEUED) and not wf.stop_requested(workflow)


def admit(workflow: dict, stage: Stage, slots: admission.Slots) -> CloudEvent | None:
    """A new workflow: fail it when invalid, start it when a slot is free, else queue it."""
    if wf.status_code(workflow):
        return None
    try:
        wf.validate(workflow)
    except wf.InvalidWorkflow as error:
        problem = error
        stage.log.warning("invalid workflow: %s", problem, extra={"workflow": wf.key(workflow)})
        stage.update_status(workflow, lambda w: decide.invalid(wf.status(w), problem))
        return None
    # A stop requested already: it is written Queued, without a slot or a place in the
    # queue, and the algorithm function ends it.
    if not wf.stop_requested(workflow) and slots.take(wf.name(workflow), stage.settings.max_jobs):
        return start(workflow, stage)
    # In the queue: whoever frees a slot gives it to the queue's head and starts it,
    # even before this write (start() accepts a status 0, and this one then writes nothing).
    stage.update_status(workflow, lambda w: decide.queued(wf.status(w)))
    return None


def start_given(stage: Stage, namespace: str, names: list[str],
                slots: admission.Slots) -> CloudEvent | None:
    """Start the workflows just given a slot; reply for the first started.

    One that will not start (deleted, final, stopped while waiting) hands its slot
    on at once, and so on down the queue; one started already keeps it.
    """
    first = None
    while names:
        found = together(*(partial(stage.workflow, namespace, name) for name in names))
        unable = []
        for name, workflow in zip(names, found, strict=True):
            if workflow is not None and waits(workflow):
                first = start(workflow, stage) or first
            elif workflow is None or wf.is_final(workflow) \
                    or wf.status_code(workflow) <= wf.QUEUED:  # a stop came while it waited
                unable.append(name)
        names = slots.release(unable, stage.settings.max_jobs) if unable else []
    return first


def start(workflow: dict, stage: Stage) -> CloudEvent | None:
    """Create the ConfigMap, Secret, volumes and configure Job, then move to 20."""
    try:
        stage.create_all(manifests.for_stage(workflow, stage.settings, "configure"))
    except KubeError as error:
        if error.transient:
            raise
        message = f"cannot create the workflow's objects: {error}"
        written = stage.update_status(
            workflow, lambda w: decide.volume_failed(wf.status(w), message))
        return stage.reply(events.WORKFLOW_FINISHED, written) if written else None
    written = stage.update_status(workflow, lambda w: decide.started(wf.status(w)))
    return stage.reply(events.WORKFLOW_STARTED, written) if written else None


def record_outcome(workflow: dict, job: dict, stage: Stage) -> CloudEvent | None:
    """The configure Job ended: 30 and `configure.succeeded`, or 31/32 and `configure.failed`."""
    outcome = stage.job_outcome(job)
    if outcome is None:
        return None
    written = stage.update_status(workflow, lambda w: decide.configured(wf.status(w), outcome))
    if written is None:
        return None
    if outcome.succeeded:
        return stage.reply(events.CONFIGURE_SUCCEEDED, written)
    return stage.reply(events.CONFIGURE_FAILED, written, statusCode=wf.status_code(written))


def slots_of(stage: Stage, namespace: str) -> admission.Slots:
    """The admission slots of `namespace`; each write keeps the announcement with them."""
    return admission.Slots(stage.kube, namespace,
                           lambda count: environment.announcement(stage.settings, count))


def current_environment(stage: Stage) -> dict:
    """The announcement, counting the slots as they are now."""
    slots = slots_of(stage, stage.settings.namespace)
    return environment.announcement(stage.settings, len(slots.current()))


def route(event: CloudEvent) -> Handler | None:
    kind, event_type = event.get_extension("kind"), event.get_type()
    if event_type == events.RESOURCE_ADD and kind == "Workflow":
        return on_workflow_added
    if event_type == events.RESOURCE_UPDATE and kind == "Job" \
            and (event.get_subject() or "").endswith("-configure"):
        return on_job_updated
    if event_type == events.WORKFLOW_FINISHED:
        return on_workflow_finished
    if event_type == events.PING:
        return on_tick
    return None


def build(kubeconfig: str | None = None, config: Settings | None = None) -> Flask:
    """The configure function's app; tests pass their own kubeconfig and settings."""
    flask_app = create_app("configure", route, PERMISSIONS, kubeconfig=kubeconfig, config=config)

    @flask_app.get("/environment")
    def get_environment() -> Response:
        return jsonify(current_environment(flask_app.config["c2d_stage"]()))

    return flask_app


app = build()
