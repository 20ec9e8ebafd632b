"""Validation of built-in objects: the official schema (strict) plus the API server's rules.

The schema catches unknown fields (answered 400 ``strict decoding error`` as a real
server does), wrong types and missing required fields. The rules below are the
semantic checks a real API server adds on top (names, labels, quantities, Job and Pod
rules, immutable fields); violations become a 422 ``Invalid`` Status with causes.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from . import schemas
from .errors import ApiError, invalid
from .resources import ResourceType

Obj = dict[str, Any]
Causes = list[dict[str, str]]

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")

LABEL_MSG = ("a lowercase RFC 1123 label must consist of lower case alphanumeric characters "
             "or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  "
             "or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')")
SUBDOMAIN_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
                 "characters, '-' or '.', and must start and end with an alphanumeric "
                 "character (e.g. 'example.com', regex used for validation is "
                 "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')")


def cause(reason: str, field: str, message: str) -> dict[str, str]:
    return {"reason": reason, "message": message, "field": field}


def _show(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def bad_value(field: str, value: Any, detail: str) -> dict[str, str]:
    return cause("FieldValueInvalid", field, f"Invalid value: {_show(value)}: {detail}")


def required(field: str, detail: str = "") -> dict[str, str]:
    return cause("FieldValueRequired", field, "Required value" + (f": {detail}" if detail else ""))


def unsupported(field: str, value: Any, allowed: list[str]) -> dict[str, str]:
    return cause("FieldValueNotSupported", field, f"Unsupported value: {_show(value)}: supported "
                 f"values: " + ", ".join(f'"{a}"' for a in allowed))


def forbidden(field: str, detail: str) -> dict[str, str]:
    return cause("FieldValueForbidden", field, f"Forbidden: {detail}")


# ---------------------------------------------------------------------------- schema


def _field(path: Any) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def strip_nulls(value: Any) -> Any:
    """Null fields of built-ins decode as 'unset' on a real server: drop them."""
    if isinstance(value, dict):
        return {k: strip_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [strip_nulls(v) for v in value]
    return value


def check_schema(rt: ResourceType, obj: Obj) -> None:
    """Raise 400 for unknown fields or wrong types, 422 for other schema violations."""
    if schemas.quick_check(rt.api_version, rt.kind)(obj):
        return  # jsonschema would find nothing; it words the errors when there are some
    v = schemas.validator(rt.api_version, rt.kind)
    causes: Causes = []
    for err in v.iter_errors(obj):
        field = _field(err.absolute_path)
        if err.validator == "additionalProperties":
            known = set((err.schema or {}).get("properties") or {})
            extra = sorted(set(err.instance) - known)
            names = ", ".join(f'"{field + "." if field else ""}{k}"' for k in extra)
            raise ApiError(400, "BadRequest", f"strict decoding error: unknown field {names}")
        if err.validator == "type":
            raise ApiError(400, "BadRequest", f"json: cannot unmarshal {_json_type(err.instance)} "
                           f"into Go struct field {rt.kind}.{field} of type {_go_type(err)}")
        if err.validator == "required":
            missing = re.search(r"'([^']+)' is a required property", err.message)
            name = missing.group(1) if missing else "?"
            causes.append(required(f"{field}.{name}" if field else name))
        elif err.validator == "enum":
            causes.append(unsupported(field, err.instance, [str(x) for x in err.validator_value
                                                            if x is not None]))
        else:
            causes.append(bad_value(field, err.instance, err.message))
    if causes:
        raise invalid(rt.kind, rt.group, obj["metadata"].get("name", ""), causes)


def _json_type(value: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "bool"}.get(type(value), "number")


def _go_type(err: Any) -> str:
    t = err.validator_value
    t = [x for x in t if x != "null"] if isinstance(t, list) else [t]
    return {"integer": "int64", "string": "string", "boolean": "bool", "object": "map",
            "array": "slice", "number": "float64"}.get(t[0] if t else "", str(t))


# ---------------------------------------------------------------------------- semantic rules


def parse_quantity(text: Any) -> float | None:
    """A Kubernetes quantity as a number (bytes / cores), None when malformed."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    if not isinstance(text, str):
        return None
    m = re.fullmatch(r"([+-]?(?:\d+\.?\d*|\.\d+))"
                     r"(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][-+]?\d+)?", text)
    if not m:
        return None
    number, suffix = float(m.group(1)), m.group(2) or ""
    scale = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
             "n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
             "P": 1e15, "E": 1e18}
    if suffix[:1] in ("e", "E"):
        return number * 10 ** int(suffix[1:])
    return number * scale[suffix]


