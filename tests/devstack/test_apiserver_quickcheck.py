"""The quick schema check: it passes what the engine writes, and never passes what
jsonschema would refuse (whatever it does not pass, jsonschema decides)."""

from __future__ import annotations

import copy
import random
from pathlib import Path
from typing import Any

import pytest
import yaml

from devstack.apiserver import schemas
from devstack.apiserver.quickcheck import Compiler
from devstack.kubelet import status
from shared import manifests
from tests.unit.helpers import load_settings, make_workflow

ROOT = Path(__file__).resolve().parents[2]
BUILT_IN = {"v1", "batch/v1", "rbac.authorization.k8s.io/v1", "networking.k8s.io/v1",
            "apiextensions.k8s.io/v1"}


def _pod_of(job: dict, state: dict) -> dict:
    """The Pod the Job controller makes from `job`, as the kubelet reports it."""
    spec = job["spec"]["template"]["spec"]
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": job["metadata"]["name"] + "-abcde", "namespace": "default",
                     "labels": {**job["spec"]["template"]["metadata"]["labels"],
                                "job-name": job["metadata"]["name"]},
                     "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job",
                                          "name": job["metadata"]["name"], "uid": "u",
                                          "controller": True}]},
        "spec": {**spec, "nodeName": "c2d-node"},
        "status": {"phase": "Running", "startTime": status.now(),
                   "conditions": [{"type": "Ready", "status": "True",
                                   "lastTransitionTime": status.now()}],
                   "containerStatuses": [{"name": c["name"], "image": c["image"],
                                          "imageID": "", "ready": True, "restartCount": 0,
                                          "state": state} for c in spec["containers"]]},
    }


def _corpus() -> list[dict]:
    """Every built-in object the engine creates, its pods, and the deploy manifests."""
    config = load_settings({"FILTERING_CONTAINER": "filter:1", "NODE_SELECTOR": "disk=ssd",
                            "PULL_SECRET": "registry"})
    workflow = make_workflow()
    workflow["metadata"]["uid"] = "4b1c3f7e-0000-4000-8000-000000000000"
    objects = [obj for stage in ("configure", "algorithm", "filter", "publish")
               for obj in manifests.for_stage(workflow, config, stage)]
    for job in [obj for obj in objects if obj["kind"] == "Job"]:
        objects.append(_pod_of(job, status.running(status.now())))
        objects.append(_pod_of(job, status.terminated(0, "Completed", status.now(), "{}")))
    for path in sorted((ROOT / "knative").glob("*.yaml")):
        objects += [doc for doc in yaml.safe_load_all(path.read_text())
                    if doc and doc.get("apiVersion") in BUILT_IN]
    return objects


CORPUS = _corpus()


def _errors(obj: dict) -> list[Any]:
    return list(schemas.validator(obj["apiVersion"], obj["kind"]).iter_errors(obj))


def test_the_corpus_is_valid_and_covers_the_kinds_the_engine_writes() -> None:
    kinds = {obj["kind"] for obj in CORPUS}
    assert {"Job", "Pod", "ConfigMap", "Secret", "PersistentVolumeClaim", "NetworkPolicy",
            "Role", "ServiceAccount"} <= kinds
    for obj in CORPUS:
        assert _errors(obj) == [], obj["kind"]


@pytest.mark.parametrize("obj", CORPUS, ids=lambda o: f"{o['kind']}-{o['metadata']['name']}")
def test_what_the_engine_writes_passes_quickly(obj: dict) -> None:
    assert schemas.quick_check(obj["apiVersion"], obj["kind"])(obj)


def _nodes(value: Any, path: tuple = ()) -> list[tuple]:
    found = [path]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _nodes(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _nodes(item, (*path, index))
    return found


def _at(value: Any, path: tuple) -> Any:
    for step in path:
        value = value[step]
    return value


REPLACEMENTS = ["text", "", 7, 0, -1, 1.0, 2.5, True, False, None, {}, {"x": 1}, [], ["a"],
                [{}], "Always", "Never", "TCP"]


def _mutate(obj: dict, rng: random.Random) -> dict:
    """One random change: a value swapped for another of any type, an unknown key added,
    a key removed (a required one, at times), a list emptied or its item doubled."""
    changed = copy.deepcopy(obj)
    # apiVersion and kind pick the schema; the API server checks them first.
    path = rng.choice([p for p in _nodes(changed)[1:] if p[0] not in ("apiVersion", "kind")])
    parent, last = _at(changed, path[:-1]), path[-1]
    move = rng.randrange(4)
    if move == 0:
        parent[last] = copy.deepcopy(rng.choice(REPLACEMENTS))
    elif move == 1 and isinstance(parent[last], dict):
        parent[last][rng.choice(["unknown", "name", "image", "spec", "type"])] = \
            rng.choice(REPLACEMENTS)
    elif move == 2 and isinstance(parent, dict):
        del parent[last]
    elif isinstance(parent[last], list) and parent[last]:
        parent[last].append(copy.deepcopy(parent[last][0]) if rng.random() < 0.5 else 3)
    else:
        parent[last] = copy.deepcopy(rng.choice(REPLACEMENTS))
    return changed


def test_never_passes_what_jsonschema_refuses() -> None:
    rng = random.Random(20261130)
    refused = passed = 0
    for _ in range(4000):
        obj = _mutate(rng.choice(CORPUS), rng)
        quick = schemas.quick_check(obj["apiVersion"], obj["kind"])(obj)
        errors = _errors(obj)
        assert not (quick and errors), (obj, errors[0].message)
        refused += bool(errors)
        passed += quick
    # The mutations must exercise both answers, or the loop above proves nothing.
    assert refused > 1000 and passed > 1000, (refused, passed)


DEFINITIONS = {
    "Tree": {"type": "object", "properties": {"children": {"type": "array",
                                                            "items": {"$ref": "#/$defs/Tree"}}},
             "additionalProperties": False},
    "IntOrString": {"oneOf": [{"type": ["string", "null"]}, {"type": ["integer", "null"]}]},
}


@pytest.mark.parametrize("schema, value, expected", [
    ({"$ref": "#/$defs/Tree"}, {"children": [{"children": []}]}, True),
    ({"$ref": "#/$defs/Tree"}, {"children": [{"children": [{"leaf": 1}]}]}, False),
    ({"$ref": "#/$defs/IntOrString"}, 80, True),
    ({"$ref": "#/$defs/IntOrString"}, "http", True),
    ({"$ref": "#/$defs/IntOrString"}, None, False),      # both match: oneOf fails
    ({"$ref": "#/$defs/Missing"}, {}, False),
    ({"type": "integer"}, True, False),                    # a bool is not an integer
    ({"type": "integer"}, 1.0, False),                     # jsonschema decides this one
    ({"enum": [1]}, True, False),
    ({"enum": ["a", "b"]}, "c", False),
    ({"enum": ["a", None]}, None, True),
    ({"type": "object", "required": ["a"]}, {"b": 1}, False),
    ({"required": ["a"]}, "not an object", True),          # object keywords skip others
    ({"type": "string", "pattern": "^a$"}, "a", False),    # unknown keyword: not sure
    ({"type": "string", "format": "date-time", "description": "x"}, "no date", True),
    ({"additionalProperties": {"type": "string"}}, {"a": "b", "c": 1}, False),
])
def test_compiled_checks(schema: dict, value: Any, expected: bool) -> None:
    assert Compiler(DEFINITIONS).compile(schema)(value) is expected
