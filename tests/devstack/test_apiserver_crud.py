"""Create/get/list/patch/update/delete of every served resource, over HTTP with the
official client, and the semantics around them (uid, resourceVersion, 409, 404,
generateName, generation, status subresource, selectors, validation)."""

from __future__ import annotations

import json
from typing import Any

import pytest
import urllib3
from kubernetes import client
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient

from .conftest import job_manifest, workflow_manifest

MERGE = "application/merge-patch+json"

MANIFESTS: list[dict[str, Any]] = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-a"}},
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm"}, "data": {"k": "v"}},
    {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "sec"},
     "stringData": {"token": "abc"}},
    {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "claim"},
     "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}},
    {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "pod"},
     "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["true"]}]}},
    {"apiVersion": "v1", "kind": "Event", "metadata": {"name": "ev"},
     "involvedObject": {"kind": "Pod", "name": "pod", "namespace": "default"},
     "reason": "Started", "message": "hello", "type": "Normal"},
    job_manifest("job"),
    {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "np"},
     "spec": {"podSelector": {"matchLabels": {"app": "x"}}, "policyTypes": ["Egress"]}},
    {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "lease"},
     "spec": {"holderIdentity": "me", "leaseDurationSeconds": 15}},
    {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
     "metadata": {"name": "widgets.example.com"},
     "spec": {"group": "example.com", "scope": "Namespaced",
              "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
              "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                  "openAPIV3Schema": {"type": "object", "properties": {
                      "spec": {"type": "object", "properties": {
                          "size": {"type": "integer", "minimum": 1}}}}}}}]}},
    workflow_manifest("wf"),
]


@pytest.fixture
def dyn(kube_api_client: client.ApiClient) -> DynamicClient:
    return DynamicClient(kube_api_client)


@pytest.mark.parametrize("manifest", MANIFESTS, ids=lambda m: m["kind"])
def test_every_resource_round_trip(dyn: DynamicClient, manifest: dict[str, Any]) -> None:
    res = dyn.resources.get(api_version=manifest["apiVersion"], kind=manifest["kind"])
    ns = "default" if res.namespaced else None
    name = manifest["metadata"]["name"]
    created = res.create(body=manifest, namespace=ns).to_dict()
    meta = created["metadata"]
    assert meta["uid"] and meta["creationTimestamp"] and int(meta["resourceVersion"]) > 0
    got = res.get(name=name, namespace=ns).to_dict()
    assert got["metadata"]["uid"] == meta["uid"]
    listed = res.get(namespace=ns).to_dict()
    assert name in [i["metadata"]["name"] for i in listed["items"]]
    assert int(listed["metadata"]["resourceVersion"]) >= int(meta["resourceVersion"])
    patched = res.patch(name=name, namespace=ns, body={"metadata": {"labels": {"tier": "x"}}},
                        content_type=MERGE).to_dict()
    assert patched["metadata"]["labels"]["tier"] == "x"
    assert int(patched["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])
    res.delete(name=name, namespace=ns, body={"gracePeriodSeconds": 0})
    # A Namespace is emptied by the collector and a Job's pods orphaned by it (the
    # `orphan` finalizer) before the object goes: wait for that, not a fixed moment.
    from devstack.testing import wait_until
    wait_until(lambda: name not in [i["metadata"]["name"] for i in res.get(namespace=ns)
                                  .to_dict()["items"]], what=f"{manifest['kind']} removed")
    with pytest.raises(ApiException) as err:
        res.get(name=name, namespace=ns)
    assert err.value.status == 404
    status = json.loads(err.value.body)
    assert status["kind"] == "Status" and status["reason"] == "NotFound"


def test_update_with_stale_resource_version_is_409(core: client.CoreV1Api) -> None:
    cm = core.create_namespaced_config_map("default", {"metadata": {"name": "c"},
                                                       "data": {"a": "1"}})
    first = core.read_namespaced_config_map("c", "default")
    first.data["a"] = "2"
    core.replace_namespaced_config_map("c", "default", first)
    cm.data["a"] = "3"          # still carries the original resourceVersion
    with pytest.raises(ApiException) as err:
        core.replace_namespaced_config_map("c", "default", cm)
    assert err.value.status == 409
    assert json.loads(err.value.body)["reason"] == "Conflict"
    assert core.read_namespaced_config_map("c", "default").data == {"a": "2"}


def test_already_exists_and_not_found(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "dup"}})
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map("default", {"metadata": {"name": "dup"}})
    assert err.value.status == 409 and json.loads(err.value.body)["reason"] == "AlreadyExists"
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map("nowhere", {"metadata": {"name": "x"}})
    assert err.value.status == 404
    assert json.loads(err.value.body)["message"] == 'namespaces "nowhere" not found'


