"""The ApiServerSource against the real embedded API server, through the kubernetes client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.config import new_client_from_config

from devstack.apiserver import APIServer
from devstack.eventing import ApiServerSource, apiserversource, load_manifests, start_eventing
from devstack.eventing.manifests import DEFAULT_MANIFESTS_DIR, find_one
from devstack.kubeconfig import write_kubeconfig

from .helpers import Subscriber, trigger, wait_until, write_manifests

CRD = DEFAULT_MANIFESTS_DIR / "crd.yaml"
GROUP, VERSION, PLURAL = "oceanprotocol.com", "v1alpha1", "workflows"
C2D_LABEL = {"app.kubernetes.io/managed-by": "c2d"}


@pytest.fixture(scope="module")
def apiserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """The embedded API server with the Workflow CRD, and a kubeconfig for it."""
    server = APIServer(crd_files=[CRD])
    url = server.start()
    kubeconfig = write_kubeconfig(url, tmp_path_factory.mktemp("kube") / "kubeconfig")
    yield url, kubeconfig
    server.stop()


@pytest.fixture
def api(apiserver) -> Iterator[client.ApiClient]:
    api_client = new_client_from_config(config_file=str(apiserver[1]))
    yield api_client
    api_client.close()


@pytest.fixture
def namespace(api, request) -> Iterator[str]:
    """A fresh namespace per test (the API server is shared by the module)."""
    name = "t-" + request.node.name.lower().replace("_", "-")[:40].strip("-")
    client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})
    yield name


def source_for(api, name: str, sink: Subscriber, namespace: str, folder: Path | None = None,
               **watch) -> ApiServerSource:
    manifests = load_manifests(folder or DEFAULT_MANIFESTS_DIR)
    manifest = find_one(manifests, "ApiServerSource", "sources.knative.dev", name)
    source = ApiServerSource(manifest, sink.url, api, namespace).start()
    assert source.wait_ready(10)
    return source


def workflow(name: str) -> dict:
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "Workflow",
            "metadata": {"name": name},
            "spec": {"metadata": {"stages": [{"index": 0, "algorithm": {"id": "did:op:algo"}}]}}}


def job(name: str, labels: dict[str, str] | None = None) -> dict:
    return {"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {"template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "main", "image": "busybox", "command": ["true"]}]}}}}


def test_workflow_events_have_the_real_adapters_shape(api, apiserver, namespace,
                                                      subscriber_factory) -> None:
    sink = subscriber_factory()
    source = source_for(api, "c2d-workflows", sink, namespace)
    objects = client.CustomObjectsApi(api)
    try:
        created = objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                          workflow("wf1"))
        patched = objects.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, "wf1", {"spec": {"stopRequested": True}})
        objects.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "wf1")
        add, update, delete = sink.wait_for(3)
    finally:
        source.stop()
    assert [r.header("ce-type") for r in (add, update, delete)] == [
        "dev.knative.apiserver.resource.add",
        "dev.knative.apiserver.resource.update",
        "dev.knative.apiserver.resource.delete",
    ]
    for got in (add, update, delete):
        assert got.header("ce-specversion") == "1.0"
        assert got.header("ce-source") == apiserver[0]
        assert got.header("ce-subject") == (
            f"/apis/oceanprotocol.com/v1alpha1/namespaces/{namespace}/workflows/wf1")
        assert got.header("ce-kind") == "Workflow"
        assert got.header("ce-name") == "wf1"
        assert got.header("ce-namespace") == namespace
        assert got.header("ce-apiversion") == "oceanprotocol.com/v1alpha1"
        assert got.header("Content-Type") == "application/json"
        assert got.event.get_time() is not None
    assert len({r.header("ce-id") for r in (add, update, delete)}) == 3
    add_data, update_data = json.loads(add.body), json.loads(update.body)
    assert add_data["metadata"]["uid"] == created["metadata"]["uid"]
    assert add_data["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert add_data["spec"] == created["spec"]
    assert update_data["spec"]["stopRequested"] is True
    assert update_data["metadata"]["resourceVersion"] == patched["metadata"]["resourceVersion"]
    assert json.loads(delete.body)["metadata"]["name"] == "wf1"


def test_no_add_for_objects_that_existed_before_start(api, namespace,
                                                      subscriber_factory) -> None:
    sink = subscriber_factory()
    objects = client.CustomObjectsApi(api)
    objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, workflow("old"))
    source = source_for(api, "c2d-workflows", sink, namespace)
    try:
        objects.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "old",
                                               {"metadata": {"labels": {"touched": "yes"}}})
        objects.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL,
                                                workflow("new"))
        first, second = sink.wait_for(2)
    finally:
        source.stop()
    assert (first.header("ce-type"), first.header("ce-name")) == (
        "dev.knative.apiserver.resource.update", "old")
    assert (second.header("ce-type"), second.header("ce-name")) == (
        "dev.knative.apiserver.resource.add", "new")
    assert source.sent == 2


def test_job_label_selector_and_core_subject(api, namespace, subscriber_factory) -> None:
    """knative/'s c2d-jobs source: only Jobs labelled managed-by c2d are sent."""
    sink = subscriber_factory()
    batch = client.BatchV1Api(api)
    source = source_for(api, "c2d-jobs", sink, namespace)
    try:
        batch.create_namespaced_job(namespace, job("foreign"))
        batch.create_namespaced_job(namespace, job("wf1-configure", C2D_LABEL))
        batch.create_namespaced_job(namespace, job("other", {"app.kubernetes.io/managed-by": "x"}))
        batch.patch_namespaced_job("foreign", namespace, {"metadata": {"labels": {"a": "b"}}})
        batch.patch_namespaced_job("wf1-configure", namespace,
                                   {"metadata": {"labels": {"a": "b"}}})
        add, update = sink.wait_for(2)
        # A later change of the labelled Job shows that nothing else came in between.
        batch.delete_namespaced_job("wf1-configure", namespace)
        wait_until(lambda: sink.received[-1].header("ce-type").endswith(".delete"),
                   what="the delete event")
    finally:
        source.stop()
    names = {r.header("ce-name") for r in sink.received}
    assert names == {"wf1-configure"}
    assert add.header("ce-type") == "dev.knative.apiserver.resource.add"
    assert update.header("ce-type") == "dev.knative.apiserver.resource.update"
    assert add.header("ce-subject") == f"/apis/batch/v1/namespaces/{namespace}/jobs/wf1-configure"
    assert add.header("ce-apiversion") == "batch/v1"


