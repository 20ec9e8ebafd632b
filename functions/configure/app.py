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
    """Admit or queue the workflow, read fresh, deciding on the slots read with it."""
    added = events.resource_event(event)
    slots = slots_of(stage, added.namespace)
    workflow, _ = together(partial(stage.workflow, added.namespace, added.name), slots.read)
    if workflow is None:
        return None
    return admit(workflow, stage, slots)


def on_workflow_finished(event: CloudEvent, stage: Stage) -> CloudEvent | None:
    """A slot is free: release it and start the oldest queued workflow."""
    ref = events.workflow_ref(event)
    slots = slots_of(stage, ref.namespace)
    slots.release([ref.name])
    return admit_queued(stage, ref.namespace, slots)


def on_job_updated(event: CloudEvent, stage: Stage) -> CloudEvent | None:
    found = stage.job_event(event)
    return record_outcome(found[1], found[0], stage) if found else None


def on_tick(event: CloudEvent, stage: Stage) -> CloudEvent | None:
    """Reconcile from the cluster: lost adds, finished Jobs, stale slots, the queue."""
    namespace = stage.settings.namespace
    slots = slots_of(stage, namespace)
    # The slots first: a workflow admitted after the listing would look gone to it.
    held = slots.current()
    workflows = stage.workflows()
    for workflow in workflows:
        if not wf.status_code(workflow):
            admit(workflow, stage, slots)
        elif wf.status_code(workflow) == wf.CONFIGURING:
            job = stage.stage_job(workflow, "configure")
            if job is not None and jobs.settled(job):
                record_outcome(workflow, job, stage)
    live = {wf.name(w) for w in workflows if not wf.is_final(w)}
    slots.release(name for name in held if name not in live)
    reply = admit_queued(stage, namespace, slots, resume_held=True)
    slots.publish()  # an announcement from before a change of settings
    return reply


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
    if not wf.stop_requested(workflow) and slots.take(wf.name(workflow), stage.settings.max_jobs):
        return start(workflow, stage)
    if stage.update_status(workflow, lambda w: decide.queued(wf.status(w))) is None:
        return None
    # A slot freed between our look and the write above was released by someone who
    # listed the queue before this workflow joined it: look once more, after the write.
    if len(slots.current()) < stage.settings.max_jobs:
        return admit_queued(stage, wf.namespace(workflow), slots)
    return None


def admit_queued(stage: Stage, namespace: str, slots: admission.Slots,
                 resume_held: bool = False) -> CloudEvent | None:
    """Start queued workflows, oldest first, while slots are free; reply for the first.

    A queued workflow that already holds a slot is being started by whoever gave
    it the slot, in another thread or instance: starting it here as well only
    repeated that work, a dozen refused calls each time (in a batch of 100, 70
    such starts). Should that start have failed, the tick resumes it
    (`resume_held`), a resync period later at most.
    """
    first = None
    for workflow in stage.workflows(wf.QUEUED_PHASE):
        if wf.namespace(workflow) != namespace or wf.status_code(workflow) != wf.QUEUED \
                or wf.stop_requested(workflow):
            continue
        slot = slots.take(wf.name(workflow), stage.settings.max_jobs)
        if slot is admission.Slot.FULL:
            break
        if slot is admission.Slot.HELD and not resume_held:
            continue
        first = start(workflow, stage) or first
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
