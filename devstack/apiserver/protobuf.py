"""Decoding of the protobuf bodies ``kubectl create namespace|configmap|secret`` send.

kubectl's typed clients post ``application/vnd.kubernetes.protobuf``: the magic
``k8s\\0`` then a ``runtime.Unknown`` envelope (type meta + the object's bytes). This
decodes the few kinds those commands create; any other kind is a 415 asking for JSON.
Field numbers are those of Kubernetes' ``generated.proto`` files.
"""

from __future__ import annotations

import base64
from typing import Any

from .errors import ApiError

MAGIC = b"k8s\x00"
Schema = dict[int, tuple[str, str, Any]]     # field -> (json name, kind, sub-schema)

OBJECT_META: Schema = {
    1: ("name", "string", None), 2: ("generateName", "string", None),
    3: ("namespace", "string", None), 11: ("labels", "map", "string"),
    12: ("annotations", "map", "string"), 14: ("finalizers", "repeated", "string"),
    13: ("ownerReferences", "repeated", {
        1: ("kind", "string", None), 3: ("name", "string", None), 4: ("uid", "string", None),
        5: ("apiVersion", "string", None), 6: ("controller", "bool", None),
        7: ("blockOwnerDeletion", "bool", None)}),
}
KINDS: dict[tuple[str, str], Schema] = {
    ("v1", "ConfigMap"): {1: ("metadata", "message", OBJECT_META),
                          2: ("data", "map", "string"), 3: ("binaryData", "map", "bytes"),
                          4: ("immutable", "bool", None)},
    ("v1", "Secret"): {1: ("metadata", "message", OBJECT_META), 2: ("data", "map", "bytes"),
                       3: ("type", "string", None), 4: ("stringData", "map", "string"),
                       5: ("immutable", "bool", None)},
    ("v1", "Namespace"): {1: ("metadata", "message", OBJECT_META),
                          2: ("spec", "message", {1: ("finalizers", "repeated", "string")})},
}
ENVELOPE: Schema = {1: ("typeMeta", "message", {1: ("apiVersion", "string", None),
                                                2: ("kind", "string", None)}),
                    2: ("raw", "raw", None)}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            out.append((number, value))
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ValueError("truncated field")
            out.append((number, data[pos:pos + length]))
            pos += length
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return out


def _scalar(kind: str, value: int | bytes) -> Any:
    if kind == "string":
        return value.decode("utf-8") if isinstance(value, bytes) else str(value)
    if kind == "bytes":
        return base64.b64encode(value).decode() if isinstance(value, bytes) else ""
    if kind == "bool":
        return bool(value)
    return value


def _message(data: bytes, schema: Schema) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for number, value in _fields(data):
        if number not in schema:
            continue                  # unknown protobuf fields are ignored, as in Go
        name, kind, sub = schema[number]
        if kind == "message":
            out[name] = _message(value, sub)
        elif kind == "map":
            entry = dict(_fields(value))
            out.setdefault(name, {})[_scalar("string", entry.get(1, b""))] = _scalar(
                sub, entry.get(2, b""))
        elif kind == "repeated":
            item = _message(value, sub) if isinstance(sub, dict) else _scalar(sub, value)
            out.setdefault(name, []).append(item)
        elif kind == "raw":
            out[name] = value
        elif value not in (b"", 0):     # Go writes empty strings; JSON would omit them
            out[name] = _scalar(kind, value)
    return out


def decode(body: bytes) -> dict[str, Any]:
    """A JSON-shaped object from a Kubernetes protobuf body, or a 415 for other kinds."""
    if not body.startswith(MAGIC):
        raise ApiError(400, "BadRequest", "protobuf body without the k8s envelope")
    try:
        envelope = _message(body[len(MAGIC):], ENVELOPE)
        type_meta = envelope.get("typeMeta", {})
        key = (type_meta.get("apiVersion", ""), type_meta.get("kind", ""))
        if key not in KINDS:
            raise ApiError(415, "UnsupportedMediaType", f"this server decodes protobuf only "
                           f"for Namespace, ConfigMap and Secret, not {key[1] or 'this kind'}; "
                           f"send JSON (e.g. kubectl apply -f)")
        obj = _message(envelope.get("raw", b""), KINDS[key])
    except ValueError as e:
        raise ApiError(400, "BadRequest", f"the protobuf body could not be decoded: {e}") from None
    return {"apiVersion": key[0], "kind": key[1], **obj}
