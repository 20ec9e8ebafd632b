"""Custom resources against their CRD's ``openAPIV3Schema``, as a real server does.

In order: unknown fields are pruned (or, with ``fieldValidation=Strict``, rejected with
400), ``default`` values are applied, then the object is validated (types, required,
enum, bounds, lengths, patterns, item counts); violations are a 422 with causes.
``x-kubernetes-preserve-unknown-fields`` keeps a subtree as is;
``x-kubernetes-int-or-string`` accepts both; ``nullable`` allows null.
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from .errors import ApiError, invalid
from .resources import ResourceType
from .validation import bad_value, cause, required, unsupported

Schema = dict[str, Any]
_META_KEYS = {"apiVersion", "kind", "metadata"}


def _path(base: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{base}[{key}]"
    return f"{base}.{key}" if base else key


def prune(value: Any, schema: Schema | None, path: str, unknown: list[str]) -> Any:
    """Drop fields the schema does not declare (collecting their paths)."""
    if schema is None or schema.get("x-kubernetes-preserve-unknown-fields"):
        if isinstance(value, dict) and schema and schema.get("properties"):
            return {k: prune(v, schema["properties"].get(k), _path(path, k), unknown)
                    if k in schema["properties"] else v for k, v in value.items()}
        return value
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        if props is None and isinstance(extra, dict):
            return {k: prune(v, extra, _path(path, k), unknown) for k, v in value.items()}
        if props is None and (extra is True or schema.get("type") != "object"):
            return value
        out = {}
        for k, v in value.items():
            if k in (props or {}):
                out[k] = prune(v, props[k], _path(path, k), unknown)
            elif not path and k in _META_KEYS:
                out[k] = v
            else:
                unknown.append(_path(path, k))
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [prune(v, schema["items"], _path(path, i), unknown) for i, v in enumerate(value)]
    return value


def apply_defaults(value: Any, schema: Schema | None) -> Any:
    if schema is None:
        return value
    if isinstance(value, dict):
        for k, sub in (schema.get("properties") or {}).items():
            if k not in value and "default" in sub:
                value[k] = copy.deepcopy(sub["default"])
            if k in value:
                value[k] = apply_defaults(value[k], sub)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for k in value:
                if k not in (schema.get("properties") or {}):
                    value[k] = apply_defaults(value[k], extra)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(v, schema["items"]) for v in value]
    return value


_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool)
    or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
}


_FORMATS = {
    "date-time": re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?"
                            r"([Zz]|[+-]\d{2}:\d{2})$"),
    "date": re.compile(r"^\d{4}-\d{2}-\d{2}$"),
}


def _show(v: Any) -> str:
    return json.dumps(v, separators=(",", ":"))


def check(value: Any, schema: Schema, path: str, out: list[dict[str, str]]) -> None:
    if value is None:
        if not schema.get("nullable") and schema.get("type"):
            out.append(bad_value(path, None, f"{path} in body must be of type "
                                 f"{schema['type']}: \"null\""))
        return
    t = schema.get("type")
    if schema.get("x-kubernetes-int-or-string"):
        if not (isinstance(value, str) or _TYPES["integer"](value)):
            out.append(bad_value(path, value, f"{path} in body must be of type int-or-string"))
            return
    elif t and not _TYPES.get(t, lambda v: True)(value):
        out.append(cause("FieldValueTypeInvalid", path, f"Invalid value: {_show(value)}: "
                         f"{path} in body must be of type {t}: \"{_json_type(value)}\""))
        return
    if "enum" in schema and value not in schema["enum"]:
        out.append(unsupported(path, value, [str(e) for e in schema["enum"]]))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        lo, hi = schema.get("minimum"), schema.get("maximum")
        if lo is not None and (value < lo or (schema.get("exclusiveMinimum") and value == lo)):
            rel = "greater than" if schema.get("exclusiveMinimum") else "greater than or equal to"
            out.append(bad_value(path, value, f"{path} in body should be {rel} {lo}"))
        if hi is not None and (value > hi or (schema.get("exclusiveMaximum") and value == hi)):
            rel = "less than" if schema.get("exclusiveMaximum") else "less than or equal to"
            out.append(bad_value(path, value, f"{path} in body should be {rel} {hi}"))
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            out.append(cause("FieldValueTooLong", path,
                             f"Too long: may not be more than {schema['maxLength']} bytes"))
        if "minLength" in schema and len(value) < schema["minLength"]:
            out.append(bad_value(path, value, f"{path} in body should be at least "
                                 f"{schema['minLength']} chars long"))
        fmt = schema.get("format")
        if fmt in _FORMATS and not _FORMATS[fmt].match(value):
            out.append(bad_value(path, value, f"{path} in body must be of type {fmt}: "
                                 f"{_show(value)}"))
        if "pattern" in schema and not re.search(schema["pattern"], value):
            out.append(bad_value(path, value, f"{path} in body should match "
                                 f"'{schema['pattern']}'"))
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            out.append(cause("FieldValueTooMany", path, f"Too many: {len(value)}: must have at "
                             f"most {schema['maxItems']} items"))
        if "minItems" in schema and len(value) < schema["minItems"]:
            out.append(bad_value(path, value, f"{path} in body should have at least "
                                 f"{schema['minItems']} items"))
        if isinstance(schema.get("items"), dict):
            for i, item in enumerate(value):
                check(item, schema["items"], _path(path, i), out)
    if isinstance(value, dict):
        for name in schema.get("required") or []:
            if name not in value:
                out.append(required(_path(path, name)))
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for k, v in value.items():
            if k in props:
                check(v, props[k], _path(path, k), out)
            elif isinstance(extra, dict):
                check(v, extra, _path(path, k), out)
    for sub in schema.get("allOf") or []:
        check(value, sub, path, out)
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if options:
            fits = sum(1 for s in options if not _errors(value, s, path))
            if fits == 0 or (key == "oneOf" and fits > 1):
                out.append(bad_value(path, value, f"{path} in body must match "
                                     f"{'exactly one' if key == 'oneOf' else 'at least one'} "
                                     f"schema in {key}"))
    if "not" in schema and not _errors(value, schema["not"], path):
        out.append(bad_value(path, value, f"{path} in body must not match the schema in not"))


def _errors(value: Any, schema: Schema, path: str) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    check(value, schema, path, out)
    return out


def _json_type(v: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean"}.get(type(v), "number")


def validate_custom(rt: ResourceType, obj: dict[str, Any], strict: bool) -> dict[str, Any]:
    """Prune, default and validate a custom resource; returns the object to store."""
    schema = rt.schema or {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    unknown: list[str] = []
    body = {k: v for k, v in obj.items() if k not in _META_KEYS}
    body = prune(body, schema, "", unknown)
    if unknown and strict:
        names = ", ".join(f'"{u}"' for u in unknown)
        raise ApiError(400, "BadRequest", f"strict decoding error: unknown field {names}")
    body = apply_defaults(body, schema)
    out: list[dict[str, str]] = []
    top = {k: v for k, v in schema.items() if k not in ("properties", "required")}
    top["properties"] = {k: v for k, v in (schema.get("properties") or {}).items()
                         if k not in _META_KEYS}
    top["required"] = [r for r in schema.get("required") or [] if r not in _META_KEYS]
    check(body, top, "", out)
    if out:
        raise invalid(rt.kind, rt.group, obj["metadata"].get("name", ""), out)
    return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "metadata": obj["metadata"],
            **body}
