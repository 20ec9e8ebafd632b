"""Persistence across restarts, compare-and-set under concurrency, the module entry point."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from devstack.apiserver import APIServer

from .conftest import ROOT, WORKFLOW_CRD, job_manifest, workflow_manifest


def _clients(url: str) -> tuple[client.CoreV1Api, client.CustomObjectsApi]:
    cfg = client.Configuration()
    cfg.host = url
    api = client.ApiClient(cfg)
    return client.CoreV1Api(api), client.CustomObjectsApi(api)


def test_objects_and_resource_versions_survive_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    srv = APIServer(crd_files=[WORKFLOW_CRD], data_dir=data)
    core, custom = _clients(srv.start())
    try:
        core.create_namespace({"metadata": {"name": "kept"}})
        cm = core.create_namespaced_config_map("kept", {"metadata": {"name": "c"},
                                                        "data": {"a": "1"}})
        core.create_namespaced_config_map("kept", {"metadata": {"name": "gone"}})
        core.delete_namespaced_config_map("gone", "kept")
        custom.create_namespaced_custom_object("oceanprotocol.com", "v1alpha1", "default",
                                               "workflows", workflow_manifest("wf"))
        ext = client.ApiextensionsV1Api(core.api_client)
        ext.create_custom_resource_definition({
            "metadata": {"name": "things.example.com"},
            "spec": {"group": "example.com", "scope": "Cluster",
                     "names": {"plural": "things", "kind": "Thing"},
                     "versions": [{"name": "v1", "served": True, "storage": True, "schema": {
                         "openAPIV3Schema": {"type": "object",
                                             "x-kubernetes-preserve-unknown-fields": True}}}]}})
        custom.create_cluster_custom_object("example.com", "v1", "things", {
            "apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "t"},
            "spec": {"any": ["thing"]}})
        last = int(core.list_namespace().metadata.resource_version)
    finally:
        srv.stop()

    srv = APIServer(crd_files=[WORKFLOW_CRD], data_dir=data)
    core, custom = _clients(srv.start())
    try:
        again = core.read_namespaced_config_map("c", "kept")
        assert again.metadata.uid == cm.metadata.uid and again.data == {"a": "1"}
        with pytest.raises(ApiException):
            core.read_namespaced_config_map("gone", "kept")
        assert custom.get_namespaced_custom_object("oceanprotocol.com", "v1alpha1", "default",
                                                   "workflows", "wf")["spec"]["secret"]
        thing = custom.get_cluster_custom_object("example.com", "v1", "things", "t")
        assert thing["spec"] == {"any": ["thing"]}            # a user CRD is served again
        newer = core.create_namespaced_config_map("kept", {"metadata": {"name": "n"}})
        assert int(newer.metadata.resource_version) > last
    finally:
        srv.stop()


def test_concurrent_compare_and_set_never_loses_an_update(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "counter"},
                                                  "data": {"n": "0"}})
    threads, per_thread = 8, 15
    conflicts = []

    def bump() -> None:
        cfg = client.Configuration()
        cfg.host = core.api_client.configuration.host
        mine = client.CoreV1Api(client.ApiClient(cfg))
        done = 0
        while done < per_thread:
            cm = mine.read_namespaced_config_map("counter", "default")
            cm.data["n"] = str(int(cm.data["n"]) + 1)
            try:
                mine.replace_namespaced_config_map("counter", "default", cm)
                done += 1
            except ApiException as e:
                assert e.status == 409
                conflicts.append(1)

    workers = [threading.Thread(target=bump) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
    final = core.read_namespaced_config_map("counter", "default")
    assert final.data["n"] == str(threads * per_thread)
    assert conflicts, "the threads never raced; the test proves nothing"


def test_concurrent_patches_all_apply(batch: client.BatchV1Api) -> None:
    batch.create_namespaced_job("default", job_manifest("labels"))

    def label(i: int) -> None:
        batch.patch_namespaced_job("labels", "default", {"metadata": {"labels": {
            f"k{i}": "v"}}})
    workers = [threading.Thread(target=label, args=(i,)) for i in range(20)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    labels = batch.read_namespaced_job("labels", "default").metadata.labels
    assert all(f"k{i}" in labels for i in range(20))


def test_module_entry_point_serves_until_terminated(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "devstack.apiserver", "--port", "0", "--data-dir",
         str(tmp_path / "d"), "--log-dir", str(tmp_path / "l"), "--crd", str(WORKFLOW_CRD),
         "--kubeconfig", str(tmp_path / "kubeconfig")],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:")
        core, custom = _clients(url)
        assert [n.metadata.name for n in core.list_namespace().items if
                n.metadata.name == "default"] == ["default"]
        assert custom.list_namespaced_custom_object("oceanprotocol.com", "v1alpha1",
                                                    "default", "workflows")["items"] == []
        assert (tmp_path / "kubeconfig").exists()
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_journal_is_compacted_while_running(tmp_path: Path) -> None:
    from devstack.apiserver.store import Store
    store = Store(tmp_path)
    obj = {"metadata": {"name": "c", "namespace": "d", "uid": "u"}, "data": {"n": "0"}}
    store.write("/configmaps", dict(obj), None, create=True)
    for i in range(10050):
        store.write("/configmaps", dict(obj, data={"n": str(i)}), None)
    lines = (tmp_path / "journal.jsonl").read_text().splitlines()
    assert len(lines) < 100
    store.close()
    again = Store(tmp_path)
    assert again.get("/configmaps", ("d", "c"))["data"] == {"n": "10049"}
    assert again.resource_version == store.resource_version
    again.close()