def sources_doc(mode: str, api_version: str, kind: str, selector: dict | None = None) -> dict:
    resource = {"apiVersion": api_version, "kind": kind}
    if selector:
        resource["selector"] = selector
    return {"apiVersion": "sources.knative.dev/v1", "kind": "ApiServerSource",
            "metadata": {"name": "test-source"},
            "spec": {"mode": mode, "resources": [resource],
                     "sink": {"ref": {"apiVersion": "eventing.knative.dev/v1",
                                      "kind": "Broker", "name": "c2d"}}}}


def test_reference_mode_and_core_kind(api, namespace, tmp_path, subscriber_factory) -> None:
    sink = subscriber_factory()
    write_manifests(tmp_path, sources_doc("Reference", "v1", "ConfigMap", {
        "matchExpressions": [{"key": "app", "operator": "In", "values": ["c2d", "x"]}]}))
    source = source_for(api, "test-source", sink, namespace, folder=tmp_path)
    core = client.CoreV1Api(api)
    try:
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "skip"}})
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "cm",
                                                                   "labels": {"app": "c2d"}}})
        [got] = sink.wait_for(1)
    finally:
        source.stop()
    assert got.header("ce-type") == "dev.knative.apiserver.ref.add"
    assert got.header("ce-subject") == f"/apis/v1/namespaces/{namespace}/configmaps/cm"
    assert json.loads(got.body) == {"kind": "ConfigMap", "namespace": namespace, "name": "cm",
                                    "apiVersion": "v1"}


def test_workflow_through_the_real_manifests_to_configure(apiserver, api, namespace,
                                                          subscriber_factory) -> None:
    """knative/ end to end: a Workflow created in the API reaches c2d-configure."""
    names = ["c2d-configure", "c2d-algorithm", "c2d-publish", "c2d-notify"]
    functions = {name: subscriber_factory() for name in names}
    with start_eventing(DEFAULT_MANIFESTS_DIR, apiserver[1],
                        {n: s.url for n, s in functions.items()}, namespace) as eventing:
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, workflow("wf-e2e"))
        [got] = functions["c2d-configure"].wait_for(1)
        assert eventing.broker.wait_idle(5)
    assert got.header("ce-type") == "dev.knative.apiserver.resource.add"
    assert got.header("Prefer") == "reply"
    assert [len(functions[n].received) for n in names[1:]] == [0, 0, 0]


def test_fixture_routing_from_the_api(apiserver, api, namespace, tmp_path,
                                      subscriber_factory) -> None:
    """A Job update routed by a `suffix` filter on `subject` from fixture manifests."""
    fn = subscriber_factory()
    write_manifests(tmp_path, sources_doc("Resource", "batch/v1", "Job"), filename="s.yaml")
    write_manifests(tmp_path, trigger("jobs", service="fn", filters=[
        {"exact": {"type": "dev.knative.apiserver.resource.update", "kind": "Job"}},
        {"suffix": {"subject": "-publish"}}]))
    batch = client.BatchV1Api(api)
    with start_eventing(tmp_path, apiserver[1], {"fn": fn.url}, namespace) as eventing:
        for name in ("wf-configure", "wf-publish"):
            batch.create_namespaced_job(namespace, job(name))
            batch.patch_namespaced_job(name, namespace, {"metadata": {"labels": {"x": "y"}}})
        [got] = fn.wait_for(1)
        assert eventing.broker.wait_idle(5)
        assert eventing.apiserver_sources[0].sent == 4
    assert got.header("ce-name") == "wf-publish"
    assert len(fn.received) == 1


def test_a_watch_ended_by_the_server_resumes_without_loss_or_repeat(
        api, namespace, subscriber_factory, monkeypatch) -> None:
    monkeypatch.setattr(apiserversource, "WATCH_TIMEOUT_SECONDS", 1)
    sink = subscriber_factory()
    source = source_for(api, "c2d-jobs", sink, namespace)
    batch = client.BatchV1Api(api)
    try:
        batch.create_namespaced_job(namespace, job("wf-a-configure", C2D_LABEL))
        sink.wait_for(1)
        wait_until(lambda: source.watches >= 2, timeout=5, what="the watch to resume")
        batch.create_namespaced_job(namespace, job("wf-b-configure", C2D_LABEL))
        sink.wait_for(2)
    finally:
        source.stop()
    assert [(r.header("ce-type"), r.header("ce-name")) for r in sink.received] == [
        ("dev.knative.apiserver.resource.add", "wf-a-configure"),
        ("dev.knative.apiserver.resource.add", "wf-b-configure"),
    ]
