"""Bad and hostile input: every answer is a Status naming the problem, nothing is stored."""

from __future__ import annotations

import json

import pytest
import urllib3

from devstack.apiserver import APIServer

CM_PATH = "/api/v1/namespaces/default/configmaps"


def _request(url: str, method: str, path: str, body: bytes | None = None,
             ctype: str = "application/json") -> tuple[int, dict]:
    resp = urllib3.PoolManager().request(method, url + path, body=body,
                                         headers={"Content-Type": ctype}, retries=False)
    return resp.status, json.loads(resp.data)


@pytest.mark.parametrize("body, code, words", [
    (b"{not json", 400, "could not be decoded"),
    (b"[1, 2]", 400, "must be a ConfigMap object"),
    (b'{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}}', 400,
     "kind in the data (Secret)"),
    (b'{"apiVersion": "v2", "kind": "ConfigMap", "metadata": {"name": "x"}}', 400,
     "API version in the data (v2)"),
    (b'{"metadata": {"name": "x", "namespace": "other"}}', 400, "namespace of the provided"),
    (b'{"metadata": {}}', 422, "name or generateName is required"),
    (b'{"metadata": {"name": "../../etc"}}', 422, "RFC 1123 subdomain"),
    (b'{"metadata": {"name": "x"}, "data": {"bad key/": "v"}}', 422, "valid config key"),
    (b'{"metadata": {"name": "x"}, "data": {"k": 1}}', 400, "cannot unmarshal number"),
    (b'{"metadata": "x"}', 400, "metadata must be an object"),
])
def test_bad_bodies_are_refused_with_a_status(apiserver: APIServer, body: bytes, code: int,
                                              words: str) -> None:
    status, answer = _request(apiserver.url, "POST", CM_PATH, body)
    assert status == code, answer
    assert answer["kind"] == "Status" and answer["code"] == code and words in answer["message"]
    _, listed = _request(apiserver.url, "GET", CM_PATH)
    assert listed["items"] == []


def test_name_in_body_must_match_the_url(apiserver: APIServer) -> None:
    _request(apiserver.url, "POST", CM_PATH, b'{"metadata": {"name": "a"}}')
    status, answer = _request(apiserver.url, "PUT", CM_PATH + "/a",
                              b'{"metadata": {"name": "b"}}')
    assert status == 400 and "does not match the name on the URL" in answer["message"]


def test_oversized_body_is_413(apiserver: APIServer) -> None:
    big = json.dumps({"metadata": {"name": "big"}, "data": {"k": "x" * (4 * 1024 * 1024)}})
    status, answer = _request(apiserver.url, "POST", CM_PATH, big.encode())
    assert status == 413 and answer["reason"] == "RequestEntityTooLarge"


def test_unknown_paths_and_methods(apiserver: APIServer) -> None:
    for method, path, code in [("GET", "/apis/oceanprotocol.com/v9/workflows", 404),
                               ("GET", "/api/v1/namespaces/default/pods/p/exec", 404),
                               ("GET", "/api/v1/namespaces/default/namespaces", 404),
                               ("POST", "/api/v1/namespaces/default/pods/p/log", 405),
                               ("GET", "/nonsense", 404)]:
        status, answer = _request(apiserver.url, method, path)
        assert status == code and answer["kind"] == "Status", (method, path, answer)


def test_bad_selectors_and_versions(apiserver: APIServer) -> None:
    for query in ("labelSelector=a%20in%20b", "fieldSelector=nope%3D1",
                  "watch=true&resourceVersion=abc"):
        status, answer = _request(apiserver.url, "GET", f"{CM_PATH}?{query}")
        assert status == 400 and answer["reason"] == "BadRequest", query


def test_pod_logs_cannot_escape_the_log_folder(apiserver: APIServer) -> None:
    (apiserver.log_dir / "secret.log").parent.mkdir(parents=True, exist_ok=True)
    (apiserver.log_dir / "secret.log").write_text("nope")
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "x"}]}}
    _request(apiserver.url, "POST", "/api/v1/namespaces/default/pods",
             json.dumps(pod).encode())
    status, answer = _request(apiserver.url, "GET",
                              "/api/v1/namespaces/default/pods/p/log?container=../../secret")
    assert status == 400 and "is not valid for pod p" in answer["message"]


def test_secret_data_must_be_base64(apiserver: APIServer) -> None:
    status, answer = _request(apiserver.url, "POST", "/api/v1/namespaces/default/secrets",
                              b'{"metadata": {"name": "s"}, "data": {"k": "not base64!"}}')
    assert status == 400 and "data[k]" in answer["message"]


def test_cluster_scoped_objects_ignore_a_namespace(apiserver: APIServer) -> None:
    status, made = _request(apiserver.url, "POST", "/api/v1/namespaces",
                            b'{"metadata": {"name": "n1", "namespace": "default"}}')
    assert status == 201 and "namespace" not in made["metadata"]
    status, got = _request(apiserver.url, "GET", "/api/v1/namespaces/n1")
    assert status == 200 and got["metadata"]["uid"] == made["metadata"]["uid"]
