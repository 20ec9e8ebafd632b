"""Pure decisions of the publish stage: when to publish, and how a workflow ends."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

from shared import workflow as wf
from shared.jobs import Outcome

CONFIGURATION_FAILED = (wf.DATA_FAILED, wf.ALGORITHM_PROVISIONING_FAILED)
# What status.results may take of the Workflow: the API refuses an object over 1.5 MB
# (etcd) or a request over 3 MB, and the rest of the status must still fit.
STATUS_RESULTS_BYTES = 256 * 1024


def ready(status: dict) -> bool:
    """Publish may start: configuration failed, or the algorithm has an outcome."""
    code = wf.code_of(status)
    return code in (*CONFIGURATION_FAILED, wf.ALGORITHM_FAILED) or (
        code in (wf.PROVISIONED, wf.RUNNING) and bool(wf.algorithm_outcome(status)))


def wants_filter(status: dict, filtering: bool) -> bool:
    """The filter runs over outputs, so only when the algorithm actually ran."""
    return filtering and wf.algorithm_outcome(status) in ("succeeded", "failed", "timeout")


def filtering(status: dict) -> dict | None:
    return wf.transition(status, wf.FILTERING) if ready(status) else None


def publishing(status: dict) -> dict | None:
    if not (ready(status) or wf.code_of(status) == wf.FILTERING):
        return None
    return wf.transition(status, wf.PUBLISHING)


def final_phase(status: dict) -> str:
    """Stopped when stopped or timed out; Failed when a stage failed; else Succeeded."""
    if status.get("stopReason"):
        return "Stopped"
    configured = wf.condition(status, "Configured")
    if configured and configured.get("status") == "False":
        return "Failed"
    return "Failed" if wf.algorithm_outcome(status) == "failed" else "Succeeded"


def published(status: dict, outcome: Outcome, results: list[dict], problem: str | None,
              manifest: str | None = None) -> dict | None:
    """70 with the final phase, or 62 when any upload failed; results recorded either way."""
    if wf.code_of(status) != wf.PUBLISHING:
        return None
    when = wf.now()
    listed = recorded(results, manifest)
    if outcome.succeeded and problem is None:
        new = wf.transition(status, wf.FINISHED, phase=final_phase(status), dateFinished=when,
                            **listed)
        return wf.set_condition(new, "Published", True, "Published", _partial(listed))
    reason = problem or outcome.report().get("error") or outcome.message[-500:] \
        or outcome.reason
    message = f"results upload failed: {reason}"
    new = wf.transition(status, wf.UPLOAD_FAILED, phase="Failed", dateFinished=when,
                        message=message, **listed)
    return wf.set_condition(new, "Published", False, "UploadFailed", message)


def recorded(results: list[dict], manifest: str | None) -> dict:
    """`results`, `resultsCount` and `resultsManifest` for the status.

    An algorithm may write any number of files under names of any length, and
    that must not keep its workflow from ending: the logs, then the outputs in
    order, are listed while they fit in STATUS_RESULTS_BYTES. The manifest, which
    the publish pod wrote to the output storage, lists them all.
    """
    logs = [entry for entry in results if entry.get("type") != "output"]
    outputs = [entry for entry in results if entry.get("type") == "output"]
    listed, size = [], 0
    for entry in logs + outputs:
        size += len(json.dumps(entry)) + 1
        if size > STATUS_RESULTS_BYTES:
            break
        listed.append(entry)
    listed.sort(key=lambda entry: entry.get("index", 0))
    return {"results": listed, "resultsCount": len(results), "resultsManifest": manifest}


def _partial(listed: dict) -> str:
    """What the Published condition says when the status lists only some results."""
    unlisted, where = wf.unlisted_results(listed)
    if not unlisted:
        return ""
    count = listed["resultsCount"]
    return f"{count} results; the status lists {count - unlisted}, and all are in {where}"


def expired(workflow: dict, retention_hours: int, now: datetime) -> bool:
    """A finished workflow kept longer than its retention (0 keeps it forever)."""
    finished_at = wf.status(workflow).get("dateFinished")
    if not retention_hours or not wf.is_final(workflow) or not finished_at:
        return False
    return now - wf.parse_time(finished_at) > timedelta(hours=retention_hours)
