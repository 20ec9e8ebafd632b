"""Label selectors (=, ==, !=, in, notin, exists, !key) and field selectors."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .errors import bad_request

Obj = dict[str, Any]
Requirement = Callable[[dict[str, str]], bool]

_SET = re.compile(r"^\s*(!?)\s*([A-Za-z0-9_./-]+)\s*(?:(in|notin)\s*\(([^)]*)\))?\s*$")
_EQ = re.compile(r"^\s*([A-Za-z0-9_./-]+)\s*(==|=|!=)\s*([A-Za-z0-9_.-]*)\s*$")


def _split(selector: str) -> list[str]:
    """Split on commas that are not inside ``( )``."""
    parts, depth, cur = [], 0, ""
    for ch in selector:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p for p in parts if p.strip()]


def _requirement(term: str) -> Requirement:
    m = _EQ.match(term)
    if m:
        key, op, value = m.groups()
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    m = _SET.match(term)
    if m:
        neg, key, op, values = m.groups()
        if op:
            if neg:
                raise bad_request(f"unable to parse requirement: {term!r}")
            allowed = {v.strip() for v in values.split(",") if v.strip()}
            if op == "in":
                return lambda labels: labels.get(key) in allowed
            return lambda labels: labels.get(key) not in allowed
        if neg:
            return lambda labels: key not in labels
        return lambda labels: key in labels
    raise bad_request(f"unable to parse requirement: {term!r}")


def label_matcher(selector: str | None) -> Callable[[Obj], bool] | None:
    """A predicate over objects for ``labelSelector``, or None for 'everything'."""
    if not selector or not selector.strip():
        return None
    reqs = [_requirement(t) for t in _split(selector)]

    def match(obj: Obj) -> bool:
        labels = obj["metadata"].get("labels") or {}
        return all(r(labels) for r in reqs)
    return match


def match_label_selector(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A structured LabelSelector (matchLabels / matchExpressions) against labels."""
    if selector is None:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


# Field selectors a real server supports, per kind, beyond metadata.name / metadata.namespace.
FIELDS: dict[str, set[str]] = {
    "Pod": {"status.phase", "spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
            "spec.serviceAccountName", "status.podIP", "status.nominatedNodeName"},
    "Event": {"involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
              "involvedObject.uid", "involvedObject.apiVersion", "involvedObject.resourceVersion",
              "involvedObject.fieldPath", "reason", "reportingComponent", "source", "type"},
    "Secret": {"type"},
    "Namespace": {"status.phase"},
    "Job": {"status.successful"},
}


def _field_value(obj: Obj, path: str) -> str:
    if path == "source":
        return (obj.get("source") or {}).get("component", "")
    cur: Any = obj
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    if cur is None:
        return ""
    return str(cur).lower() if isinstance(cur, bool) else str(cur)


def field_matcher(selector: str | None, kind: str, custom: bool,
                  selectable: tuple[str, ...] = ()) -> Callable[[Obj], bool] | None:
    """A predicate for `selector`; `selectable` adds a custom resource's `selectableFields`."""
    if not selector or not selector.strip():
        return None
    known = ("metadata.name", "metadata.namespace", *selectable)
    allowed = set(known) | FIELDS.get(kind, set())
    reqs = []
    for term in _split(selector):
        m = re.match(r"^\s*([A-Za-z0-9_.]+)\s*(==|=|!=)\s*(.*?)\s*$", term)
        if not m:
            raise bad_request(f"invalid field selector: {term!r}")
        path, op, value = m.groups()
        if path not in allowed:
            raise bad_request(f'field label not supported: {path}' if not custom else
                              f'"{path}" is not a known field selector: only '
                              + ", ".join(f'"{name}"' for name in known))
        reqs.append((path, op == "!=", value))

    def match(obj: Obj) -> bool:
        return all((_field_value(obj, p) == v) != neg for p, neg, v in reqs)
    return match


def combine(*preds: Callable[[Obj], bool] | None) -> Callable[[Obj], bool] | None:
    real = [p for p in preds if p is not None]
    if not real:
        return None
    if len(real) == 1:
        return real[0]
    return lambda obj: all(p(obj) for p in real)