def test_generate_name(core: client.CoreV1Api) -> None:
    names = {core.create_namespaced_config_map(
        "default", {"metadata": {"generateName": "gen-"}}).metadata.name for _ in range(5)}
    assert len(names) == 5 and all(n.startswith("gen-") and len(n) == 9 for n in names)


def test_resource_version_is_cluster_wide_and_monotonic(core: client.CoreV1Api,
                                                        batch: client.BatchV1Api) -> None:
    versions = [int(core.create_namespaced_config_map(
        "default", {"metadata": {"name": "m1"}}).metadata.resource_version),
        int(batch.create_namespaced_job("default", job_manifest("j1")).metadata.resource_version),
        int(core.create_namespaced_secret(
            "default", {"metadata": {"name": "s1"}}).metadata.resource_version)]
    assert versions == sorted(versions) and len(set(versions)) == 3


def test_generation_bumps_on_spec_change_only(batch: client.BatchV1Api) -> None:
    job = batch.create_namespaced_job("default", job_manifest("g"))
    assert job.metadata.generation == 1
    job = batch.patch_namespaced_job("g", "default", {"metadata": {"labels": {"a": "b"}}})
    assert job.metadata.generation == 1
    job = batch.patch_namespaced_job("g", "default", {"spec": {"backoffLimit": 2}})
    assert job.metadata.generation == 2 and job.spec.backoff_limit == 2
    same = batch.patch_namespaced_job("g", "default", {"spec": {"backoffLimit": 2}})
    assert same.metadata.resource_version == job.metadata.resource_version   # no-op write


def test_job_defaults_like_a_real_server(batch: client.BatchV1Api) -> None:
    job = batch.create_namespaced_job("default", job_manifest("d"))
    uid = job.metadata.uid
    assert job.spec.backoff_limit == 6 and job.spec.completions == 1
    assert job.spec.parallelism == 1 and job.spec.completion_mode == "NonIndexed"
    assert job.spec.selector.match_labels == {"batch.kubernetes.io/controller-uid": uid}
    labels = job.spec.template.metadata.labels
    assert labels["controller-uid"] == uid and labels["job-name"] == "d"
    assert labels["batch.kubernetes.io/job-name"] == "d"
    container = job.spec.template.spec.containers[0]
    assert container.termination_message_path == "/dev/termination-log"
    assert container.termination_message_policy == "File"
    assert container.image_pull_policy == "IfNotPresent"


def test_pod_defaults_like_a_real_server(core: client.CoreV1Api) -> None:
    pod = core.create_namespaced_pod("default", {"metadata": {"name": "p"}, "spec": {
        "containers": [{"name": "c", "image": "busybox", "command": ["true"]}]}})
    assert pod.spec.restart_policy == "Always" and pod.spec.dns_policy == "ClusterFirst"
    assert pod.spec.termination_grace_period_seconds == 30
    assert pod.spec.containers[0].image_pull_policy == "Always"      # no tag means :latest
    assert pod.status.phase == "Pending" and pod.status.qos_class == "BestEffort"


def test_status_subresource_separates_spec_and_status(batch: client.BatchV1Api) -> None:
    job = batch.create_namespaced_job("default", job_manifest("st"))
    batch.patch_namespaced_job_status("st", "default", {"status": {"active": 1},
                                                        "spec": {"backoffLimit": 1}})
    job = batch.read_namespaced_job("st", "default")
    assert job.status.active == 1 and job.spec.backoff_limit == 6
    batch.patch_namespaced_job("st", "default", {"status": {"active": 5},
                                                 "metadata": {"labels": {"x": "y"}}})
    job = batch.read_namespaced_job("st", "default")
    assert job.status.active == 1 and job.metadata.labels["x"] == "y"


