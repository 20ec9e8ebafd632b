"""Bad and hostile input: every answer is a Status naming the problem, nothing is stored."""

from __future__ import annotations

import json
import socket

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
    (b'{"metadata": {"name": "x"}, "data": {"k": NaN}}', 400, "could not be decoded"),
    (b'{"metadata": {"name": "x"}, "data": {"k": "\\ud800"}}', 400, "could not be decoded"),
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


def _raw(url: str, head: bytes) -> bytes:
    """Send `head` as is on a new connection; everything the server answers until it closes."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(head)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize("head, status", [
    (b"GET /api/v1/namespaces HTTP/1.1\r\nHost x\r\n\r\n", b"400"),            # no colon
    (b"GET /api/v1/namespaces HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", b"400"),
    (b"GET /api/v1/namespaces HTTP/1.1\r\n: x\r\n\r\n", b"400"),                # no name
    (b"GET /api/v1/namespaces HTTP/2.0\r\n\r\n", b"400"),
    (b"GET /api/v1/namespaces\r\n\r\n", b"400"),
    (b"GET /api/v1/namespaces HTTP/1.1\r\nX: " + b"y" * 70000 + b"\r\n\r\n", b"431"),
    (b"GET /api/v1/namespaces HTTP/1.1\r\n" + b"X: y\r\n" * 101 + b"\r\n", b"431"),
])
def test_malformed_request_heads_are_refused(apiserver: APIServer, head: bytes,
                                             status: bytes) -> None:
    answer = _raw(apiserver.url, head)
    assert answer.split(b" ", 2)[1] == status, answer[:200]


def test_a_request_head_is_read_as_http_says(apiserver: APIServer) -> None:
    """Names in any case, the first of a repeated field, HTTP/1.0 closing unless kept alive."""
    body = b'{"metadata": {"name": "heads"}}'
    head = (b"POST " + CM_PATH.encode() + b" HTTP/1.0\r\ncOnTeNt-LeNgTh: "
            + str(len(body)).encode() + b"\r\nContent-Length: 1\r\n"
            b"content-type: application/json\r\n\r\n" + body)
    answer = _raw(apiserver.url, head)  # returns only because HTTP/1.0 closes
    assert answer.startswith(b"HTTP/1.1 201"), answer[:200]
    kept = _raw(apiserver.url, b"GET " + CM_PATH.encode() + b"/heads HTTP/1.1\r\n"
                b"Host: x\r\n\r\nGET " + CM_PATH.encode() + b"/heads HTTP/1.1\r\n"
                b"Connection: close\r\n\r\n")
    assert kept.count(b"HTTP/1.1 200") == 2  # two answers on one kept-alive connection


def test_a_yaml_body_that_json_cannot_hold_is_refused(apiserver: APIServer) -> None:
    body = b"metadata: {name: huge}\ndata: {k: v}\nextra: 123456789012345678901234567890\n"
    status, answer = _request(apiserver.url, "POST", CM_PATH, body, "application/yaml")
    assert status == 400 and "cannot be stored as JSON" in answer["message"]
    _, listed = _request(apiserver.url, "GET", CM_PATH)
    assert listed["items"] == []
