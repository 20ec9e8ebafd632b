"""PATCH bodies: JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic merge patch.

The strategic merge patch reads each list's strategy and merge key from the official
schema (``x-kubernetes-patch-strategy`` / ``x-kubernetes-patch-merge-key``), so
containers, env, volumes, ports, conditions... merge by key as on a real server, and
it honours the directives ``kubectl apply`` sends (``$patch``, ``$retainKeys``,
``$setElementOrder/<list>``, ``$deleteFromPrimitiveList/<list>``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from .errors import ApiError

Schema = dict[str, Any]
Resolve = Callable[[Schema | None], Schema | None]


def _unprocessable(message: str) -> ApiError:
    return ApiError(422, "Invalid", message)


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise _unprocessable(f"json patch: invalid path {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _index(container: list, token: str, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(container)
    if not token.isdigit():
        raise _unprocessable(f"json patch: invalid array index {token!r}")
    i = int(token)
    if i > len(container) or (i == len(container) and not allow_end):
        raise _unprocessable(f"json patch: array index {i} out of bounds")
    return i


def _walk(doc: Any, tokens: list[str], path: str) -> Any:
    cur = doc
    for t in tokens:
        if isinstance(cur, dict) and t in cur:
            cur = cur[t]
        elif isinstance(cur, list):
            cur = cur[_index(cur, t, False)]
        else:
            raise _unprocessable(f"json patch: path {path!r} does not exist")
    return cur


def _get(doc: Any, path: str) -> Any:
    return _walk(doc, _pointer(path), path)


def _add(doc: Any, path: str, value: Any) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return value
    parent = _walk(doc, tokens[:-1], path)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, True), value)
    else:
        raise _unprocessable(f"json patch: cannot add at {path!r}")
    return doc


def _remove(doc: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        raise _unprocessable("json patch: cannot remove the whole document")
    parent = _walk(doc, tokens[:-1], path)
    last = tokens[-1]
    if isinstance(parent, dict) and last in parent:
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, False))
    raise _unprocessable(f"json patch: path {path!r} does not exist")


def json_patch(doc: Any, ops: Any) -> Any:
    if not isinstance(ops, list):
        raise ApiError(400, "BadRequest", "json patch: the body must be a JSON array of operations")
    doc = copy.deepcopy(doc)
    for n, op in enumerate(ops):
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise ApiError(400, "BadRequest", f"json patch: operation {n} needs 'op' and 'path'")
        kind, path = op["op"], op["path"]
        if kind in ("add", "replace", "test") and "value" not in op:
            raise ApiError(400, "BadRequest", f"json patch: operation {n} ({kind}) needs 'value'")
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind == "remove":
            _remove(doc, path)
        elif kind == "replace":
            _get(doc, path)
            if _pointer(path):
                _remove(doc, path)
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind == "move":
            value = _remove(doc, op["from"])
            doc = _add(doc, path, value)
        elif kind == "copy":
            doc = _add(doc, path, copy.deepcopy(_get(doc, op["from"])))
        elif kind == "test":
            if _get(doc, path) != op["value"]:
                raise _unprocessable(f"json patch: test failed at {path!r}")
        else:
            raise ApiError(400, "BadRequest", f"json patch: unknown operation {kind!r}")
    return doc


_DELETE = object()


def strategic_merge(target: Any, patch: Any, schema: Schema | None, resolve: Resolve) -> Any:
    """Apply a strategic merge patch to ``target`` under the object ``schema``."""
    result = _smp_map(target if isinstance(target, dict) else {}, patch, resolve(schema), resolve)
    return {} if result is _DELETE else result


def _prop(schema: Schema | None, key: str, resolve: Resolve) -> Schema | None:
    if not schema:
        return None
    props = schema.get("properties") or {}
    if key in props:
        return resolve(props[key])
    extra = schema.get("additionalProperties")
    return resolve(extra) if isinstance(extra, dict) else None


def _smp_map(target: dict, patch: dict, schema: Schema | None, resolve: Resolve) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "delete":
        return _DELETE
    if directive == "replace":
        return {k: v for k, v in patch.items() if k != "$patch"}
    out = dict(target)
    orders: dict[str, list] = {}
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys"):
            continue
        if key.startswith("$setElementOrder/"):
            orders[key.split("/", 1)[1]] = value
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            out[name] = [x for x in out.get(name) or [] if x not in value]
            continue
        if value is None:
            out.pop(key, None)
            continue
        sub = _prop(schema, key, resolve)
        if isinstance(value, dict):
            merged = _smp_map(out.get(key) if isinstance(out.get(key), dict) else {}, value, sub,
                              resolve)
            if merged is _DELETE:
                out.pop(key, None)
            else:
                out[key] = merged
        elif isinstance(value, list):
            out[key] = _smp_list(out.get(key) if isinstance(out.get(key), list) else [], value,
                                 sub, resolve)
        else:
            out[key] = value
    retain = patch.get("$retainKeys")
    if isinstance(retain, list):
        out = {k: v for k, v in out.items() if k in retain}
    for name, order in orders.items():
        if isinstance(out.get(name), list):
            out[name] = _reorder(out[name], order, _prop(schema, name, resolve))
    return out


def _strategy(schema: Schema | None) -> tuple[str, str | None]:
    if not schema:
        return "", None
    return schema.get("x-kubernetes-patch-strategy", ""), schema.get("x-kubernetes-patch-merge-key")


def _smp_list(target: list, patch: list, schema: Schema | None, resolve: Resolve) -> list:
    strategy, merge_key = _strategy(schema)
    if "merge" not in strategy.split(","):
        return [_strip(v) for v in patch if not (isinstance(v, dict) and "$patch" in v)]
    if any(isinstance(v, dict) and v.get("$patch") == "replace" for v in patch):
        return [_strip(v) for v in patch if not (isinstance(v, dict) and "$patch" in v)]
    if not merge_key:      # a list of scalars: union, keeping order
        out = list(target)
        for v in patch:
            if v not in out:
                out.append(v)
        return out
    item_schema = resolve((schema or {}).get("items"))
    out = list(target)
    for item in patch:
        if not isinstance(item, dict):
            raise _unprocessable(f"strategic merge patch: list items must be objects keyed by "
                                 f"{merge_key!r}")
        pos = next((i for i, cur in enumerate(out)
                    if isinstance(cur, dict) and cur.get(merge_key) == item.get(merge_key)), None)
        if item.get("$patch") == "delete":
            if pos is not None:
                out.pop(pos)
            continue
        if pos is None:
            out.append(_strip(item))
        else:
            merged = _smp_map(out[pos], item, item_schema, resolve)
            if merged is _DELETE:
                out.pop(pos)
            else:
                out[pos] = merged
    return out


def _reorder(items: list, order: list, schema: Schema | None) -> list:
    _, merge_key = _strategy(schema)

    def ident(x: Any) -> Any:
        return x.get(merge_key) if merge_key and isinstance(x, dict) else x
    wanted = [ident(o) for o in order]
    ranked = sorted(range(len(items)), key=lambda i: (
        wanted.index(ident(items[i])) if ident(items[i]) in wanted else len(wanted), i))
    return [items[i] for i in ranked]


def _strip(value: Any) -> Any:
    """Drop patch directives from a value inserted as a whole."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value