@pytest.mark.parametrize("status, words", [
    ({"active": "one"}, "cannot unmarshal string into Go struct field Job.status.active"),
    ({"activ": 1}, 'unknown field "status.activ"'),
])
def test_a_status_write_checks_the_status(batch: client.BatchV1Api, status: dict,
                                          words: str) -> None:
    """Only the status is checked on /status (the rest is the stored object's), but it is."""
    batch.create_namespaced_job("default", job_manifest("sc"))
    stored = batch.api_client.sanitize_for_serialization(batch.read_namespaced_job("sc", "default"))
    answer = urllib3.request(
        "PUT", f"{batch.api_client.configuration.host}/apis/batch/v1/namespaces/default/jobs/"
        "sc/status", body=json.dumps({**stored, "status": status}),
        headers={"Content-Type": "application/json"})
    assert answer.status == 400 and words in json.loads(answer.data)["message"]
    assert batch.read_namespaced_job("sc", "default").status.active is None


def test_workflow_status_subresource(custom: client.CustomObjectsApi) -> None:
    args = ("oceanprotocol.com", "v1alpha1", "default", "workflows")
    custom.create_namespaced_custom_object(*args, workflow_manifest("w1"))
    custom.patch_namespaced_custom_object_status(*args, "w1", {"status": {
        "statusCode": 10, "statusText": "Job started", "phase": "Running"}})
    wf = custom.patch_namespaced_custom_object(*args, "w1", {"status": {"statusCode": 99},
                                                             "spec": {"stopRequested": True}})
    assert wf["status"]["statusCode"] == 10 and wf["spec"]["stopRequested"] is True
    assert wf["metadata"]["generation"] == 2


def test_label_selectors(core: client.CoreV1Api) -> None:
    for name, labels in [("a", {"app": "x", "tier": "1"}), ("b", {"app": "y"}),
                         ("c", {"tier": "2"})]:
        core.create_namespaced_config_map("default", {"metadata": {"name": name,
                                                                   "labels": labels}})

    def names(selector: str) -> list[str]:
        return sorted(i.metadata.name for i in core.list_namespaced_config_map(
            "default", label_selector=selector).items)
    assert names("app=x") == ["a"]
    assert names("app==y") == ["b"]
    assert names("app!=x") == ["b", "c"]
    assert names("app in (x, y)") == ["a", "b"]
    assert names("tier notin (1)") == ["b", "c"]
    assert names("tier") == ["a", "c"]
    assert names("!tier") == ["b"]
    assert names("app,tier") == ["a"]
    with pytest.raises(ApiException) as err:
        core.list_namespaced_config_map("default", label_selector="a in b")
    assert err.value.status == 400


def test_field_selectors(core: client.CoreV1Api) -> None:
    for name in ("p1", "p2"):
        core.create_namespaced_pod("default", {"metadata": {"name": name}, "spec": {
            "containers": [{"name": "c", "image": "busybox"}]}})
    core.patch_namespaced_pod_status("p2", "default", {"status": {"phase": "Running"}})
    names = [p.metadata.name for p in core.list_namespaced_pod(
        "default", field_selector="status.phase=Running").items]
    assert names == ["p2"]
    names = [p.metadata.name for p in core.list_pod_for_all_namespaces(
        field_selector="metadata.name=p1,metadata.namespace=default").items]
    assert names == ["p1"]
    assert [p.metadata.name for p in core.list_namespaced_pod(
        "default", field_selector="status.phase!=Running").items] == ["p1"]
    with pytest.raises(ApiException) as err:
        core.list_namespaced_pod("default", field_selector="spec.bogus=1")
    assert err.value.status == 400


