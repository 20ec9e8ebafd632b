"""Every manifest of knative/ validates strictly, and the kustomization builds.

Built-in kinds against the official Kubernetes schemas (kubernetes-validate,
strict: unknown fields fail) for the oldest and newest Kubernetes we support;
Knative kinds against the real CRDs in ../shared/reference/knative-crds/.
"""

from __future__ import annotations

import copy
import os

import kubernetes_validate
import pytest

from .manifests import (
    CRDS,
    KNATIVE,
    OVERLAYS,
    Doc,
    applied_documents,
    documents,
    is_knative,
    knative_problems,
    kubectl,
    kustomize,
    load_yaml,
)

# Knative 1.15 needs Kubernetes >= 1.28; check against that and the newest schemas.
KUBERNETES_VERSIONS = ("1.28", kubernetes_validate.utils.latest_version())
DOCS = documents()
BUILTIN = [d for d in DOCS if not is_knative(d.obj) and d.kind != "CustomResourceDefinition"]
KNATIVE_DOCS = [d for d in DOCS if is_knative(d.obj)]
needs_crds = pytest.mark.skipif(not CRDS.is_dir(),
                                reason=f"Knative CRDs not found at {CRDS} (shared/reference)")
needs_kubectl = pytest.mark.skipif(kubectl() is None, reason="kubectl is not installed")


def ids(docs: list[Doc]) -> list[str]:
    return [d.where for d in docs]


def test_knative_folder_has_every_kind_it_should():
    kinds = {d.kind for d in DOCS}
    assert {"Namespace", "ConfigMap", "ServiceAccount", "Role", "RoleBinding", "NetworkPolicy",
            "Service", "Broker", "ApiServerSource", "PingSource", "Trigger"} <= kinds


@pytest.mark.parametrize("doc", BUILTIN, ids=ids(BUILTIN))
@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_builtin_object_validates_strictly(doc: Doc, version: str):
    kubernetes_validate.validate(doc.obj, version, strict=True)


def test_strict_validation_rejects_an_unknown_field():
    role = next(copy.deepcopy(d.obj) for d in BUILTIN if d.kind == "Role")
    role["rules"][0]["verb"] = ["get"]  # misspelt `verbs`
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(role, KUBERNETES_VERSIONS[0], strict=True)


@needs_crds
@pytest.mark.parametrize("doc", KNATIVE_DOCS, ids=ids(KNATIVE_DOCS))
def test_knative_object_matches_its_crd(doc: Doc):
    assert knative_problems(doc.obj) == []


@needs_crds
@pytest.mark.parametrize("change, expected", [
    (lambda t: t["spec"].__setitem__("fliters", []), "spec.fliters: unknown field"),
    (lambda t: t["spec"]["delivery"].__setitem__("retry", "6"), "spec.delivery.retry: expected"),
    (lambda t: t["spec"]["subscriber"]["ref"].__setitem__("nmae", "x"),
     "spec.subscriber.ref.nmae: unknown field"),
    (lambda t: t["spec"].__setitem__("filters", {"exact": {}}), "spec.filters: expected array"),
    (lambda t: t["metadata"].__setitem__("labels", {"a": 1}), "metadata.labels.a"),
    (lambda t: t.__setitem__("apiVersion", "eventing.knative.dev/v2"), "no served CRD version"),
], ids=["misspelt field", "wrong type", "nested unknown", "filters not a list", "label type",
        "unknown version"])
def test_crd_check_rejects_hostile_triggers(change, expected: str):
    trigger = copy.deepcopy(next(d.obj for d in KNATIVE_DOCS if d.kind == "Trigger"))
    change(trigger)
    problems = knative_problems(trigger)
    assert any(expected in p for p in problems), problems


@needs_crds
def test_crd_check_requires_required_fields():
    source = copy.deepcopy(next(d.obj for d in KNATIVE_DOCS if d.kind == "ApiServerSource"))
    del source["spec"]["resources"]
    assert "spec: missing required field 'resources'" in knative_problems(source)


def test_crd_is_applied_but_not_edited_here():
    applied = {d.path.name for d in applied_documents()}
    assert "crd.yaml" in applied
    assert "secrets.example.yaml" not in applied, "the secret example must never be applied"


def test_every_manifest_file_is_applied():
    """A manifest left out of the kustomization would silently not be installed."""
    applied = {d.path.name for d in applied_documents()}
    on_disk = {p.name for p in KNATIVE.glob("*.yaml")} - {"kustomization.yaml"}
    assert on_disk - applied == {"secrets.example.yaml"}


