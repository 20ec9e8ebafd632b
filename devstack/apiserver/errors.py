"""API errors, always answered as a ``Status`` object with ``reason`` and ``code``."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """An error the server answers with a ``Status`` body."""

    def __init__(self, code: int, reason: str, message: str,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": self.message, "reason": self.reason, "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def qualified(kind_plural: str, group: str) -> str:
    """``jobs.batch`` / ``pods``: how real servers name a resource in messages."""
    return f"{kind_plural}.{group}" if group else kind_plural


def not_found(plural: str, group: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{qualified(plural, group)} "{name}" not found',
                    {"name": name, "group": group, "kind": plural})


def already_exists(plural: str, group: str, name: str) -> ApiError:
    return ApiError(409, "AlreadyExists", f'{qualified(plural, group)} "{name}" already exists',
                    {"name": name, "group": group, "kind": plural})


def conflict(plural: str, group: str, name: str, why: str) -> ApiError:
    return ApiError(409, "Conflict",
                    f'Operation cannot be fulfilled on {qualified(plural, group)} "{name}": {why}',
                    {"name": name, "group": group, "kind": plural})


def stale(plural: str, group: str, name: str) -> ApiError:
    return conflict(plural, group, name, "the object has been modified; please apply your "
                    "changes to the latest version and try again")


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def invalid(kind: str, group: str, name: str, causes: list[dict[str, str]]) -> ApiError:
    """422 like a real server: ``Job.batch "x" is invalid: <field>: <message>, ...``."""
    what = f"{kind}.{group}" if group else kind
    text = "; ".join(f"{c['field']}: {c['message']}" if c.get("field") else c["message"]
                     for c in causes)
    if len(causes) > 1:
        text = "[" + ", ".join(f"{c['field']}: {c['message']}" for c in causes) + "]"
    return ApiError(422, "Invalid", f'{what} "{name}" is invalid: {text}',
                    {"name": name, "group": group, "kind": kind, "causes": causes})


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)