def test_a_crds_selectable_fields_are_field_selectors(custom: client.CustomObjectsApi) -> None:
    args = ("oceanprotocol.com", "v1alpha1", "default", "workflows")
    for name, phase in (("sel-queued", "Queued"), ("sel-running", "Running"), ("sel-new", None)):
        custom.create_namespaced_custom_object(*args, workflow_manifest(name))
        if phase:
            custom.patch_namespaced_custom_object_status(*args, name, {"status": {
                "statusCode": 1, "statusText": "Warming up", "phase": phase}})

    def names(selector: str) -> list[str]:
        listed = custom.list_namespaced_custom_object(*args, field_selector=selector)["items"]
        return sorted(w["metadata"]["name"] for w in listed
                      if w["metadata"]["name"].startswith("sel-"))
    assert names("status.phase=Queued") == ["sel-queued"]
    assert names("status.phase!=Queued") == ["sel-new", "sel-running"]
    assert names("status.phase=") == ["sel-new"]  # an absent field selects as ""
    with pytest.raises(ApiException) as err:
        custom.list_namespaced_custom_object(*args, field_selector="status.statusText=x")
    assert err.value.status == 400 and 'status.phase' in json.loads(err.value.body)["message"]


def _causes(err: ApiException) -> list[str]:
    body = json.loads(err.body)
    assert body["kind"] == "Status" and body["code"] == err.status
    return [c["field"] for c in body["details"]["causes"]]


def test_job_with_restart_policy_always_is_422(batch: client.BatchV1Api) -> None:
    with pytest.raises(ApiException) as err:
        batch.create_namespaced_job("default", job_manifest("bad", restart_policy="Always"))
    assert err.value.status == 422
    assert json.loads(err.value.body)["reason"] == "Invalid"
    assert _causes(err.value) == ["spec.template.spec.restartPolicy"]


@pytest.mark.parametrize("mutate, field", [
    (lambda j: j["metadata"].__setitem__("name", "Bad_Name"), "metadata.name"),
    (lambda j: j["metadata"].__setitem__("labels", {"k": "bad value"}), "metadata.labels"),
    (lambda j: j["spec"]["template"]["spec"]["containers"][0].pop("image"),
     "spec.template.spec.containers[0].image"),
    (lambda j: j["spec"]["template"]["spec"]["containers"][0].__setitem__(
        "resources", {"limits": {"memory": "12QB"}}),
     "spec.template.spec.containers[0].resources.limits[memory]"),
    (lambda j: j["spec"].__setitem__("backoffLimit", -1), "spec.backoffLimit"),
    (lambda j: j["spec"]["template"]["spec"]["containers"][0].__setitem__(
        "volumeMounts", [{"name": "nope", "mountPath": "/data"}]),
     "spec.template.spec.containers[0].volumeMounts[0].name"),
])
def test_semantic_rules_are_422_naming_the_field(kube_api_client: client.ApiClient, mutate,
                                                 field: str) -> None:
    job = job_manifest("j")
    mutate(job)
    with pytest.raises(ApiException) as err:
        client.BatchV1Api(kube_api_client).create_namespaced_job(
            "default", job, _preload_content=False)
    assert err.value.status == 422
    assert field in _causes(err.value)


def test_unknown_field_is_rejected_by_strict_decoding(kube_api_client: client.ApiClient) -> None:
    job = job_manifest("u")
    job["spec"]["template"]["spec"]["containers"][0]["imagee"] = "typo"
    resp = kube_api_client.call_api(*kube_api_client.param_serialize(
        "POST", "/apis/batch/v1/namespaces/default/jobs", body=job,
        header_params={"Content-Type": "application/json"}))
    resp.read()
    assert resp.status == 400
    body = json.loads(resp.data)
    assert body["reason"] == "BadRequest"
    assert "spec.template.spec.containers[0].imagee" in body["message"]


def test_job_template_is_immutable(batch: client.BatchV1Api) -> None:
    batch.create_namespaced_job("default", job_manifest("imm"))
    with pytest.raises(ApiException) as err:
        batch.patch_namespaced_job("imm", "default", {"spec": {"template": {"spec": {
            "containers": [{"name": "main", "image": "other"}]}}}})
    assert err.value.status == 422 and "spec.template" in _causes(err.value)


