"""publish: filter Job, publish Job, results, final status and cleanup.

Events: `algorithm.finished`, `configure.failed`, the filter and publish Jobs'
updates, and the resync tick (which also removes workflows and stored
results past their retention). Replies `workflow.finished`.
"""

from __future__ import annotations

from datetime import UTC, datetime

from cloudevents.core.v1.event import CloudEvent
from flask import Flask

from functions.publish import decide
from shared import events, jobs, manifests, storage
from shared import workflow as wf
from shared.app import Handler, Stage, create_app
from shared.kube import KubeError
from shared.settings import Settings

PERMISSIONS = {
    ("workflows", "get"), ("workflows", "list"), ("workflows", "delete"),
    ("workflows/status", "update"),
    ("jobs", "create"), ("jobs", "get"), ("jobs", "delete"),
    ("pods", "list"),
    ("configmaps", "delete"), ("secrets", "delete"), ("persistentvolumeclaims", "delete"),
    ("networkpolicies", "delete"),
}


def on_stage_done(event: CloudEvent, stage: Stage) -> CloudEvent | None:
    """`algorithm.finished` or `configure.failed`: logs and results get published."""
    workflow = stage.referenced_workflow(event)
    return begin(workflow, stage) if workflow else None


def on_job_updated(event: CloudEvent, stage: Stage) -> CloudEvent | None:
    found = stage.job_event(event)
    if found is None:
        return None
    job, workflow, job_stage = found
    return after_filter(workflow, job, stage) if job_stage == "filter" \
        else finish(workflow, job, stage)


def on_tick(event: CloudEvent, stage: Stage) -> CloudEvent | None:
    """Reconcile: publish what is ready, recreate or read lost Jobs, apply retention."""
    now = datetime.now(UTC)
    for workflow in stage.workflows():
        status = wf.status(workflow)
        if wf.is_final(workflow):
            clean_up(workflow, stage)
            if decide.expired(workflow, stage.settings.workflow_retention_hours, now):
                stage.kube.delete("Workflow", wf.namespace(workflow), wf.name(workflow))
        elif decide.ready(status):
            begin(workflow, stage)
        elif wf.code_of(status) in (wf.FILTERING, wf.PUBLISHING):
            resume(workflow, stage)
    storage.delete_expired(stage.settings, now)
    return None


def begin(workflow: dict, stage: Stage) -> CloudEvent | None:
    """Start the filter Job when configured and useful, else the publish Job."""
    status = wf.status(workflow)
    if not decide.ready(status):
        return None
    if decide.wants_filter(status, bool(stage.settings.filtering_container)):
        stage.create_all(manifests.for_stage(workflow, stage.settings, "filter"))
        stage.update_status(workflow, lambda w: decide.filtering(wf.status(w)))
        return None
    return start_publish(workflow, stage)


def start_publish(workflow: dict, stage: Stage) -> None:
    stage.create_all(manifests.for_stage(workflow, stage.settings, "publish"))
    stage.update_status(workflow, lambda w: decide.publishing(wf.status(w)))
    return None


def resume(workflow: dict, stage: Stage) -> CloudEvent | None:
    """At 50/60: recreate a missing Job (create_or_get), or read a finished one."""
    job_stage = "filter" if wf.status_code(workflow) == wf.FILTERING else "publish"
    job = stage.stage_job(workflow, job_stage)
    if job is None:
        stage.create_all(manifests.for_stage(workflow, stage.settings, job_stage))
        return None
    if not jobs.settled(job):
        return None  # running, or just finished: its own event carries it on
    return after_filter(workflow, job, stage) if job_stage == "filter" \
        else finish(workflow, job, stage)


def after_filter(workflow: dict, job: dict, stage: Stage) -> CloudEvent | None:
    """Whatever the filter did (its log says), the results are published next."""
    if wf.status_code(workflow) != wf.FILTERING or stage.job_outcome(job) is None:
        return None
    return start_publish(workflow, stage)


def finish(workflow: dict, job: dict, stage: Stage) -> CloudEvent | None:
    """The publish Job ended: clean up, record results and 70 or 62, `workflow.finished`.

    What the run created goes first, but the publish Job itself: should the status
    write fail, a retry still reads the outcome from that Job. The write then
    records the clean-up too (`CleanedUp`), one write where there were two.
    """
    outcome = stage.job_outcome(job)
    if outcome is None or wf.status_code(workflow) != wf.PUBLISHING:
        return None
    results, problem = [], None
    try:
        results = storage.read_results(outcome.message, stage.settings)
    except storage.StorageError as error:
        problem = str(error)
    manifest = storage.reported_manifest(outcome.message)
    cleaning = not stage.settings.debug_no_cleanup
    if cleaning:
        delete_run(workflow, stage, keep="publish")

    def published(current: dict) -> dict | None:
        new = decide.published(wf.status(current), outcome, results, problem, manifest)
        return cleaned(new) if new is not None and cleaning else new

    written = stage.update_status(workflow, published)
    if written is None:
        return None
    if cleaning:
        try:  # once the outcome is recorded; if this fails, the Workflow's deletion does it
            stage.kube.delete("Job", wf.namespace(written), wf.names(written).job("publish"))
        except KubeError as error:
            stage.log.warning("cleanup failed: %s", error, extra={"workflow": wf.key(written)})
    return stage.reply(events.WORKFLOW_FINISHED, written, statusCode=wf.status_code(written),
                       phase=wf.status(written).get("phase"))


def clean_up(workflow: dict, stage: Stage) -> None:
    """Delete what a final workflow's run left, once (condition `CleanedUp`), unless
    DEBUG_NO_CLEANUP. The Workflow itself stays for its retention."""
    if stage.settings.debug_no_cleanup or wf.condition(wf.status(workflow), "CleanedUp"):
        return
    delete_run(workflow, stage)
    stage.update_status(workflow, lambda w: None if wf.condition(wf.status(w), "CleanedUp")
                        else cleaned(wf.status(w)))


def delete_run(workflow: dict, stage: Stage, keep: str | None = None) -> None:
    """Delete the Jobs (but `keep`'s), volumes, ConfigMap, Secret and NetworkPolicy."""
    namespace, names = wf.namespace(workflow), wf.names(workflow)
    for job_stage in wf.STAGES:
        if job_stage != keep:
            stage.kube.delete("Job", namespace, names.job(job_stage))
    for kind, name in (("PersistentVolumeClaim", names.data_volume),
                       ("PersistentVolumeClaim", names.adminlogs_volume),
                       ("ConfigMap", names.configmap), ("Secret", names.secret),
                       ("NetworkPolicy", names.network_policy)):
        stage.kube.delete(kind, namespace, name)


def cleaned(status: dict) -> dict:
    return wf.set_condition(status, "CleanedUp", True, "Deleted")


def route(event: CloudEvent) -> Handler | None:
    kind, event_type = event.get_extension("kind"), event.get_type()
    if event_type in (events.ALGORITHM_FINISHED, events.CONFIGURE_FAILED):
        return on_stage_done
    if event_type == events.RESOURCE_UPDATE and kind == "Job" \
            and (event.get_subject() or "").endswith(("-filter", "-publish")):
        return on_job_updated
    if event_type == events.PING:
        return on_tick
    return None


def build(kubeconfig: str | None = None, config: Settings | None = None) -> Flask:
    """The publish function's app; tests pass their own kubeconfig and settings."""
    return create_app("publish", route, PERMISSIONS, kubeconfig=kubeconfig, config=config)


app = build()
