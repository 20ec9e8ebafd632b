"""notify: signed start and stop notifications to NOTIFY_START_URL / NOTIFY_STOP_URL.

The payload and signature are the original engine's (shared.signing). Delivery
is recorded in the status, so a duplicate event sends nothing; a failed POST
answers 503 and the Broker retries.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import requests
from cloudevents.core.v1.event import CloudEvent
from flask import Flask, request

from functions.notify import decide
from shared import events, signing
from shared import workflow as wf
from shared.app import Handler, RetryLater, Stage, create_app
from shared.settings import Settings

PERMISSIONS = {("workflows", "get"), ("workflows", "list"), ("workflows/status", "update")}
KINDS = {events.WORKFLOW_STARTED: "start", events.WORKFLOW_FINISHED: "stop"}


def on_workflow_event(event: CloudEvent, stage: Stage) -> None:
    kind = KINDS[event.get_type()]
    if not any(url_for(owed, stage) for owed in sent_with(kind)):
        return  # no URL to send to: the workflow need not be read
    workflow = stage.referenced_workflow(event)
    if workflow is not None:
        notify(workflow, kind, stage)


def on_tick(event: CloudEvent, stage: Stage) -> None:
    """Send what is owed and was never delivered (a lost event, a failed POST)."""
    failures = []
    for workflow in stage.workflows():
        try:
            notify(workflow, "stop" if wf.is_final(workflow) else "start", stage)
        except RetryLater as error:
            failures.append(str(error))
    if failures:
        raise RetryLater(f"{len(failures)} notification(s) failed; first: {failures[0]}")


def url_for(kind: str, stage: Stage) -> str | None:
    return stage.settings.notify_start_url if kind == "start" else stage.settings.notify_stop_url


def sent_with(kind: str) -> tuple[str, ...]:
    """What a `kind` event may send: a stop sends the start first when it is still owed."""
    return ("start", "stop") if kind == "stop" else ("start",)


def notify(workflow: dict, kind: str, stage: Stage) -> None:
    """Send `kind` once if owed; a stop is never sent before its start."""
    if kind == "stop" and url_for("start", stage) and decide.owed(workflow, "start"):
        notify(workflow, "start", stage)
        workflow = stage.workflow(wf.namespace(workflow), wf.name(workflow)) or workflow
    url = url_for(kind, stage)
    if url is None or not decide.owed(workflow, kind):
        return
    now = datetime.now(UTC)
    claimed = stage.update_status(workflow, lambda w: decide.claimed(wf.status(w), kind, now))
    if claimed is None:
        return
    payload = signing.notification_payload(
        job_id=wf.name(workflow), secret=wf.secret(workflow), dids=wf.input_dids(workflow),
        algo_did=wf.algorithm_did(workflow), private_key=stage.settings.operator_private_key)
    headers = {"Idempotency-Key": f"{workflow['metadata'].get('uid', wf.name(workflow))}-{kind}"}
    extra = {"workflow": wf.key(workflow)}
    try:
        response = requests.post(url, json=payload, headers=headers,
                                 timeout=stage.settings.notify_timeout_seconds)
        failure = None if response.ok else f"HTTP {response.status_code}"
    except requests.RequestException as error:
        failure = type(error).__name__
    if failure:
        stage.update_status(claimed, lambda w: decide.released(wf.status(w), kind))
        stage.log.warning("%s notification failed: %s", kind, failure, extra=extra)
        raise RetryLater(f"{kind} notification to {url} failed: {failure}")
    stage.update_status(claimed, lambda w: decide.delivered(wf.status(w), kind))
    stage.log.info("%s notification delivered", kind, extra=extra)


def route(event: CloudEvent) -> Handler | None:
    if event.get_type() in KINDS:
        return on_workflow_event
    if event.get_type() == events.PING:
        return on_tick
    return None


def build(kubeconfig: str | None = None, config: Settings | None = None) -> Flask:
    """The notify function's app; also the Triggers' dead-letter sink (POST /dead-letter)."""
    flask_app = create_app("notify", route, PERMISSIONS, kubeconfig=kubeconfig, config=config)

    @flask_app.post("/dead-letter")
    def dead_letter() -> tuple[str, int]:
        """Record an event the Broker gave up on, so an operator can see what was lost."""
        try:
            event = events.parse(request.headers, request.get_data())
        except events.MalformedEvent as error:
            flask_app.logger.warning("malformed dead letter: %s", error)
            return "", 202
        logging.getLogger("c2d.notify").error(
            "dead letter: %s to %s failed with %s", event.get_type(),
            event.get_extension("knativeerrordest"), event.get_extension("knativeerrorcode"),
            extra={"function": "notify", "event_id": event.get_id(),
                   "event_type": event.get_type(),
                   "workflow": event.get_extension("c2dworkflow") or event.get_subject()})
        return "", 202

    return flask_app


app = build()
