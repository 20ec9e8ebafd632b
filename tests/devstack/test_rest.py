"""The embedded controllers' plain JSON calls (devstack.kubelet.informer.Rest)."""

from __future__ import annotations

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from devstack.kubelet.informer import MERGE_PATCH, Rest, path


def test_paths() -> None:
    assert path("pods") == "/api/v1/pods"
    assert path("pods", "ns1", "p1", "status") == "/api/v1/namespaces/ns1/pods/p1/status"
    assert path("jobs", "ns1", group="batch") == "/apis/batch/v1/namespaces/ns1/jobs"
    assert path("pods", "n/s", "a/../b") == "/api/v1/namespaces/n%2Fs/pods/a%2F..%2Fb"


def test_calls_answer_the_api_servers_json(kube_api_client: client.ApiClient) -> None:
    rest = Rest(kube_api_client)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p1", "namespace": "default"},
           "spec": {"containers": [{"name": "c", "image": "python"}]}}
    created = rest.call("POST", path("pods", "default"), pod)
    assert created["metadata"]["uid"]

    patched = rest.call("PATCH", path("pods", "default", "p1", "status"),
                        {"status": {"phase": "Running"}}, MERGE_PATCH)
    assert patched["status"]["phase"] == "Running"
    assert rest.get(path("pods", "default", "p1"))["status"]["phase"] == "Running"
    assert rest.get(path("pods", "default", "nope")) is None

    listed = rest.call("GET", path("pods"), labelSelector="app=none")
    assert listed["kind"] == "PodList" and listed["items"] == []


def test_a_refusal_is_the_clients_api_exception(kube_api_client: client.ApiClient) -> None:
    rest = Rest(kube_api_client)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p1", "namespace": "default"},
           "spec": {"containers": [{"name": "c", "image": "python"}]}}
    rest.call("POST", path("pods", "default"), pod)
    with pytest.raises(ApiException) as refused:
        rest.call("POST", path("pods", "default"), pod)
    assert refused.value.status == 409
    assert "already exists" in refused.value.body

    with pytest.raises(ApiException) as refused:  # a stale uid: the precondition fails
        rest.call("DELETE", path("pods", "default", "p1"), {"preconditions": {"uid": "other"}})
    assert refused.value.status == 409
    assert rest.get(path("pods", "default", "p1")) is not None
