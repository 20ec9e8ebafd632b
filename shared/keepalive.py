"""Kept-alive HTTP/1.1 connections over `http.client`, one per thread and origin.

For the calls c2d makes most: the functions' calls to the API server
(`shared.kube.ApiHttp`) and the embedded Broker's deliveries
(`devstack.eventing.delivery.Sender`). Each thread keeps its own connection to
an origin, so there is no pool to lock. A connection the server closed while it
sat idle fails on its next request; that request is sent once more on a new one.
Through urllib3 a call to the API cost the calling process about twice the CPU
(0.23 against 0.12 ms on a two-core VM), for pooling these threads do not need.
Answers' header fields are read by `shared.httphead`, not `email`: a third less
again (0.18 against 0.12 ms a GET, measured alone).
"""

from __future__ import annotations

import http.client
import ssl
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from shared.httphead import BadHead, read_fields

# What a kept-alive connection closed by the server looks like on the next request.
STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
         ConnectionAbortedError)


@dataclass(frozen=True)
class Origin:
    """Where requests go: scheme, host and port, and for https the TLS settings."""

    scheme: str
    host: str
    port: int | None
    # Compared by identity: connections made with one context never serve another's calls.
    tls: ssl.SSLContext | None = None
    server_hostname: str | None = None  # the name the certificate must carry, when not `host`

    @classmethod
    def of(cls, url: str) -> Origin:
        """The origin of an http(s) URL, without TLS settings; ValueError for another."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        return cls(parts.scheme, parts.hostname, parts.port)

    def connect(self) -> http.client.HTTPConnection:
        if self.scheme == "https":
            connection: http.client.HTTPConnection = _TLSConnection(
                self.host, self.port, self.tls or ssl.create_default_context(),
                self.server_hostname)
        else:
            connection = http.client.HTTPConnection(self.host, self.port)
        connection.response_class = _Response
        return connection


class _TLSConnection(http.client.HTTPSConnection):
    """HTTPS whose certificate may be checked for a name other than the host's."""

    def __init__(self, host: str, port: int | None, context: ssl.SSLContext,
                 server_hostname: str | None):
        super().__init__(host, port, context=context)
        self._tls = context
        self._server_hostname = server_hostname or host

    def connect(self) -> None:
        http.client.HTTPConnection.connect(self)
        self.sock = self._tls.wrap_socket(self.sock, server_hostname=self._server_hostname)


class _Response(http.client.HTTPResponse):
    """`http.client`'s response, its head read by `shared.httphead`.

    `begin` is the stdlib's (3.11), but for the header fields: the same framing
    (Content-Length, chunked, bodiless statuses, closing).
    """

    def begin(self) -> None:
        if self.headers is not None:
            return
        while True:
            version, status, reason = self._read_status()  # type: ignore[attr-defined]
            if status != http.client.CONTINUE:
                break
            self._fields()  # those of the interim 100 answer
        self.code = self.status = status
        self.reason = reason.strip()
        if version in ("HTTP/1.0", "HTTP/0.9"):
            self.version = 10
        elif version.startswith("HTTP/1."):
            self.version = 11
        else:
            raise http.client.UnknownProtocol(version)
        self.headers = self.msg = self._fields()  # type: ignore[assignment]
        self.chunked = (self.headers.get("transfer-encoding") or "").lower() == "chunked"
        self.chunk_left = None
        self.will_close = self._check_close()  # type: ignore[attr-defined]
        self.length = None
        length = self.headers.get("content-length")
        if length and not self.chunked:
            try:
                self.length = int(length)
            except ValueError:
                self.length = None
            else:
                if self.length < 0:
                    self.length = None
        if status in (http.client.NO_CONTENT, http.client.NOT_MODIFIED) \
                or 100 <= status < 200 or self._method == "HEAD":  # type: ignore[attr-defined]
            self.length = 0
        if not self.will_close and not self.chunked and self.length is None:
            self.will_close = True  # the body ends when the connection does

    def _fields(self) -> Any:
        try:
            return read_fields(self.fp)
        except BadHead as error:
            raise http.client.HTTPException(f"bad answer head: {error}") from None


@dataclass(frozen=True)
class Answer:
    """A response read whole: status, reason, header fields (lower-case names, the
    first of a repeated one), body."""

    status: int
    reason: str
    headers: dict[str, str]
    data: bytes


class Connections:
    """This process's kept-alive connections, by thread and origin."""

    def __init__(self) -> None:
        self._local = threading.local()
        self._open: set[http.client.HTTPConnection] = set()
        self._lock = threading.Lock()

    def request(self, origin: Origin, method: str, target: str, body: bytes | None,
                headers: dict[str, str], timeout: float) -> Answer:
        """One request, its answer read whole. OSError or http.client.HTTPException when
        there is none; `timeout` bounds each wait (connecting, each read)."""
        connection, reused = self._connection(origin)
        try:
            return self._exchange(origin, connection, method, target, body, headers, timeout)
        except STALE:
            if not reused:
                raise
            connection, _ = self._connection(origin)
            return self._exchange(origin, connection, method, target, body, headers, timeout)

    def _exchange(self, origin: Origin, connection: http.client.HTTPConnection, method: str,
                  target: str, body: bytes | None, headers: dict[str, str],
                  timeout: float) -> Answer:
        connection.timeout = timeout
        if connection.sock is not None:
            connection.sock.settimeout(timeout)
        try:
            connection.request(method, target, body=body, headers=headers)
            reply = connection.getresponse()
            data = reply.read()
        except BaseException:
            self._drop(origin, connection)
            raise
        if reply.will_close:
            self._drop(origin, connection)
        return Answer(reply.status, reply.reason, dict(reply.headers), data)

    def _connection(self, origin: Origin) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's connection to `origin`, and whether it served a request before."""
        connections: dict[Origin, Any] = self._local.__dict__.setdefault("connections", {})
        connection = connections.get(origin)
        if connection is not None:
            return connection, True
        connection = connections[origin] = origin.connect()
        with self._lock:
            self._open.add(connection)
        return connection, False

    def _drop(self, origin: Origin, connection: http.client.HTTPConnection) -> None:
        connection.close()
        self._local.__dict__.get("connections", {}).pop(origin, None)
        with self._lock:
            self._open.discard(connection)

    def close(self) -> None:
        """Close every thread's connections (a thread's next request opens a new one)."""
        with self._lock:
            connections, self._open = self._open, set()
        for connection in connections:
            connection.close()
