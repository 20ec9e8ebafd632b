"""How shared.kube reaches the API: kept-alive http.client connections, urllib3 for proxies."""

from __future__ import annotations

import ssl

import urllib3
from kubernetes import client

from shared import keepalive
from shared.connection import Connection
from shared.kube import ApiHttp, Kube, direct_origin
from tests.rawserver import RawServer


def _calls(server: RawServer, times: int) -> None:
    kube = Kube(Connection(server.url.split("/path")[0], urllib3.PoolManager(), dict))
    try:
        for _ in range(times):
            assert kube.get("ConfigMap", "default", "c") == {}  # a 202 with no body
    finally:
        server.close()


def test_one_thread_makes_its_calls_on_one_connection() -> None:
    server = RawServer()
    _calls(server, 3)
    assert (server.connections, server.requests) == (1, 3)
    assert server.paths == ["/api/v1/namespaces/default/configmaps/c"] * 3


def test_a_connection_the_server_closed_is_replaced_and_the_call_made_once() -> None:
    server = RawServer(close_after_answer=True)
    _calls(server, 3)
    assert (server.connections, server.requests) == (3, 3)


def test_plain_and_tls_pools_go_direct_with_their_settings(tmp_path) -> None:
    plain = direct_origin(urllib3.PoolManager(), "http://127.0.0.1:6443")
    assert plain == keepalive.Origin("http", "127.0.0.1", 6443)
    official = client.ApiClient(client.Configuration(host="http://127.0.0.1:6443"))
    assert direct_origin(official.rest_client.pool_manager, "http://127.0.0.1:6443") == plain
    insecure = direct_origin(urllib3.PoolManager(cert_reqs="CERT_NONE"), "https://h:6443")
    assert insecure is not None and insecure.tls is not None
    assert insecure.tls.verify_mode == ssl.CERT_NONE and not insecure.tls.check_hostname
    named = direct_origin(urllib3.PoolManager(server_hostname="api.internal"), "https://10.0.0.1")
    assert named is not None and named.server_hostname == "api.internal"
    assert named.tls is not None and named.tls.verify_mode == ssl.CERT_REQUIRED


def test_proxies_and_settings_it_does_not_read_keep_urllib3() -> None:
    assert direct_origin(urllib3.ProxyManager("http://proxy:3128"), "https://h") is None
    assert direct_origin(urllib3.PoolManager(ssl_context=ssl.create_default_context()),
                         "https://h") is None
    assert direct_origin(urllib3.PoolManager(assert_hostname="other"), "https://h") is None
    assert direct_origin(urllib3.PoolManager(), "ftp://h") is None
    unreadable = urllib3.PoolManager(cert_file="/nowhere.pem", key_file="/nowhere.key")
    assert direct_origin(unreadable, "https://h") is None  # urllib3 reports it on the call


def test_both_paths_read_a_repeated_answer_field_as_its_first() -> None:
    repeated = b"HTTP/1.1 200 OK\r\nX-Seen: first\r\nX-Seen: second\r\nContent-Length: 2\r\n\r\n{}"
    server = RawServer(answers=[(repeated, False), (repeated, False)])
    base = server.url.split("/path")[0]
    try:
        for pool in (urllib3.PoolManager(),  # kept-alive http.client
                     urllib3.PoolManager(ssl_context=ssl.create_default_context())):  # urllib3
            answer = ApiHttp(Connection(base, pool, dict)).request("GET", "/x", timeout=5)
            assert (answer.status, answer.headers["x-seen"]) == (200, "first")
    finally:
        server.close()
