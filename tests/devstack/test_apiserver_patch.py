"""PATCH over HTTP: JSON merge patch, JSON patch and strategic merge patch."""

from __future__ import annotations

import json

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from devstack.apiserver import schemas
from devstack.apiserver.patch import strategic_merge

from .conftest import workflow_manifest

SMP = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"
JSONPATCH = "application/json-patch+json"


def _pod(core: client.CoreV1Api) -> None:
    core.create_namespaced_pod("default", {"metadata": {"name": "p", "labels": {"a": "1"}},
                                           "spec": {"containers": [
        {"name": "main", "image": "busybox:1", "env": [{"name": "A", "value": "1"},
                                                       {"name": "B", "value": "2"}],
         "ports": [{"containerPort": 80}]},
        {"name": "side", "image": "busybox:1"}]}})


def test_strategic_merge_merges_lists_by_key(core: client.CoreV1Api) -> None:
    _pod(core)
    pod = core.patch_namespaced_pod("p", "default", {"spec": {"containers": [
        {"name": "main", "image": "busybox:2"}]}}, _content_type=SMP)
    main, side = pod.spec.containers
    assert (main.name, main.image, side.name, side.image) == ("main", "busybox:2", "side",
                                                              "busybox:1")
    assert [(e.name, e.value) for e in main.env] == [("A", "1"), ("B", "2")]
    core.patch_namespaced_pod_status("p", "default", {"status": {"conditions": [
        {"type": "Ready", "status": "False"}, {"type": "Initialized", "status": "True"}]}},
        _content_type=SMP)
    pod = core.patch_namespaced_pod_status("p", "default", {"status": {"conditions": [
        {"type": "Ready", "status": "True"}]}}, _content_type=SMP)
    assert [(c.type, c.status) for c in pod.status.conditions] == [
        ("Ready", "True"), ("Initialized", "True")]


def test_strategic_merge_directives(core: client.CoreV1Api) -> None:
    _pod(core)
    core.patch_namespaced_pod_status("p", "default", {"status": {"conditions": [
        {"type": "Ready", "status": "False"}, {"type": "Initialized", "status": "True"},
        {"type": "PodScheduled", "status": "True"}]}}, _content_type=SMP)
    pod = core.patch_namespaced_pod_status("p", "default", {
        "status": {"$setElementOrder/conditions": [{"type": "PodScheduled"},
                                                   {"type": "Ready"}],
                   "conditions": [{"type": "Initialized", "$patch": "delete"}]}},
        _content_type=SMP)
    assert [c.type for c in pod.status.conditions] == ["PodScheduled", "Ready"]
    pod = core.patch_namespaced_pod("p", "default", {
        "metadata": {"labels": {"a": None, "b": "2"}, "finalizers": ["x.io/one"]}},
        _content_type=SMP)
    pod = core.patch_namespaced_pod("p", "default", {
        "metadata": {"finalizers": ["x.io/two"]}}, _content_type=SMP)
    assert pod.metadata.labels == {"b": "2"}
    assert pod.metadata.finalizers == ["x.io/one", "x.io/two"]      # merged like a set
    pod = core.patch_namespaced_pod("p", "default", {
        "metadata": {"$deleteFromPrimitiveList/finalizers": ["x.io/one", "x.io/two"]}},
        _content_type=SMP)
    assert not pod.metadata.finalizers


