"""Table output (``Accept: application/json;as=Table;g=meta.k8s.io;v=v1``) for ``kubectl get``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .resources import ResourceType

Obj = dict[str, Any]
Row = Callable[[Obj], list[Any]]


def _parse(ts: str | None) -> datetime | None:
    if not ts:
        return None
    try:
        return datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return None


def human_duration(seconds: float) -> str:
    """kubectl's short durations: 42s, 3m20s, 15m, 2h10m, 5h, 3d4h, 12d, 2y."""
    s = int(max(seconds, 0))
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = m // 60
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    d = h // 24
    if d < 8:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    if d < 365 * 2:
        return f"{d}d"
    return f"{d // 365}y"


def age(ts: str | None) -> str:
    t = _parse(ts)
    if t is None:
        return "<unknown>"
    return human_duration((datetime.now(UTC) - t).total_seconds())


def _age_of(obj: Obj) -> str:
    return age(obj["metadata"].get("creationTimestamp"))


def _pod_status(pod: Obj) -> str:
    status = pod.get("status") or {}
    reason = status.get("reason") or status.get("phase") or "Unknown"
    for cs in status.get("containerStatuses") or []:
        state = cs.get("state") or {}
        if "waiting" in state and state["waiting"].get("reason"):
            reason = state["waiting"]["reason"]
        elif "terminated" in state:
            term = state["terminated"]
            reason = term.get("reason") or (f"Signal:{term['signal']}" if term.get("signal")
                                            else f"ExitCode:{term.get('exitCode')}")
    if pod["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    return reason


def _pod_row(pod: Obj) -> list[Any]:
    status, spec = pod.get("status") or {}, pod.get("spec") or {}
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for cs in statuses if cs.get("ready"))
    restarts = sum(int(cs.get("restartCount", 0)) for cs in statuses)
    gates = spec.get("readinessGates") or []
    return [pod["metadata"]["name"], f"{ready}/{len(spec.get('containers') or [])}",
            _pod_status(pod), restarts, _age_of(pod), status.get("podIP", "<none>"),
            spec.get("nodeName", "<none>"), status.get("nominatedNodeName", "<none>"),
            f"{len(gates)}" if gates else "<none>"]


def _job_status(job: Obj) -> str:
    conditions = {c["type"]: c["status"] for c in (job.get("status") or {}).get("conditions")
                  or []}
    for kind in ("Failed", "Complete", "FailureTarget", "SuccessCriteriaMet", "Suspended"):
        if conditions.get(kind) == "True":
            return "Running" if kind in ("FailureTarget", "SuccessCriteriaMet") else kind
    if job["metadata"].get("deletionTimestamp"):
        return "Terminating"
    return "Running"


def _job_row(job: Obj) -> list[Any]:
    spec, status = job.get("spec") or {}, job.get("status") or {}
    completions = spec.get("completions")
    done = f"{status.get('succeeded', 0)}/{completions}" if completions is not None else \
        f"{status.get('succeeded', 0)}/1 of {spec.get('parallelism', 1)}"
    start, end = _parse(status.get("startTime")), _parse(status.get("completionTime"))
    duration = ""
    if start:
        duration = human_duration(((end or datetime.now(UTC)) - start).total_seconds())
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    selector = ",".join(f"{k}={v}" for k, v in
                        ((spec.get("selector") or {}).get("matchLabels") or {}).items())
    return [job["metadata"]["name"], _job_status(job), done, duration, _age_of(job),
            ",".join(c["name"] for c in containers), ",".join(c.get("image", "")
                                                              for c in containers), selector]


def _event_row(ev: Obj) -> list[Any]:
    inv = ev.get("involvedObject") or {}
    last = ev.get("lastTimestamp") or ev.get("eventTime") or ev["metadata"].get(
        "creationTimestamp")
    return [age(last), ev.get("type", ""), ev.get("reason", ""),
            f"{(inv.get('kind') or '').lower()}/{inv.get('name', '')}", ev.get("message", "")]


def _string(name: str, priority: int = 0, fmt: str = "") -> dict[str, Any]:
    return {"name": name, "type": "string", "format": fmt, "description": name,
            "priority": priority}


NAME = _string("Name", fmt="name")
AGE = _string("Age")