def _qualified_key(field: str, key: str) -> list[dict[str, str]]:
    prefix, _, name = key.rpartition("/")
    out = []
    if prefix and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix)):
        out.append(bad_value(field, key, "prefix part " + SUBDOMAIN_MSG))
    if not name or len(name) > 63 or not QUALIFIED_NAME.match(name):
        out.append(bad_value(field, key, "name part must consist of alphanumeric characters, "
                             "'-', '_' or '.', and must start and end with an alphanumeric "
                             "character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex "
                             "used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
                             + (" and must be no more than 63 characters" if len(name) > 63
                                else "")))
    return out


def check_labels(labels: dict[str, Any] | None, field: str) -> Causes:
    out: Causes = []
    for k, v in (labels or {}).items():
        out += _qualified_key(field, k)
        if not isinstance(v, str) or len(v) > 63 or not LABEL_VALUE.match(v):
            out.append(bad_value(field, v, "a valid label must be an empty string or consist of "
                                 "alphanumeric characters, '-', '_' or '.', and must start and end"
                                 " with an alphanumeric character (e.g. 'MyValue',  or "
                                 "'my_value',  or '12345', regex used for validation is "
                                 "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"))
    return out


def check_name(name: str, field: str, label: bool) -> Causes:
    if label:
        if len(name) > 63 or not DNS1123_LABEL.match(name):
            return [bad_value(field, name, LABEL_MSG)]
    elif len(name) > 253 or not DNS1123_SUBDOMAIN.match(name):
        return [bad_value(field, name, SUBDOMAIN_MSG)]
    return []


def check_metadata(meta: Obj, label_name: bool) -> Causes:
    out = check_name(meta.get("name", ""), "metadata.name", label_name)
    out += check_labels(meta.get("labels"), "metadata.labels")
    for k in meta.get("annotations") or {}:
        out += _qualified_key("metadata.annotations", k)
    size = sum(len(k) + len(v or "") for k, v in (meta.get("annotations") or {}).items())
    if size > 256 * 1024:
        out.append(cause("FieldValueTooLong", "metadata.annotations",
                         "Too long: must have at most 262144 bytes"))
    for i, ref in enumerate(meta.get("ownerReferences") or []):
        if not ref.get("uid"):
            out.append(required(f"metadata.ownerReferences[{i}].uid"))
    return out


def _check_resources(res: Obj | None, field: str) -> Causes:
    out: Causes = []
    res = res or {}
    parsed: dict[str, dict[str, float]] = {}
    for part in ("limits", "requests"):
        for name, q in (res.get(part) or {}).items():
            value = parse_quantity(q)
            if value is None:
                out.append(bad_value(f"{field}.{part}[{name}]", q, "quantities must match the "
                                     "regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?"
                                     "[0-9]*)$'"))
            elif value < 0:
                out.append(bad_value(f"{field}.{part}[{name}]", q,
                                     "must be greater than or equal to 0"))
            else:
                parsed.setdefault(part, {})[name] = value
    for name, req in parsed.get("requests", {}).items():
        lim = parsed.get("limits", {}).get(name)
        if lim is not None and req > lim:
            out.append(bad_value(f"{field}.requests", res["requests"][name],
                                 f"must be less than or equal to {name} limit of "
                                 f"{res['limits'][name]}"))
    return out


