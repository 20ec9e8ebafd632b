"""How `shared.keepalive` reads answers: its own head reader, the stdlib's framing."""

from __future__ import annotations

import http.client

import pytest

from shared import keepalive
from tests.rawserver import RawServer

CONNECTIONS = keepalive.Connections()


def _ask(server: RawServer, method: str = "GET") -> keepalive.Answer:
    return CONNECTIONS.request(keepalive.Origin.of(server.url), method, "/path", None, {}, 5.0)


@pytest.fixture(autouse=True)
def _fresh_connections():
    yield
    CONNECTIONS.close()


def test_header_fields_by_lower_case_name_the_first_of_a_repeated_one() -> None:
    server = RawServer(answers=[(b"HTTP/1.1 409 Conflict\r\nX-Seen: first\r\n"
                                 b"x-seen: second\r\nContent-Length: 2\r\n\r\nno", False)])
    answer = _ask(server)
    assert (answer.status, answer.reason, answer.data) == (409, "Conflict", b"no")
    assert answer.headers == {"x-seen": "first", "content-length": "2"}


def test_a_chunked_body_is_read_whole_and_the_connection_kept() -> None:
    server = RawServer(answers=[(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: Chunked\r\n\r\n"
                                 b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\n", False)])
    assert _ask(server).data == b"hello world"
    assert _ask(server).status == 202
    assert (server.connections, server.requests) == (1, 2)


def test_a_body_without_a_length_ends_with_the_connection() -> None:
    server = RawServer(answers=[(b"HTTP/1.1 200 OK\r\n\r\nall of it", True)])
    assert _ask(server).data == b"all of it"
    assert _ask(server).status == 202
    assert server.connections == 2


@pytest.mark.parametrize("answer, method", [
    (b"HTTP/1.1 204 No Content\r\n\r\n", "DELETE"),
    (b"HTTP/1.1 304 Not Modified\r\n\r\n", "GET"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", "HEAD"),
], ids=["204", "304", "HEAD"])
def test_bodiless_answers_keep_the_connection(answer: bytes, method: str) -> None:
    server = RawServer(answers=[(answer, False)])
    assert _ask(server, method).data == b""
    assert _ask(server).status == 202
    assert server.connections == 1


def test_an_interim_100_is_skipped() -> None:
    server = RawServer(answers=[(b"HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\n"
                                 b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok", False)])
    answer = _ask(server)
    assert (answer.status, answer.data, answer.headers) == (201, b"ok", {"content-length": "2"})


def test_an_http_1_0_answer_closes_unless_kept_alive() -> None:
    server = RawServer(answers=[(b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\na", True),
                                (b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\n"
                                 b"Content-Length: 1\r\n\r\nb", False)])
    assert [_ask(server).data for _ in range(3)] == [b"a", b"b", b""]
    assert server.connections == 2


@pytest.mark.parametrize("head", [
    b"HTTP/1.1 200 OK\r\nX-Folded: a\r\n continued\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(101)) + b"\r\n",
    b"HTTP/1.1 200 OK\r\nX-Long: " + b"v" * 70000 + b"\r\n\r\n",
    b"HTTP/2.0 200 OK\r\n\r\n",
    b"SMTP ready\r\n",
], ids=["folded", "no colon", "101 fields", "70 kB line", "HTTP/2.0", "not HTTP"])
def test_a_bad_head_is_an_http_exception_and_the_next_call_gets_a_new_connection(
        head: bytes) -> None:
    server = RawServer(answers=[(head, True)])
    with pytest.raises(http.client.HTTPException):
        _ask(server)
    assert _ask(server).status == 202
    assert server.connections == 2