BUILTIN: dict[str, tuple[list[dict[str, Any]], Row]] = {
    "Pod": ([NAME, _string("Ready"), _string("Status"), {**_string("Restarts"),
                                                         "type": "integer"},
             AGE, _string("IP", 1), _string("Node", 1), _string("Nominated Node", 1),
             _string("Readiness Gates", 1)], _pod_row),
    "Job": ([NAME, _string("Status"), _string("Completions"), _string("Duration"), AGE,
             _string("Containers", 1), _string("Images", 1), _string("Selector", 1)], _job_row),
    "ConfigMap": ([NAME, {**_string("Data"), "type": "integer"}, AGE],
                  lambda o: [o["metadata"]["name"], len(o.get("data") or {})
                             + len(o.get("binaryData") or {}), _age_of(o)]),
    "Secret": ([NAME, _string("Type"), {**_string("Data"), "type": "integer"}, AGE],
               lambda o: [o["metadata"]["name"], o.get("type", ""), len(o.get("data") or {}),
                          _age_of(o)]),
    "Namespace": ([NAME, _string("Status"), AGE],
                  lambda o: [o["metadata"]["name"], (o.get("status") or {}).get("phase", ""),
                             _age_of(o)]),
    "PersistentVolumeClaim": (
        [NAME, _string("Status"), _string("Volume"), _string("Capacity"),
         _string("Access Modes"), _string("StorageClass"), _string("VolumeAttributesClass"),
         AGE, _string("VolumeMode", 1)],
        lambda o: [o["metadata"]["name"], (o.get("status") or {}).get("phase", ""),
                   (o.get("spec") or {}).get("volumeName", ""),
                   ((o.get("status") or {}).get("capacity") or {}).get("storage", ""),
                   ",".join({"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX",
                             "ReadWriteMany": "RWX", "ReadWriteOncePod": "RWOP"}.get(m, m)
                            for m in (o.get("status") or {}).get("accessModes") or []),
                   (o.get("spec") or {}).get("storageClassName", "<unset>"), "<unset>",
                   _age_of(o), (o.get("spec") or {}).get("volumeMode", "")]),
    "Event": ([_string("Last Seen"), _string("Type"), _string("Reason"), _string("Object"),
               _string("Message")], _event_row),
    "NetworkPolicy": ([NAME, _string("Pod-Selector"), AGE],
                      lambda o: [o["metadata"]["name"], ",".join(
                          f"{k}={v}" for k, v in (((o.get("spec") or {}).get("podSelector")
                                                   or {}).get("matchLabels") or {}).items())
                          or "<none>", _age_of(o)]),
    "Lease": ([NAME, _string("Holder"), AGE],
              lambda o: [o["metadata"]["name"], (o.get("spec") or {}).get("holderIdentity", ""),
                         _age_of(o)]),
    "CustomResourceDefinition": ([NAME, _string("Created At", fmt="date")],
                                 lambda o: [o["metadata"]["name"],
                                            o["metadata"].get("creationTimestamp", "")]),
}


def json_path(obj: Any, path: str) -> Any:
    """The simple JSONPath printer columns use: ``.status.phase``, ``.a.b[0].c``."""
    cur = obj
    for part in path.strip().lstrip(".").replace("[", ".[").split("."):
        if not part:
            continue
        if part.startswith("[") and part.endswith("]"):
            index = part[1:-1]
            if isinstance(cur, list) and index.lstrip("-").isdigit() and \
                    -len(cur) <= int(index) < len(cur):
                cur = cur[int(index)]
            else:
                return None
        elif isinstance(cur, dict):
            cur = cur.get(part)
        else:
            return None
    return cur


def _custom(rt: ResourceType) -> tuple[list[dict[str, Any]], Row]:
    if not rt.columns:
        return [NAME, AGE], lambda o: [o["metadata"]["name"], _age_of(o)]
    defs = [NAME] + [{"name": c.name, "type": c.type, "format": c.format,
                      "description": c.description, "priority": c.priority} for c in rt.columns]

    def row(obj: Obj) -> list[Any]:
        cells: list[Any] = [obj["metadata"]["name"]]
        for c in rt.columns:
            value = json_path(obj, c.json_path)
            if c.type == "date" and isinstance(value, str):
                value = age(value)
            cells.append(value)
        return cells
    # A custom resource without an explicit creationTimestamp column still shows its age,
    # as a real server does only when no columns are given: keep the CRD's columns as is.
    return defs, row


def table(rt: ResourceType, items: list[Obj], resource_version: str,
          include_object: str, columns: bool = True) -> dict[str, Any]:
    definitions, row = _custom(rt) if rt.custom else BUILTIN.get(
        rt.kind, ([NAME, AGE], lambda o: [o["metadata"]["name"], _age_of(o)]))
    rows = []
    for obj in items:
        if include_object == "Object":
            embedded: Obj = obj
        elif include_object == "None":
            embedded = None
        else:
            embedded = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                        "metadata": obj["metadata"]}
        rows.append({"cells": row(obj), "object": embedded})
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": resource_version},
            "columnDefinitions": definitions if columns else [], "rows": rows}
