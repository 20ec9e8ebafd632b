"""Garbage collection over HTTP: cascading deletion by ownerReferences (background,
foreground, orphan), finalizers, graceful pod deletion, namespace deletion."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from devstack.testing import wait_until

from .conftest import job_manifest, owner_ref, workflow_manifest

WF = ("oceanprotocol.com", "v1alpha1", "default", "workflows")


def _exists(read, *args: Any) -> bool:
    try:
        read(*args)
        return True
    except ApiException as e:
        if e.status == 404:
            return False
        raise


def _pod(name: str, owner: dict[str, Any] | None = None, block: bool = False) -> dict:
    meta: dict[str, Any] = {"name": name}
    if owner:
        meta["ownerReferences"] = [owner_ref(owner, block)]
    return {"metadata": meta, "spec": {"restartPolicy": "Never", "containers": [
        {"name": "c", "image": "busybox", "command": ["sleep", "60"]}]}}


def _bind(kube_api_client: client.ApiClient, name: str) -> None:
    resp = kube_api_client.call_api(*kube_api_client.param_serialize(
        "POST", f"/api/v1/namespaces/default/pods/{name}/binding",
        body={"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
              "target": {"kind": "Node", "name": "c2d-embedded"}},
        header_params={"Content-Type": "application/json"}))
    resp.read()
    assert resp.status == 201, resp.data


def _tree(core, batch, custom) -> dict[str, Any]:
    """A Workflow owning a Job (owning a pod), a PVC, a ConfigMap and a Secret."""
    wf = custom.create_namespaced_custom_object(*WF, workflow_manifest("tree"))
    job = dict(job_manifest("tree-algorithm"))
    job["metadata"]["ownerReferences"] = [owner_ref(wf, block=True)]
    job = batch.create_namespaced_job("default", job).to_dict()
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {
        "name": job["metadata"]["name"], "uid": job["metadata"]["uid"]}}
    core.create_namespaced_pod("default", _pod("tree-algorithm-x1", job, block=True))
    owned = {"ownerReferences": [owner_ref(wf, block=True)]}
    core.create_namespaced_persistent_volume_claim("default", {
        "metadata": {"name": "tree-data", **owned}, "spec": {
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    core.create_namespaced_config_map("default", {"metadata": {"name": "tree", **owned}})
    core.create_namespaced_secret("default", {"metadata": {"name": "tree", **owned}})
    return wf


def _gone(core, batch) -> bool:
    return not any([
        _exists(batch.read_namespaced_job, "tree-algorithm", "default"),
        _exists(core.read_namespaced_pod, "tree-algorithm-x1", "default"),
        _exists(core.read_namespaced_persistent_volume_claim, "tree-data", "default"),
        _exists(core.read_namespaced_config_map, "tree", "default"),
        _exists(core.read_namespaced_secret, "tree", "default")])


def test_deleting_a_workflow_deletes_what_it_owns(core, batch, custom) -> None:
    _tree(core, batch, custom)
    assert not _gone(core, batch)
    custom.delete_namespaced_custom_object(*WF, "tree")
    wait_until(lambda: _gone(core, batch), what="the workflow's objects to be collected")


def test_foreground_deletion_waits_for_blocking_dependents(kube_api_client, core, batch,
                                                            custom) -> None:
    _tree(core, batch, custom)
    _bind(kube_api_client, "tree-algorithm-x1")     # a bound pod terminates gracefully
    custom.delete_namespaced_custom_object(*WF, "tree", propagation_policy="Foreground")
    wait_until(lambda: core.read_namespaced_pod("tree-algorithm-x1",
                                              "default").metadata.deletion_timestamp,
             what="the pod to be terminating")
    wf = custom.get_namespaced_custom_object(*WF, "tree")
    assert wf["metadata"]["deletionTimestamp"]
    assert "foregroundDeletion" in wf["metadata"]["finalizers"]
    job = batch.read_namespaced_job("tree-algorithm", "default")
    assert job.metadata.deletion_timestamp and "foregroundDeletion" in job.metadata.finalizers
    assert not _exists(core.read_namespaced_config_map, "tree", "default")
    # The kubelet's part: the processes are gone, the pod is removed with grace 0.
    core.delete_namespaced_pod("tree-algorithm-x1", "default", grace_period_seconds=0)
    wait_until(lambda: _gone(core, batch) and not _exists(
        custom.get_namespaced_custom_object, *WF, "tree"), what="foreground deletion to finish")


def test_deleting_a_job_orphans_its_pods_by_default(core, batch) -> None:
    job = batch.create_namespaced_job("default", job_manifest("orph")).to_dict()
    ref = {"apiVersion": "batch/v1", "kind": "Job", "metadata": job["metadata"]}
    core.create_namespaced_pod("default", _pod("orph-1", ref))
    batch.delete_namespaced_job("orph", "default")
    wait_until(lambda: not _exists(batch.read_namespaced_job, "orph", "default"),
             what="job removed")
    pod = core.read_namespaced_pod("orph-1", "default")
    assert not pod.metadata.owner_references


def test_background_job_deletion_takes_its_pods(core, batch) -> None:
    job = batch.create_namespaced_job("default", job_manifest("bg")).to_dict()
    ref = {"apiVersion": "batch/v1", "kind": "Job", "metadata": job["metadata"]}
    core.create_namespaced_pod("default", _pod("bg-1", ref))
    batch.delete_namespaced_job("bg", "default", propagation_policy="Background")
    wait_until(lambda: not _exists(core.read_namespaced_pod, "bg-1", "default"),
             what="pod collected")


def test_finalizers_hold_deletion(core) -> None:
    core.create_namespaced_config_map("default", {"metadata": {
        "name": "held", "finalizers": ["example.com/hold"]}})
    core.delete_namespaced_config_map("held", "default")
    cm = core.read_namespaced_config_map("held", "default")
    assert cm.metadata.deletion_timestamp and cm.metadata.finalizers == ["example.com/hold"]
    with pytest.raises(ApiException) as err:
        core.patch_namespaced_config_map("held", "default", {"metadata": {
            "finalizers": ["example.com/hold", "example.com/more"]}},
            _content_type="application/merge-patch+json")
    assert err.value.status == 422
    core.patch_namespaced_config_map("held", "default", {"metadata": {"finalizers": None}},
                                     _content_type="application/merge-patch+json")
    assert not _exists(core.read_namespaced_config_map, "held", "default")


def test_dependents_keep_living_owners(core) -> None:
    a = core.create_namespaced_config_map("default", {"metadata": {"name": "a"}}).to_dict()
    b = core.create_namespaced_config_map("default", {"metadata": {"name": "b"}}).to_dict()
    for o in (a, b):
        o.update(apiVersion="v1", kind="ConfigMap")
    core.create_namespaced_config_map("default", {"metadata": {
        "name": "dep", "ownerReferences": [owner_ref(a), dict(owner_ref(b), controller=False)]}})
    core.delete_namespaced_config_map("a", "default")
    refs = wait_until(lambda: [r.name for r in core.read_namespaced_config_map(
        "dep", "default").metadata.owner_references if r.name != "a"] == ["b"],
        what="dangling owner reference dropped")
    assert refs


def test_object_with_missing_owner_is_collected(core) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "lost", "ownerReferences": [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "ghost", "uid": "no-such-uid"}]}})
    wait_until(lambda: not _exists(core.read_namespaced_config_map, "lost", "default"),
             what="orphan with a missing owner collected")


def test_bound_pod_terminates_gracefully(kube_api_client, core) -> None:
    core.create_namespaced_pod("default", _pod("grace"))
    _bind(kube_api_client, "grace")
    assert core.read_namespaced_pod("grace", "default").spec.node_name == "c2d-embedded"
    pod = core.delete_namespaced_pod("grace", "default")
    assert pod.metadata.deletion_timestamp and pod.metadata.deletion_grace_period_seconds == 30
    assert core.read_namespaced_pod("grace", "default").metadata.deletion_timestamp
    core.delete_namespaced_pod("grace", "default", grace_period_seconds=0)
    assert not _exists(core.read_namespaced_pod, "grace", "default")


def test_namespace_deletion_empties_it(core) -> None:
    core.create_namespace({"metadata": {"name": "tmp-ns"}})
    core.create_namespaced_config_map("tmp-ns", {"metadata": {"name": "x"}})
    core.create_namespaced_config_map("tmp-ns", {"metadata": {
        "name": "held", "finalizers": ["example.com/hold"]}})
    core.delete_namespace("tmp-ns")
    assert core.read_namespace("tmp-ns").status.phase == "Terminating"
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map("tmp-ns", {"metadata": {"name": "late"}})
    assert err.value.status == 403 and json.loads(err.value.body)["reason"] == "Forbidden"
    wait_until(lambda: not _exists(core.read_namespaced_config_map, "x", "tmp-ns"),
             what="namespace content deleted")
    assert _exists(core.read_namespace, "tmp-ns")       # the finalizer still holds "held"
    core.patch_namespaced_config_map("held", "tmp-ns", {"metadata": {"finalizers": None}},
                                     _content_type="application/merge-patch+json")
    wait_until(lambda: not _exists(core.read_namespace, "tmp-ns"), what="namespace removed")


def test_default_namespace_cannot_be_deleted(core) -> None:
    with pytest.raises(ApiException) as err:
        core.delete_namespace("default")
    assert err.value.status == 403
