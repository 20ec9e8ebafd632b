"""knative/crd.yaml and examples/workflows/: the examples pass the CRD's schema (with the API
server's pruning of unknown fields) and shared.workflow.validate(); the invalid one does not."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest

from shared import workflow as wf

from .helpers import CRD_FILE, EXAMPLES_DIR, load_yaml, make_workflow

EXAMPLES = sorted(EXAMPLES_DIR.glob("*.yaml"))
INVALID_EXAMPLE = EXAMPLES_DIR / "invalid" / "missing-image.yaml"
PRESERVE = "x-kubernetes-preserve-unknown-fields"


def crd() -> dict:
    return load_yaml(CRD_FILE)


def schema() -> dict:
    (version,) = crd()["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]


def schema_errors(obj: Any) -> list[str]:
    """Where the CRD's openAPIV3Schema refuses `obj` (x-kubernetes-* keywords are ignored
    by jsonschema, as they carry no validation)."""
    validator = jsonschema.Draft4Validator(schema(), format_checker=jsonschema.FormatChecker())
    return sorted("/".join(map(str, e.absolute_path)) or "<root>"
                  for e in validator.iter_errors(obj))


def prune(value: Any, node: dict, root: bool = False) -> Any:
    """What the API server stores: unknown fields dropped unless the schema preserves them."""
    if isinstance(value, dict) and node.get("type", "object") == "object":
        known = node.get("properties", {})
        if root:  # apiVersion, kind and metadata are never pruned at the root
            known = {**known, "apiVersion": {}, "kind": {}, "metadata": {PRESERVE: True}}
        if node.get(PRESERVE) or "additionalProperties" in node:
            extra = node.get("additionalProperties")
            default = extra if isinstance(extra, dict) else {PRESERVE: True}
            return {k: prune(v, known.get(k, default)) for k, v in value.items()}
        return {k: prune(v, known[k]) for k, v in value.items() if k in known}
    if isinstance(value, list) and "items" in node:
        return [prune(v, node["items"]) for v in value]
    return value


def example_ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def test_there_are_at_least_three_examples():
    assert len(EXAMPLES) >= 3


def test_crd_is_a_valid_custom_resource_definition():
    definition = crd()
    assert kubernetes_validate.validate(definition, "1.32", strict=True)
    assert definition["metadata"]["name"] == "workflows.oceanprotocol.com"
    spec = definition["spec"]
    assert (spec["group"], spec["scope"], spec["names"]["kind"]) == (
        wf.GROUP, "Namespaced", wf.KIND)
    assert spec["names"]["plural"] == wf.PLURAL
    (version,) = spec["versions"]
    assert version["name"] == wf.VERSION and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    columns = {c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert {".status.statusCode", ".status.statusText", ".metadata.creationTimestamp"} <= columns


def _untyped_nodes(node: dict, path: str) -> list[str]:
    found = []
    if "type" not in node and not node.get(PRESERVE) and \
            not node.get("x-kubernetes-int-or-string"):
        found.append(path)
    for key, child in node.get("properties", {}).items():
        found += _untyped_nodes(child, f"{path}.{key}")
    if isinstance(node.get("items"), dict):
        found += _untyped_nodes(node["items"], f"{path}[]")
    return found


def test_schema_is_structural():
    """Every node has a type unless it preserves unknown fields (apiextensions/v1 rule)."""
    assert _untyped_nodes(schema(), "") == []


@pytest.mark.parametrize("path", EXAMPLES, ids=example_ids(EXAMPLES))
def test_example_passes_the_crd_schema_unchanged(path):
    example = load_yaml(path)
    assert (example["apiVersion"], example["kind"]) == (wf.API_VERSION, wf.KIND)
    assert schema_errors(example) == []
    assert prune(example, schema(), root=True) == example  # nothing would be dropped


@pytest.mark.parametrize("path", EXAMPLES, ids=example_ids(EXAMPLES))
def test_example_passes_validate(path):
    wf.validate(load_yaml(path))


def test_examples_cover_the_ocean_input_and_algorithm_kinds():
    stages = {p.name: wf.stage(load_yaml(p)) for p in EXAMPLES}
    inputs = [item for stage in stages.values() for item in stage.get("input", [])]
    assert any(isinstance(item.get("url"), list) for item in inputs)
    assert any(isinstance(item.get("url"), str) for item in inputs)
    assert any("remote" in item for item in inputs)
    algorithms = [stage["algorithm"] for stage in stages.values()]
    assert any("remote" in a for a in algorithms)
    assert any(len(a.get("rawcode") or "") > 10 and a.get("algocustomdata") for a in algorithms)
    known = {"index", "input", "algorithm", "compute", "output"}
    assert any(set(stage) - known for stage in stages.values())
    assert any("@sha256:" in wf.algorithm_image(load_yaml(p)) for p in EXAMPLES)


def test_unknown_fields_are_kept_only_where_the_schema_preserves_them():
    workflow = make_workflow()
    stage = wf.stage(workflow)
    stage["futureField"] = {"a": [1]}
    stage["input"][0]["extra"] = "kept"
    stage["algorithm"]["container"]["labels"] = {"x": "y"}
    workflow["spec"]["notInTheSchema"] = True
    workflow["status"] = {"statusCode": 1, "bogus": "dropped"}
    stored = prune(workflow, schema(), root=True)
    stored_stage = wf.stage(stored)
    assert stored_stage["futureField"] == {"a": [1]}
    assert stored_stage["input"][0]["extra"] == "kept"
    assert stored_stage["algorithm"]["container"]["labels"] == {"x": "y"}
    assert "notInTheSchema" not in stored["spec"]
    assert stored["status"] == {"statusCode": 1}


def test_invalid_example_is_refused_by_validate_naming_the_field():
    with pytest.raises(wf.InvalidWorkflow) as caught:
        wf.validate(load_yaml(INVALID_EXAMPLE))
    assert caught.value.errors == ["spec.metadata.stages[0].algorithm.container.image: required"]


def test_invalid_example_is_refused_by_the_crd_where_the_schema_requires_the_image():
    container_schema = schema()["properties"]["spec"]["properties"]["metadata"]["properties"][
        "stages"]["items"]["properties"]["algorithm"]["properties"]["container"]
    required = "image" in container_schema.get("required", [])
    errors = schema_errors(load_yaml(INVALID_EXAMPLE))
    assert bool(errors) == required
    if required:
        assert errors == ["spec/metadata/stages/0/algorithm/container"]


def _mutated(change) -> dict:
    workflow = copy.deepcopy(load_yaml(EXAMPLES_DIR / "url-inputs.yaml"))
    change(workflow)
    return workflow


CRD_REFUSES = [
    ("no spec", lambda w: w.pop("spec"), "<root>"),
    ("no stages", lambda w: w["spec"]["metadata"].pop("stages"), "spec/metadata"),
    ("empty stages", lambda w: w["spec"]["metadata"].update(stages=[]),
     "spec/metadata/stages"),
    ("no algorithm", lambda w: wf.stage(w).pop("algorithm"), "spec/metadata/stages/0"),
    ("input without id", lambda w: wf.stage(w)["input"][0].pop("id"),
     "spec/metadata/stages/0/input/0"),
    ("maxtime 0", lambda w: wf.stage(w)["compute"].update(maxtime=0),
     "spec/metadata/stages/0/compute/maxtime"),
    ("maxtime text", lambda w: wf.stage(w)["compute"].update(maxtime="3600"),
     "spec/metadata/stages/0/compute/maxtime"),
    ("stopRequested text", lambda w: w["spec"].update(stopRequested="yes"),
     "spec/stopRequested"),
    ("secret number", lambda w: w["spec"].update(secret=1234), "spec/secret"),
    ("image number", lambda w: wf.stage(w)["algorithm"]["container"].update(image=5),
     "spec/metadata/stages/0/algorithm/container/image"),
    ("bad phase", lambda w: w.update(status={"phase": "Done"}), "status/phase"),
    ("bad result type", lambda w: w.update(status={"results": [
        {"index": 0, "filename": "a", "type": "configrationLog"}]}), "status/results/0/type"),
]


@pytest.mark.parametrize("case, change, where", CRD_REFUSES, ids=[c for c, _, _ in CRD_REFUSES])
def test_crd_refuses(case, change, where):
    assert schema_errors(_mutated(change)) == [where]


# ---------------------------------------------------------------- on a real API server

try:
    from devstack.apiserver import APIServer
    from devstack.kubeconfig import write_kubeconfig
except ImportError as error:  # pragma: no cover - only while devstack is being built
    APIServer = None
    SKIP_REASON = f"devstack.apiserver cannot be imported yet ({error})"
else:
    SKIP_REASON = ""

needs_apiserver = pytest.mark.skipif(APIServer is None, reason=SKIP_REASON)


@pytest.fixture(scope="module")
def kube_client(tmp_path_factory):
    from shared import kube
    from shared.connection import connect

    srv = APIServer(crd_files=[CRD_FILE], log_dir=tmp_path_factory.mktemp("logs"))
    url = srv.start()
    try:
        yield kube.Kube(connect(str(write_kubeconfig(
            url, tmp_path_factory.mktemp("kube") / "config"))))
    finally:
        srv.stop()


@needs_apiserver
@pytest.mark.parametrize("path", EXAMPLES, ids=example_ids(EXAMPLES))
def test_api_server_stores_the_example_as_written(kube_client, path):
    example = load_yaml(path)
    example["metadata"]["namespace"] = "default"
    stored = kube_client.create(copy.deepcopy(example))
    assert stored["spec"] == example["spec"]


@needs_apiserver
def test_api_server_refuses_what_the_schema_refuses(kube_client):
    from shared.kube import KubeError

    body = _mutated(lambda w: wf.stage(w).pop("algorithm"))
    body["metadata"].update(name="no-algorithm", namespace="default")
    with pytest.raises(KubeError) as caught:
        kube_client.create(body)
    assert caught.value.status == 422
