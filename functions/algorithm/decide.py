"""Pure decisions of the algorithm stage.

The stage's result is the `AlgorithmFinished` condition, set once: True
when the algorithm succeeded, False with reason `Failed`, `Timeout`,
`StopRequested` or `Skipped`. Publish starts once it is set (or once
configuration failed).
"""

from __future__ import annotations

from shared import workflow as wf
from shared.jobs import Outcome

outcome_of = wf.algorithm_outcome


def _finish(status: dict, reason: str, message: str = "") -> dict:
    return wf.set_condition(status, wf.ALGORITHM_CONDITION, reason == "Succeeded", reason, message)


def running(status: dict) -> dict | None:
    """30 → 40 once the algorithm Job exists."""
    if wf.code_of(status) != wf.PROVISIONED or status.get("stopReason"):
        return None
    return wf.transition(status, wf.RUNNING)


def completed(status: dict, outcome: Outcome) -> dict | None:
    """The algorithm Job ended: success, failure (41) or timeout (stopReason Timeout)."""
    if wf.code_of(status) != wf.RUNNING or outcome_of(status):
        return None
    if outcome.succeeded:
        return _finish(status, "Succeeded")
    if outcome.deadline_exceeded:
        message = "the algorithm ran past its maximum duration"
        return _finish({**status, "stopReason": "Timeout", "message": message}, "Timeout",
                       message)
    detail = outcome.message[-500:] if outcome.message else outcome.reason
    message = (f"algorithm exited with code {outcome.exit_code}: {detail}"
               if outcome.exit_code is not None else f"algorithm failed: {detail}")
    return _finish(wf.transition(status, wf.ALGORITHM_FAILED, message=message), "Failed",
                   message)


def stopped(status: dict) -> dict | None:
    """Record a stop request once. Queued: finished at once. Configuring: the algorithm
    will be skipped. Provisioned or running: the algorithm is finished as stopped."""
    code = wf.code_of(status)
    if status.get("stopReason") or status.get("phase") in wf.FINAL_PHASES \
            or outcome_of(status) or code >= wf.ALGORITHM_FAILED:
        return None
    if code in (0, wf.QUEUED):
        when = wf.now()
        return wf.transition(status, wf.FINISHED, phase="Stopped", stopReason="StopRequested",
                             message="stopped on request before it started",
                             dateCreated=status.get("dateCreated") or when, dateFinished=when)
    new = {**status, "stopReason": "StopRequested", "message": "stopped on request"}
    if code == wf.CONFIGURING:
        return new
    return _finish(new, "StopRequested" if code == wf.RUNNING else "Skipped",
                   "stopped on request")


def skipped(status: dict) -> dict | None:
    """Configuration succeeded after a stop request: the algorithm never runs."""
    if wf.code_of(status) != wf.PROVISIONED or outcome_of(status) \
            or status.get("stopReason") != "StopRequested":
        return None
    return _finish(status, "Skipped", "stopped on request before the algorithm ran")