def test_strategic_merge_against_the_official_schema() -> None:
    top = schemas.kind_schema("batch/v1", "Job")
    job = {"spec": {"template": {"spec": {
        "volumes": [{"name": "data", "emptyDir": {}}],
        "containers": [{"name": "c", "image": "x",
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}}}}
    out = strategic_merge(job, {"spec": {"template": {"spec": {
        "volumes": [{"name": "logs", "emptyDir": {}}],
        "containers": [{"name": "c", "volumeMounts": [{"name": "logs",
                                                       "mountPath": "/logs"}]}]}}}},
        top, schemas.resolve)
    spec = out["spec"]["template"]["spec"]
    assert [v["name"] for v in spec["volumes"]] == ["data", "logs"]
    assert [m["mountPath"] for m in spec["containers"][0]["volumeMounts"]] == ["/data", "/logs"]
    out = strategic_merge(out, {"spec": {"template": {"spec": {
        "$setElementOrder/volumes": [{"name": "logs"}, {"name": "data"}],
        "volumes": [{"name": "data", "$patch": "delete"}]}}}}, top, schemas.resolve)
    assert [v["name"] for v in out["spec"]["template"]["spec"]["volumes"]] == ["logs"]
    # A list without a merge strategy (command) is replaced, not merged.
    out = strategic_merge({"spec": {"template": {"spec": {"containers": [
        {"name": "c", "command": ["a", "b"]}]}}}}, {"spec": {"template": {"spec": {
            "containers": [{"name": "c", "command": ["z"]}]}}}}, top, schemas.resolve)
    assert out["spec"]["template"]["spec"]["containers"][0]["command"] == ["z"]


def test_merge_patch_replaces_lists(core: client.CoreV1Api) -> None:
    _pod(core)
    pod = core.patch_namespaced_pod("p", "default", {"metadata": {"annotations": {"x": "y"}}},
                                    _content_type=MERGE)
    assert pod.metadata.annotations == {"x": "y"}
    with pytest.raises(ApiException) as err:      # a whole new container list: immutable
        core.patch_namespaced_pod("p", "default", {"spec": {"containers": [
            {"name": "only", "image": "x"}]}}, _content_type=MERGE)
    assert err.value.status == 422


def test_json_patch(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "j"},
                                                  "data": {"a": "1", "b": "2"}})
    cm = core.patch_namespaced_config_map("j", "default", [
        {"op": "test", "path": "/data/a", "value": "1"},
        {"op": "replace", "path": "/data/a", "value": "10"},
        {"op": "remove", "path": "/data/b"},
        {"op": "add", "path": "/metadata/labels", "value": {"ex.com/x": "v"}},
        {"op": "add", "path": "/metadata/labels/ex.com~1y", "value": "w"},
        {"op": "copy", "from": "/data/a", "path": "/data/c"}])
    assert cm.data == {"a": "10", "c": "10"}
    assert cm.metadata.labels == {"ex.com/x": "v", "ex.com/y": "w"}
    with pytest.raises(ApiException) as err:
        core.patch_namespaced_config_map("j", "default", [
            {"op": "test", "path": "/data/a", "value": "nope"}])
    assert err.value.status == 422
    with pytest.raises(ApiException) as err:
        core.patch_namespaced_config_map("j", "default", [
            {"op": "remove", "path": "/data/missing"}])
    assert err.value.status == 422


def test_json_patch_with_resource_version_test_is_compare_and_set(core) -> None:
    cm = core.create_namespaced_config_map("default", {"metadata": {"name": "cas"}})
    rv = cm.metadata.resource_version
    core.patch_namespaced_config_map("cas", "default", [
        {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
        {"op": "add", "path": "/data", "value": {"n": "1"}}])
    with pytest.raises(ApiException) as err:
        core.patch_namespaced_config_map("cas", "default", [
            {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
            {"op": "add", "path": "/data", "value": {"n": "2"}}])
    assert err.value.status == 422
    with pytest.raises(ApiException) as err:      # a stale resourceVersion in a merge patch
        core.patch_namespaced_config_map("cas", "default", {
            "metadata": {"resourceVersion": rv}, "data": {"n": "3"}}, _content_type=MERGE)
    assert err.value.status == 409


def test_custom_resources_refuse_strategic_merge(kube_api_client: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(kube_api_client)
    args = ("oceanprotocol.com", "v1alpha1", "default", "workflows")
    custom.create_namespaced_custom_object(*args, workflow_manifest("smp"))
    with pytest.raises(ApiException) as err:
        custom.patch_namespaced_custom_object(*args, "smp", {"spec": {"stopRequested": True}},
                                              _content_type=SMP)
    assert err.value.status == 415
    assert json.loads(err.value.body)["reason"] == "UnsupportedMediaType"
    wf = custom.patch_namespaced_custom_object(*args, "smp", [
        {"op": "add", "path": "/spec/stopRequested", "value": True}],
        _content_type=JSONPATCH)
    assert wf["spec"]["stopRequested"] is True


def test_unknown_patch_type_is_415(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "u"}})
    with pytest.raises(ApiException) as err:
        core.patch_namespaced_config_map("u", "default", {"data": {"a": "b"}},
                                         _content_type="application/apply-patch+yaml")
    assert err.value.status == 415
