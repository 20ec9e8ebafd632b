"""Pure decisions of the notify stage: which notification is owed, and claiming it.

`status.notifications.<kind>` records delivery (RFC 3339). Before sending, an
instance claims the notification (`<kind>Claim`), so that duplicate events
handled at the same time send one POST; a claim older than CLAIM_SECONDS is
considered abandoned (its sender crashed) and may be taken over.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from shared import workflow as wf

CLAIM_SECONDS = 60


def owed(workflow: dict, kind: str) -> bool:
    """Start once the workflow started; stop once it finished after starting."""
    status = wf.status(workflow)
    if (status.get("notifications") or {}).get(kind):
        return False
    if not status.get("dateStarted"):
        return False
    return kind == "start" or wf.is_final(workflow)


def claimed(status: dict, kind: str, now: datetime) -> dict | None:
    """The status with this instance's claim, or None if delivered or claimed by another."""
    notifications = status.get("notifications") or {}
    if notifications.get(kind):
        return None
    claim = notifications.get(f"{kind}Claim")
    if claim and now - wf.parse_time(claim) < timedelta(seconds=CLAIM_SECONDS):
        return None
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {**status, "notifications": {**notifications, f"{kind}Claim": stamp}}


def delivered(status: dict, kind: str) -> dict | None:
    notifications = dict(status.get("notifications") or {})
    if notifications.get(kind):
        return None
    notifications.pop(f"{kind}Claim", None)
    notifications[kind] = wf.now()
    return {**status, "notifications": notifications}


def released(status: dict, kind: str) -> dict | None:
    """The claim dropped after a failed POST, so the retry may claim again."""
    notifications = dict(status.get("notifications") or {})
    if f"{kind}Claim" not in notifications:
        return None
    notifications.pop(f"{kind}Claim")
    return {**status, "notifications": notifications}
