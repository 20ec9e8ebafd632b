"""algorithm: the algorithm Job, its outcome, stop requests and timeouts.

Events: `configure.succeeded`, the algorithm Job's updates, Workflow updates
(stop requests) and the resync tick. Replies `algorithm.finished` with the
outcome, which publish turns into published logs and results.
"""

from __future__ import annotations

from cloudevents.core.v1.event import CloudEvent
from flask import Flask

from functions.algorithm import decide
from shared import events, jobs, manifests
from shared import workflow as wf
from shared.app import Handler, Stage, create_app
from shared.jobs import Outcome
from shared.settings import Settings

PERMISSIONS = {
    ("workflows", "get"), ("workflows", "list"), ("workflows/status", "update"),
    ("jobs", "create"), ("jobs", "get"), ("jobs", "delete"),
    ("networkpolicies", "create"), ("networkpolicies", "get"),
    ("pods", "list"),
}


def on_configure_succeeded(event: CloudEvent, stage: Stage) -> CloudEvent | None:
    workflow = stage.referenced_workflow(event)
    return run(workflow, stage) if workflow else None


def on_job_updated(event: CloudEvent, stage: Stage) -> CloudEvent | None:
    found = stage.job_event(event)
    return record_outcome(found[1], found[0], stage) if found else None


def on_workflow_updated(event: CloudEvent, stage: Stage) -> CloudEvent | None:
    updated = events.resource_event(event)
    if not wf.stop_requested(updated.object):
        return None
    workflow = stage.workflow(updated.namespace, updated.name)
    return stop(workflow, stage) if workflow else None


def on_tick(event: CloudEvent, stage: Stage) -> CloudEvent | None:
    """Reconcile: provisioned workflows without a Job, finished Jobs, unseen stop requests."""
    for workflow in stage.workflows():
        if wf.is_final(workflow):
            continue
        if wf.stop_requested(workflow):
            stop(workflow, stage)
        elif wf.status_code(workflow) == wf.PROVISIONED:
            run(workflow, stage)
        elif wf.status_code(workflow) == wf.RUNNING:
            job = stage.stage_job(workflow, "algorithm")
            if job is None:
                lost(workflow, stage)
            elif jobs.settled(job):
                record_outcome(workflow, job, stage)
    return None


def run(workflow: dict, stage: Stage) -> CloudEvent | None:
    """Create the NetworkPolicy and the algorithm Job, then move to 40."""
    if wf.status(workflow).get("stopReason"):
        written = stage.update_status(workflow, lambda w: decide.skipped(wf.status(w)))
        return finished_event(written, stage)
    if wf.status_code(workflow) != wf.PROVISIONED:
        return None
    stage.create_all(manifests.for_stage(workflow, stage.settings, "algorithm"))
    if stage.update_status(workflow, lambda w: decide.running(wf.status(w))) is None:
        current = stage.workflow(wf.namespace(workflow), wf.name(workflow))
        if current and wf.stop_requested(current):  # the stop won the race: end the Job
            return stop(current, stage)
    return None


def record_outcome(workflow: dict, job: dict, stage: Stage) -> CloudEvent | None:
    outcome = stage.job_outcome(job)
    if outcome is None:
        return None
    written = stage.update_status(workflow, lambda w: decide.completed(wf.status(w), outcome))
    return finished_event(written, stage)


def stop(workflow: dict, stage: Stage) -> CloudEvent | None:
    """Record the stop; a running algorithm Job is deleted (its pod is killed).

    The delete runs on every call until publishing starts, so a retried or
    racing event (a Job created just before the stop was recorded) still ends
    the pod; deleting twice is harmless.
    """
    written = stage.update_status(workflow, lambda w: decide.stopped(wf.status(w)))
    current = written or workflow
    if wf.status_code(current) in (wf.PROVISIONED, wf.RUNNING) \
            and wf.status(current).get("stopReason") == "StopRequested":
        stage.kube.delete("Job", wf.namespace(current), wf.names(current).job("algorithm"),
                          propagation="Background")
    if written is None:
        return None
    if wf.is_final(written):  # stopped while queued: nothing ran, nothing to publish
        return stage.reply(events.WORKFLOW_FINISHED, written)
    return finished_event(written, stage)


def lost(workflow: dict, stage: Stage) -> None:
    """At 40 with no Job (deleted by hand?): fail rather than wait forever."""
    gone = Outcome(succeeded=False, reason="JobDeleted", exit_code=None,
                   message="the algorithm Job disappeared before it finished")
    written = stage.update_status(workflow, lambda w: decide.completed(wf.status(w), gone))
    if written is not None:
        stage.log.warning("algorithm Job missing", extra={"workflow": wf.key(written)})


def finished_event(written: dict | None, stage: Stage) -> CloudEvent | None:
    """`algorithm.finished` with the outcome, once the outcome is recorded."""
    if written is None:
        return None
    outcome = decide.outcome_of(wf.status(written))
    return stage.reply(events.ALGORITHM_FINISHED, written, outcome=outcome) if outcome else None


def route(event: CloudEvent) -> Handler | None:
    kind, event_type = event.get_extension("kind"), event.get_type()
    if event_type == events.CONFIGURE_SUCCEEDED:
        return on_configure_succeeded
    if event_type == events.RESOURCE_UPDATE and kind == "Job" \
            and (event.get_subject() or "").endswith("-algorithm"):
        return on_job_updated
    if event_type == events.RESOURCE_UPDATE and kind == "Workflow":
        return on_workflow_updated
    if event_type == events.PING:
        return on_tick
    return None


def build(kubeconfig: str | None = None, config: Settings | None = None) -> Flask:
    """The algorithm function's app; tests pass their own kubeconfig and settings."""
    return create_app("algorithm", route, PERMISSIONS, kubeconfig=kubeconfig, config=config)


app = build()
