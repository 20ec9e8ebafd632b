"""Defaulting of built-in objects on create, as a real API server does."""

from __future__ import annotations

import base64
from datetime import UTC
from typing import Any

Obj = dict[str, Any]

JOB_LABELS = ("batch.kubernetes.io/controller-uid", "batch.kubernetes.io/job-name",
              "controller-uid", "job-name")


def _container(c: Obj) -> None:
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    c.setdefault("resources", {})
    if "imagePullPolicy" not in c:
        image = c.get("image") or ""
        tagged = ":" in image.rsplit("/", 1)[-1] or "@" in image
        c["imagePullPolicy"] = ("IfNotPresent" if tagged and not image.endswith(":latest")
                                else "Always")
    for p in c.get("ports") or []:
        p.setdefault("protocol", "TCP")
    for e in c.get("env") or []:
        field_ref = (e.get("valueFrom") or {}).get("fieldRef")
        if field_ref is not None:
            field_ref.setdefault("apiVersion", "v1")


def pod_spec(spec: Obj, template: bool) -> None:
    if not template:
        spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")
    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        _container(c)
    for v in spec.get("volumes") or []:
        for source in ("configMap", "secret", "projected", "downwardAPI"):
            if source in v:
                v[source].setdefault("defaultMode", 420)
        if "emptyDir" in v and v["emptyDir"] is None:
            v["emptyDir"] = {}


def _qos(spec: Obj) -> str:
    requests = limits = 0
    guaranteed = True
    for c in spec.get("containers") or []:
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        requests += len(req)
        limits += len(lim)
        if not all(k in lim for k in ("cpu", "memory")) or any(req.get(k, lim[k]) != lim[k]
                                                                 for k in lim):
            guaranteed = False
    if requests == 0 and limits == 0:
        return "BestEffort"
    return "Guaranteed" if guaranteed else "Burstable"


def on_create(kind: str, obj: Obj) -> None:
    """Fill defaults on a new object (already carrying its uid and name)."""
    meta = obj["metadata"]
    if kind == "Pod":
        spec = obj.setdefault("spec", {})
        pod_spec(spec, template=False)
        spec.setdefault("serviceAccountName", "default")
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("priority", 0)
        spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
        obj["status"] = {"phase": "Pending", "qosClass": _qos(spec)}
    elif kind == "Job":
        _job(obj)
    elif kind == "Namespace":
        meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta["name"]
        obj["spec"] = {"finalizers": ["kubernetes"]}
        obj["status"] = {"phase": "Active"}
    elif kind == "PersistentVolumeClaim":
        obj.setdefault("spec", {}).setdefault("volumeMode", "Filesystem")
        obj["status"] = {"phase": "Pending"}
    elif kind == "Secret":
        obj["type"] = obj.get("type") or "Opaque"
    elif kind == "NetworkPolicy":
        spec = obj.setdefault("spec", {})
        if "policyTypes" not in spec:
            spec["policyTypes"] = ["Ingress"] + (["Egress"] if spec.get("egress") else [])
        for rule in (spec.get("ingress") or []) + (spec.get("egress") or []):
            for p in rule.get("ports") or []:
                p.setdefault("protocol", "TCP")
    elif kind == "CustomResourceDefinition":
        spec = obj.setdefault("spec", {})
        spec.setdefault("conversion", {"strategy": "None"})
        names = spec.setdefault("names", {})
        names.setdefault("singular", names.get("kind", "").lower())
        names.setdefault("listKind", names.get("kind", "") + "List")
        obj["status"] = crd_status(obj)


def crd_status(crd: Obj) -> Obj:
    """What the CRD controllers report once the names are accepted."""
    from datetime import datetime
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "acceptedNames": crd["spec"]["names"],
        "storedVersions": [v["name"] for v in crd["spec"].get("versions", [])
                           if v.get("storage")],
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
             "message": "no conflicts found", "lastTransitionTime": now},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
             "message": "the initial names have been accepted", "lastTransitionTime": now},
        ],
    }


def _job(obj: Obj) -> None:
    meta, spec = obj["metadata"], obj.setdefault("spec", {})
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    if not spec.get("podFailurePolicy"):
        spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    template = spec.setdefault("template", {})
    if not spec.get("manualSelector"):
        labels = template.setdefault("metadata", {}).setdefault("labels", {})
        uid, name = meta["uid"], meta["name"]
        for key, value in zip(JOB_LABELS, (uid, name, uid, name), strict=True):
            labels[key] = value
        spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    template_labels = (template.get("metadata") or {}).get("labels")
    if not meta.get("labels") and template_labels:
        meta["labels"] = dict(template_labels)
    pod_spec(template.setdefault("spec", {}), template=True)
    obj["status"] = {}


def secret_string_data(obj: Obj) -> None:
    """``stringData`` is write-only: merged into ``data`` (base64) on every write."""
    string_data = obj.pop("stringData", None)
    if string_data:
        data = obj.setdefault("data", {})
        for k, v in string_data.items():
            data[k] = base64.b64encode(str(v).encode()).decode()