def check_pod_spec(spec: Obj, field: str, job: bool) -> Causes:
    out: Causes = []
    policy = spec.get("restartPolicy")
    allowed = ["OnFailure", "Never"] if job else ["Always", "OnFailure", "Never"]
    if job and policy is None:
        out.append(required(f"{field}.restartPolicy",
                            'valid values: "OnFailure", "Never"'))
    elif policy not in allowed:
        out.append(unsupported(f"{field}.restartPolicy", policy, allowed))
    volumes = set()
    for i, vol in enumerate(spec.get("volumes") or []):
        name = vol.get("name", "")
        out += check_name(name, f"{field}.volumes[{i}].name", True)
        if name in volumes:
            out.append(cause("FieldValueDuplicate", f"{field}.volumes[{i}].name",
                             f'Duplicate value: "{name}"'))
        volumes.add(name)
        sources = [k for k in vol if k != "name"]
        if len(sources) != 1:
            out.append(required(f"{field}.volumes[{i}]", "must specify a volume type")
                       if not sources else forbidden(f"{field}.volumes[{i}]",
                                                     "may not specify more than 1 volume type"))
    names: set[str] = set()
    for list_name in ("initContainers", "containers"):
        items = spec.get(list_name) or []
        if list_name == "containers" and not items:
            out.append(required(f"{field}.containers"))
        for i, c in enumerate(items):
            cf = f"{field}.{list_name}[{i}]"
            name = c.get("name", "")
            out += check_name(name, f"{cf}.name", True)
            if name in names:
                out.append(cause("FieldValueDuplicate", f"{cf}.name", f'Duplicate value: "{name}"'))
            names.add(name)
            if not (c.get("image") or "").strip():
                out.append(required(f"{cf}.image"))
            for j, e in enumerate(c.get("env") or []):
                if not ENV_NAME.match(e.get("name", "")):
                    out.append(bad_value(f"{cf}.env[{j}].name", e.get("name", ""),
                                         "a valid environment variable name must consist of "
                                         "alphabetic characters, digits, '_', '-', or '.', and "
                                         "must not start with a digit"))
            for j, m in enumerate(c.get("volumeMounts") or []):
                if m.get("name") not in volumes:
                    out.append(cause("FieldValueNotFound", f"{cf}.volumeMounts[{j}].name",
                                     f'Not found: "{m.get("name")}"'))
                if not m.get("mountPath"):
                    out.append(required(f"{cf}.volumeMounts[{j}].mountPath"))
            for j, p in enumerate(c.get("ports") or []):
                port = p.get("containerPort")
                if not isinstance(port, int) or not 1 <= port <= 65535:
                    out.append(bad_value(f"{cf}.ports[{j}].containerPort", port,
                                         "must be between 1 and 65535, inclusive"))
            out += _check_resources(c.get("resources"), f"{cf}.resources")
            tmp = c.get("terminationMessagePolicy")
            if tmp is not None and tmp not in ("File", "FallbackToLogsOnError"):
                out.append(unsupported(f"{cf}.terminationMessagePolicy", tmp,
                                       ["File", "FallbackToLogsOnError"]))
            pull = c.get("imagePullPolicy")
            if pull is not None and pull not in ("Always", "IfNotPresent", "Never"):
                out.append(unsupported(f"{cf}.imagePullPolicy", pull,
                                       ["Always", "IfNotPresent", "Never"]))
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and deadline <= 0:
        out.append(bad_value(f"{field}.activeDeadlineSeconds", deadline,
                             "must be between 1 and 2147483647, inclusive"))
    dns = spec.get("dnsPolicy")
    if dns is not None and dns not in ("ClusterFirstWithHostNet", "ClusterFirst", "Default",
                                       "None"):
        out.append(unsupported(f"{field}.dnsPolicy", dns,
                               ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"]))
    return out


def _check_job(obj: Obj) -> Causes:
    from .selectors import match_label_selector
    spec = obj.get("spec") or {}
    out: Causes = []
    for name in ("parallelism", "completions", "backoffLimit", "ttlSecondsAfterFinished"):
        if spec.get(name) is not None and spec[name] < 0:
            out.append(bad_value(f"spec.{name}", spec[name], "must be greater than or equal to 0"))
    if spec.get("activeDeadlineSeconds") is not None and spec["activeDeadlineSeconds"] <= 0:
        out.append(bad_value("spec.activeDeadlineSeconds", spec["activeDeadlineSeconds"],
                             "must be greater than 0"))
    template = spec.get("template") or {}
    tmeta = template.get("metadata") or {}
    out += check_labels(tmeta.get("labels"), "spec.template.metadata.labels")
    if spec.get("selector") is not None and not match_label_selector(
            spec["selector"], tmeta.get("labels") or {}):
        out.append(bad_value("spec.template.metadata.labels", tmeta.get("labels") or {},
                             "`selector` does not match template `labels`"))
    out += check_pod_spec(template.get("spec") or {}, "spec.template.spec", job=True)
    policy = spec.get("podFailurePolicy")
    if policy and (template.get("spec") or {}).get("restartPolicy") != "Never":
        out.append(bad_value("spec.template.spec.restartPolicy",
                             (template.get("spec") or {}).get("restartPolicy"),
                             "only \"Never\" is supported when podFailurePolicy is specified"))
    return out


def _check_base64(obj: Obj, parts: tuple[str, ...]) -> None:
    """Base64 fields fail decoding on a real server: a 400, not a 422."""
    for part in parts:
        for k, v in (obj.get(part) or {}).items():
            try:
                base64.b64decode(v or "", validate=True)
            except (binascii.Error, ValueError):
                raise ApiError(400, "BadRequest", f"illegal base64 data in {part}[{k}]") from None


def _check_config(obj: Obj, secret: bool) -> Causes:
    _check_base64(obj, ("data",) if secret else ("binaryData",))
    out: Causes = []
    size = 0
    for part in ("data", "binaryData", "stringData"):
        for k, v in (obj.get(part) or {}).items():
            if len(k) > 253 or not CONFIG_KEY.match(k):
                out.append(bad_value(f"{part}[{k}]" if part != "data" else "data", k,
                                     "a valid config key must consist of alphanumeric "
                                     "characters, '-', '_' or '.' (e.g. 'key.name',  or "
                                     "'KEY_NAME',  or 'key-name', regex used for validation is "
                                     "'[-._a-zA-Z0-9]+')"))
            size += len(v or "")
    if size > 1024 * 1024:
        out.append(cause("FieldValueTooLong", "data", "Too long: must have at most 1048576 bytes"))
    return out


def _check_pvc(obj: Obj) -> Causes:
    spec = obj.get("spec") or {}
    out: Causes = []
    if not spec.get("accessModes"):
        out.append(required("spec.accessModes", "at least 1 access mode is required"))
    for i, mode in enumerate(spec.get("accessModes") or []):
        allowed = ["ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"]
        if mode not in allowed:
            out.append(unsupported(f"spec.accessModes[{i}]", mode, allowed))
    storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage")
    if storage is None:
        out.append(required("spec.resources[storage]"))
    else:
        q = parse_quantity(storage)
        if q is None:
            out.append(bad_value("spec.resources.requests[storage]", storage,
                                 "quantities must match the regular expression "
                                 "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"))
        elif q <= 0:
            out.append(bad_value("spec.resources.requests[storage]", storage,
                                 "must be greater than zero"))
    return out


def _check_crd(obj: Obj) -> Causes:
    spec = obj.get("spec") or {}
    names = spec.get("names") or {}
    out: Causes = []
    group, plural = spec.get("group", ""), names.get("plural", "")
    if obj["metadata"].get("name") != f"{plural}.{group}":
        out.append(bad_value("metadata.name", obj["metadata"].get("name"),
                             "must be spec.names.plural+\".\"+spec.group"))
    if "." not in group:
        out.append(bad_value("spec.group", group, "should be a domain with at least one dot"))
    for name in ("plural", "singular", "kind", "listKind"):
        if name in ("plural", "kind") and not names.get(name):
            out.append(required(f"spec.names.{name}"))
    if names.get("plural") and not DNS1123_LABEL.match(names["plural"]):
        out.append(bad_value("spec.names.plural", names["plural"], LABEL_MSG))
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        out.append(unsupported("spec.scope", spec.get("scope"), ["Cluster", "Namespaced"]))
    versions = spec.get("versions") or []
    if not versions:
        out.append(required("spec.versions", "must have exactly one version marked as storage"))
    elif sum(1 for v in versions if v.get("storage")) != 1:
        out.append(bad_value("spec.versions", [v.get("name") for v in versions],
                             "must have exactly one version marked as storage version"))
    for i, v in enumerate(versions):
        if not (v.get("schema") or {}).get("openAPIV3Schema"):
            out.append(required(f"spec.versions[{i}].schema.openAPIV3Schema",
                                "schemas are required"))
    return out


def check_rules(rt: ResourceType, obj: Obj) -> None:
    """The semantic rules a real API server applies on create and update."""
    meta = obj["metadata"]
    causes = check_metadata(meta, label_name=rt.kind == "Namespace")
    if rt.kind == "Pod":
        causes += check_pod_spec(obj.get("spec") or {}, "spec", job=False)
    elif rt.kind == "Job":
        if len(meta.get("name", "")) > 63:
            causes.append(bad_value("metadata.name", meta["name"],
                                    "must be no more than 63 characters"))
        causes += _check_job(obj)
    elif rt.kind in ("ConfigMap", "Secret"):
        causes += _check_config(obj, rt.kind == "Secret")
    elif rt.kind == "PersistentVolumeClaim":
        causes += _check_pvc(obj)
    elif rt.kind == "CustomResourceDefinition":
        causes += _check_crd(obj)
    if causes:
        raise invalid(rt.kind, rt.group, meta.get("name", ""), causes)


def check_immutable(rt: ResourceType, new: Obj, old: Obj) -> None:
    """Fields a real server refuses to change on update."""
    causes: Causes = []

    def immutable(path: str) -> None:
        a, b = new, old
        for part in path.split("."):
            a = (a or {}).get(part)
            b = (b or {}).get(part)
        if a != b:
            causes.append(bad_value(path, a, "field is immutable"))

    if rt.kind == "Job":
        for path in ("spec.selector", "spec.template", "spec.completionMode"):
            immutable(path)
        if not (old.get("spec") or {}).get("suspend"):
            immutable("spec.completions")
    elif rt.kind == "Pod":
        allowed = ("activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds")
        a = {k: v for k, v in (new.get("spec") or {}).items() if k not in allowed}
        b = {k: v for k, v in (old.get("spec") or {}).items() if k not in allowed}
        strip = [dict(c, image=None) for c in a.get("containers", [])]
        if dict(a, containers=strip) != dict(b, containers=[dict(c, image=None) for c in
                                                             b.get("containers", [])]):
            causes.append(forbidden("spec", "pod updates may not change fields other than "
                                    "`spec.containers[*].image`,`spec.initContainers[*].image`,"
                                    "`spec.activeDeadlineSeconds`,`spec.tolerations` (only "
                                    "additions to existing tolerations),"
                                    "`spec.terminationGracePeriodSeconds` (allow it to be set to"
                                    " 1 if it was previously negative)"))
    elif rt.kind == "PersistentVolumeClaim":
        a = dict(new.get("spec") or {}, resources=None, volumeName=None)
        b = dict(old.get("spec") or {}, resources=None, volumeName=None)
        if a != b:
            causes.append(forbidden("spec", "spec is immutable after creation except "
                                    "resources.requests and volumeAttributesClassName for bound "
                                    "claims"))
    elif rt.kind in ("ConfigMap", "Secret") and old.get("immutable"):
        for part in ("data", "binaryData", "immutable", "type"):
            if new.get(part) != old.get(part):
                causes.append(forbidden(part, "field is immutable when `immutable` is set"))
    elif rt.kind == "Secret":
        immutable("type")
    elif rt.kind == "CustomResourceDefinition":
        immutable("spec.scope")
        immutable("spec.group")
    if causes:
        raise invalid(rt.kind, rt.group, new["metadata"].get("name", ""), causes)
