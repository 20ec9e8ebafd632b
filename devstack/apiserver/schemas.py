"""The official JSON schemas of built-in kinds (from ``kubernetes-validate``), loaded once.

Validators are compiled once per kind and cached: building one costs ~8 ms, using one
well under that.
"""

from __future__ import annotations

import functools
import json
import re
import threading
from importlib import resources
from typing import Any

import jsonschema
from referencing import Registry, Resource

from .quickcheck import Check, Compiler

KUBERNETES_VERSION = "1.37.0"   # schemas and /version: the API level of the kubernetes client 37.x
_DIR = f"kubernetes-json-schema/v{KUBERNETES_VERSION}-local-strict"
_lock = threading.Lock()


def _load(name: str) -> dict[str, Any]:
    ref = resources.files("kubernetes_validate").joinpath(f"{_DIR}/{name}")
    return json.loads(ref.read_text(encoding="utf-8"))


@functools.cache
def definitions() -> dict[str, Any]:
    """All shared definitions, by name (e.g. ``io.k8s.api.core.v1.PodSpec``)."""
    return _load("_definitions.json")


def _file_name(api_version: str, kind: str) -> str:
    # batch/v1 -> batch-v1, networking.k8s.io/v1 -> networking-v1, v1 -> v1
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    return f"{kind.lower()}-{group_version}.json"


@functools.cache
def kind_schema(api_version: str, kind: str) -> dict[str, Any]:
    return _load(_file_name(api_version, kind))


def validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    with _lock:    # compile each validator once even when requests race
        return _validator(api_version, kind)


@functools.cache
def _validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    schema = kind_schema(api_version, kind)
    registry = Resource.from_contents(schema) @ Registry()
    registry = Resource.from_contents(definitions()) @ registry
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def quick_check(api_version: str, kind: str) -> Check:
    """True when an object surely satisfies the kind's schema (see quickcheck)."""
    with _lock:
        return _quick_check(api_version, kind)


@functools.cache
def _quick_check(api_version: str, kind: str) -> Check:
    return _compiler().compile(kind_schema(api_version, kind))


@functools.cache
def _compiler() -> Compiler:
    return Compiler(definitions()["$defs"])


def resolve(node: dict[str, Any] | None) -> dict[str, Any] | None:
    """Follow a ``$ref`` into the definitions, keeping the referring node's own keys."""
    if not node or "$ref" not in node:
        return node
    name = node["$ref"].rsplit("/", 1)[-1]
    target = definitions()["$defs"].get(name, {})
    merged = dict(resolve(target) or {})
    merged.update({k: v for k, v in node.items() if k != "$ref"})
    return merged


def definition_name(api_version: str, kind: str) -> str | None:
    """The definition name of a kind, e.g. ``io.k8s.api.batch.v1.Job``."""
    group, _, version = api_version.rpartition("/")
    for name, d in definitions()["$defs"].items():
        for gvk in d.get("x-kubernetes-group-version-kind", []):
            if gvk["group"] == group and gvk["version"] == version and gvk["kind"] == kind:
                return name
    return None
