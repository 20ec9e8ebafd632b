"""Reading a finished Job and its pod: what every stage needs to decide its outcome."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

# The resync tick leaves a Job that finished moments ago to its own event: the
# tick can answer with one event only, so recording the outcome there would
# swallow the reply that moves the workflow on (seen as 60 s stalls in the
# 200-workflow benchmark). After this long, the event is taken as lost.
SETTLE_SECONDS = 10


@dataclass(frozen=True)
class Outcome:
    """How a stage's Job ended, as far as the API shows it."""

    succeeded: bool
    reason: str  # the Job condition's reason, e.g. "DeadlineExceeded", or "Completed"
    exit_code: int | None  # the container's exit code when a pod terminated
    message: str  # the container's termination message ("" when none)

    @property
    def deadline_exceeded(self) -> bool:
        return self.reason == "DeadlineExceeded"

    def report(self) -> dict[str, Any]:
        """The termination message as JSON when the pod wrote JSON, else {}."""
        try:
            value = json.loads(self.message)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}


def finished(job: dict) -> str | None:
    """'Complete' or 'Failed' once the Job controller says so, else None.

    `FailureTarget` is not final yet (since 1.31 `Failed` follows once pods ended),
    but a Job with `FailureTarget` is already doomed, so it counts as failed.
    """
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return "Complete"
        if condition.get("type") in ("Failed", "FailureTarget"):
            return "Failed"
    return None


def _condition_reason(job: dict) -> str:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("status") == "True" and condition.get("type") in (
                "Failed", "FailureTarget", "Complete"):
            return condition.get("reason") or condition["type"]
    return ""


def terminated(pod: dict) -> dict:
    """The first container's `state.terminated` (or `lastState`), {} when running."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        state = status.get("state", {}).get("terminated") or \
            status.get("lastState", {}).get("terminated")
        if state:
            return state
    return {}


def outcome(job: dict, pods: list[dict]) -> Outcome | None:
    """The Job's outcome from its status and its newest pod; None while running."""
    verdict = finished(job)
    if verdict is None:
        return None
    newest = max(pods, key=lambda p: p["metadata"].get("creationTimestamp", ""), default=None)
    state = terminated(newest) if newest else {}
    return Outcome(succeeded=verdict == "Complete",
                   reason=_condition_reason(job) or ("Completed" if verdict == "Complete" else ""),
                   exit_code=state.get("exitCode"), message=(state.get("message") or "").strip())


def settled(job: dict, now: datetime | None = None, seconds: float = SETTLE_SECONDS) -> bool:
    """Finished at least `seconds` ago, so its own event has had its chance."""
    if finished(job) is None:
        return False
    stamps = [c.get("lastTransitionTime") for c in (job.get("status") or {}).get("conditions")
              or [] if c.get("status") == "True" and c.get("lastTransitionTime")]
    if not stamps:
        return True
    ended = max(datetime.fromisoformat(s.replace("Z", "+00:00")) for s in stamps)
    return (now or datetime.now(UTC)) - ended >= timedelta(seconds=seconds)
