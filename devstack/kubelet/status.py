"""Small builders for Kubernetes status objects (timestamps, conditions, container states)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

MAX_MESSAGE_BYTES = 4096  # terminationMessagePath is cut here, as on a node
FALLBACK_LOG_LINES = 80  # FallbackToLogsOnError: the log's last lines ...
FALLBACK_LOG_BYTES = 2048  # ... up to this many bytes


def now() -> str:
    """The current time as the API writes it (RFC 3339, seconds, UTC)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def find_condition(conditions: list[dict], ctype: str) -> dict | None:
    return next((c for c in conditions if c.get("type") == ctype), None)


def set_condition(
    conditions: list[dict],
    ctype: str,
    status: bool,
    reason: str | None = None,
    message: str | None = None,
    probe_time: bool = False,
) -> list[dict]:
    """``conditions`` with ``ctype`` set; ``lastTransitionTime`` moves only on a change."""
    value = "True" if status else "False"
    old = find_condition(conditions, ctype)
    cond: dict = {"type": ctype, "status": value}
    stamp = now()
    if probe_time:
        cond["lastProbeTime"] = stamp
    cond["lastTransitionTime"] = (
        old["lastTransitionTime"]
        if old and old.get("status") == value and old.get("lastTransitionTime")
        else stamp
    )
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    if old is None:
        return [*conditions, cond]
    return [cond if c is old else c for c in conditions]


def is_true(conditions: list[dict] | None, ctype: str) -> bool:
    cond = find_condition(conditions or [], ctype)
    return bool(cond and cond.get("status") == "True")


def termination_message(message_file: Path, log_file: Path, policy: str, exit_code: int) -> str:
    """The message a node reports for a terminated container."""
    try:
        with open(message_file, "rb") as f:
            data = f.read(MAX_MESSAGE_BYTES)
    except OSError:
        data = b""
    if not data and policy == "FallbackToLogsOnError" and exit_code != 0:
        data = tail(log_file, FALLBACK_LOG_LINES, FALLBACK_LOG_BYTES)
    return data.decode(errors="replace")


def tail(path: Path, lines: int, max_bytes: int) -> bytes:
    """The last ``lines`` lines of ``path``, at most ``max_bytes`` bytes."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return b""
    return b"\n".join(data.split(b"\n")[-lines - 1 :]).lstrip(b"\n")[-max_bytes:]


def waiting(reason: str, message: str | None = None) -> dict:
    state = {"reason": reason}
    if message:
        state["message"] = message
    return {"waiting": state}


def running(started_at: str) -> dict:
    return {"running": {"startedAt": started_at}}


def terminated(
    exit_code: int, reason: str, started_at: str | None, message: str = "", container_id: str = ""
) -> dict:
    state: dict = {"exitCode": exit_code, "reason": reason, "finishedAt": now()}
    if started_at:
        state["startedAt"] = started_at
    if message:
        state["message"] = message
    if container_id:
        state["containerID"] = container_id
    return {"terminated": state}
