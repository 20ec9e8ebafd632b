"""Pure decisions of the configure stage: given a status (and an outcome), the next status.

Each returns the new status, or None when the workflow has already moved past
this step (a duplicate or late event), which makes every step idempotent.
"""

from __future__ import annotations

from shared import workflow as wf
from shared.jobs import Outcome


def queued(status: dict) -> dict | None:
    if wf.code_of(status):
        return None
    return wf.transition(status, wf.QUEUED, dateCreated=status.get("dateCreated") or wf.now())


def invalid(status: dict, error: wf.InvalidWorkflow) -> dict | None:
    """An invalid workflow fails at once with the problems in `message`; nothing is created."""
    if wf.code_of(status):
        return None
    when = wf.now()
    new = wf.transition(status, wf.FINISHED, phase="Failed", dateCreated=when,
                        dateFinished=when, message=f"invalid workflow: {error}")
    return wf.set_condition(new, "Valid", False, "InvalidWorkflow", str(error))


def started(status: dict) -> dict | None:
    if wf.code_of(status) not in (0, wf.QUEUED):
        return None
    when = wf.now()
    return wf.transition(status, wf.CONFIGURING, dateStarted=when,
                         dateCreated=status.get("dateCreated") or when)


def volume_failed(status: dict, message: str) -> dict | None:
    if wf.code_of(status) not in (0, wf.QUEUED):
        return None
    return wf.transition(status, wf.VOLUME_FAILED, phase="Failed", dateFinished=wf.now(),
                         message=message)


def describe_failure(outcome: Outcome) -> str:
    """A one-line reason from the pod's report, its exit code or the Job's reason."""
    report = outcome.report()
    if report.get("error"):
        where = report.get("input") or report.get("file") or report.get("stage")
        return f"{where}: {report['error']}" if where else str(report["error"])
    if outcome.deadline_exceeded:
        return "the Job ran past its deadline"
    detail = outcome.message[-500:] if outcome.message else outcome.reason
    return f"exit code {outcome.exit_code}: {detail}" if outcome.exit_code is not None else detail


def configured(status: dict, outcome: Outcome) -> dict | None:
    """30 on success; 31 or 32 as the pod's exit code says (31 for any other failure)."""
    if wf.code_of(status) != wf.CONFIGURING:
        return None
    if outcome.succeeded:
        return wf.set_condition(wf.transition(status, wf.PROVISIONED), "Configured", True,
                                "Provisioned")
    code = outcome.exit_code if outcome.exit_code in (wf.DATA_FAILED,
                                                      wf.ALGORITHM_PROVISIONING_FAILED) \
        else wf.DATA_FAILED
    message = describe_failure(outcome)
    new = wf.transition(status, code, message=f"{wf.STATUS_TEXT[code]}: {message}")
    return wf.set_condition(new, "Configured", False, outcome.reason or "Failed", message)