def test_workflow_violating_the_crd_is_422(custom: client.CustomObjectsApi) -> None:
    args = ("oceanprotocol.com", "v1alpha1", "default", "workflows")
    wf = workflow_manifest("bad")
    wf["spec"]["metadata"]["stages"][0]["compute"]["maxtime"] = 0
    wf["spec"]["stopRequested"] = "yes"
    with pytest.raises(ApiException) as err:
        custom.create_namespaced_custom_object(*args, wf)
    assert err.value.status == 422
    fields = _causes(err.value)
    assert "spec.metadata.stages[0].compute.maxtime" in fields
    assert "spec.stopRequested" in fields
    missing = workflow_manifest("bad2")
    del missing["spec"]["metadata"]["stages"]
    with pytest.raises(ApiException) as err:
        custom.create_namespaced_custom_object(*args, missing)
    assert _causes(err.value) == ["spec.metadata.stages"]
    custom.create_namespaced_custom_object(*args, workflow_manifest("ok"))
    with pytest.raises(ApiException) as err:
        custom.patch_namespaced_custom_object_status(*args, "ok", {"status": {
            "phase": "Dancing"}})
    assert err.value.status == 422 and _causes(err.value) == ["status.phase"]


def test_custom_resource_unknown_fields_are_pruned(custom: client.CustomObjectsApi) -> None:
    args = ("oceanprotocol.com", "v1alpha1", "default", "workflows")
    wf = workflow_manifest("pr")
    wf["spec"]["extra"] = "dropped"
    wf["spec"]["metadata"]["stages"][0]["kept"] = "preserved"   # preserve-unknown-fields
    got = custom.create_namespaced_custom_object(*args, wf)
    assert "extra" not in got["spec"]
    assert got["spec"]["metadata"]["stages"][0]["kept"] == "preserved"


def test_crd_applied_by_a_user_is_served_at_once(kube_api_client: client.ApiClient,
                                                 custom: client.CustomObjectsApi) -> None:
    ext = client.ApiextensionsV1Api(kube_api_client)
    ext.create_custom_resource_definition(MANIFESTS[-2])
    args = ("example.com", "v1", "default", "widgets")
    made = custom.create_namespaced_custom_object(*args, {
        "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"},
        "spec": {"size": 3}})
    assert made["spec"]["size"] == 3
    with pytest.raises(ApiException) as err:
        custom.create_namespaced_custom_object(*args, {
            "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w0"},
            "spec": {"size": 0}})
    assert err.value.status == 422
    groups = [g.name for g in client.ApisApi(kube_api_client).get_api_versions().groups]
    assert "example.com" in groups
    ext.delete_custom_resource_definition("widgets.example.com")
    with pytest.raises(ApiException) as err:
        custom.list_namespaced_custom_object(*args)
    assert err.value.status == 404


def test_delete_collection(core: client.CoreV1Api) -> None:
    for name, app in [("a", "x"), ("b", "x"), ("c", "y")]:
        core.create_namespaced_config_map("default", {"metadata": {"name": name,
                                                                   "labels": {"app": app}}})
    core.delete_collection_namespaced_config_map("default", label_selector="app=x")
    assert [c.metadata.name for c in core.list_namespaced_config_map(
        "default").items if c.metadata.name in "abc"] == ["c"]


def test_secret_string_data_becomes_base64_data(core: client.CoreV1Api) -> None:
    s = core.create_namespaced_secret("default", {"metadata": {"name": "s"},
                                                  "stringData": {"k": "v"}})
    assert s.data == {"k": "dg=="} and s.type == "Opaque"


def test_errors_are_status_objects(kube_api_client: client.ApiClient) -> None:
    for method, path in [("GET", "/api/v1/namespaces/default/nothings"),
                         ("GET", "/apis/nope/v1"), ("PUT", "/api/v1/namespaces/default/pods")]:
        resp = kube_api_client.call_api(*kube_api_client.param_serialize(method, path))
        resp.read()
        body = json.loads(resp.data)
        assert resp.status in (404, 405) and body["kind"] == "Status"
        assert body["code"] == resp.status and body["reason"]