def build_targets() -> list:
    return [KNATIVE] + sorted(p for p in OVERLAYS.iterdir() if p.is_dir())


@needs_kubectl
@pytest.mark.parametrize("folder", build_targets(), ids=lambda p: p.name)
def test_kustomization_builds_valid_objects(folder):
    built = kustomize(folder)
    assert not [o for o in built if o["kind"] == "Secret"], "no Secret values are shipped"
    names = {(o["kind"], o["metadata"]["name"]) for o in built}
    assert ("Service", "c2d-configure") in names and ("Trigger", "c2d-publish-job") in names
    namespaces = {o["metadata"].get("namespace") for o in built
                  if o["kind"] not in ("Namespace", "CustomResourceDefinition")}
    [namespace] = namespaces
    assert [o["metadata"]["name"] for o in built if o["kind"] == "Namespace"] == [namespace]
    for obj in built:
        if is_knative(obj):
            if CRDS.is_dir():
                assert knative_problems(obj) == [], obj["metadata"]["name"]
        elif obj["kind"] != "CustomResourceDefinition":
            kubernetes_validate.validate(obj, KUBERNETES_VERSIONS[-1], strict=True)


def derived(built: list[dict]) -> dict[str, str]:
    config = next(o for o in built if o["kind"] == "ConfigMap")["data"]
    services = [o for o in built if o["kind"] == "Service"]
    images = {c["image"] for s in services for c in s["spec"]["template"]["spec"]["containers"]}
    [image] = images
    [ping] = [o for o in built if o["kind"] == "PingSource"]
    return {"image": image, "schedule": ping["spec"]["schedule"], **config}


@needs_kubectl
@pytest.mark.parametrize("folder", build_targets(), ids=lambda p: p.name)
def test_derived_values_follow_their_source(folder):
    """Namespace, image and schedule are set in one place and copied where needed."""
    built = kustomize(folder)
    values = derived(built)
    assert values["POD_CONFIGURATION_CONTAINER"] == values["image"]
    assert values["POD_PUBLISH_CONTAINER"] == values["image"]
    assert values["image"] != "c2d", "the image placeholder must be replaced"
    assert values["schedule"] == values["RESYNC_SCHEDULE"]
    namespace = next(o for o in built if o["kind"] == "Namespace")["metadata"]["name"]
    assert values["C2D_NAMESPACE"] == namespace
    for binding in (o for o in built if o["kind"] == "RoleBinding"):
        assert {s["namespace"] for s in binding["subjects"]} == {namespace}, binding


@needs_kubectl
def test_overlay_can_move_everything_to_another_namespace(tmp_path):
    """An overlay of our own: image, namespace and schedule changed in one place each."""
    overlay = tmp_path / "mine"
    overlay.mkdir()
    base = os.path.relpath(KNATIVE, overlay)  # kustomize refuses absolute paths to bases
    (overlay / "kustomization.yaml").write_text(f"""
resources: [{base}]
images: [{{name: registry.example.com/c2d, newName: example.org/team/c2d, newTag: "9.9"}}]
patches:
  - patch: |-
      {{apiVersion: v1, kind: ConfigMap, metadata: {{name: c2d-config}},
       data: {{RESYNC_SCHEDULE: "*/5 * * * *"}}}}
transformers:
  - |-
    apiVersion: builtin
    kind: NamespaceTransformer
    metadata: {{name: namespace, namespace: elsewhere}}
    setRoleBindingSubjects: allServiceAccounts
    unsetOnly: false
  - {base}/derived
""")
    built = kustomize(overlay)
    values = derived(built)
    assert values["image"] == "example.org/team/c2d:9.9" == values["POD_PUBLISH_CONTAINER"]
    assert values["schedule"] == "*/5 * * * *"
    assert values["C2D_NAMESPACE"] == "elsewhere"
    assert {o["metadata"].get("namespace") for o in built} == {"elsewhere", None}
    assert "c2d" not in {s["namespace"] for o in built if o["kind"] == "RoleBinding"
                         for s in o["subjects"]}


def test_secret_example_holds_no_values():
    [secret] = load_yaml(KNATIVE / "secrets.example.yaml")
    assert secret["metadata"]["name"] == "c2d-secrets"
    assert set(secret["stringData"]) == {"OPERATOR_PRIVATE_KEY", "AWS_ACCESS_KEY_ID",
                                         "AWS_SECRET_ACCESS_KEY", "IPFS_API_KEY",
                                         "IPFS_API_CLIENT"}
    assert set(secret["stringData"].values()) == {""}
    assert "data" not in secret
