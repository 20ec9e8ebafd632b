"""Helpers for the eventing tests: a real HTTP subscriber and manifest builders."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml

from devstack.eventing.events import from_http, to_http

Answer = tuple[int, dict[str, str], bytes]


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def event(self):
        return from_http(self.headers, self.body)

    def header(self, name: str) -> str | None:
        return {k.lower(): v for k, v in self.headers.items()}.get(name.lower())


@dataclass
class Subscriber:
    """A real HTTP server on 127.0.0.1 that records requests and answers via `respond`."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    respond: Callable[[Received], Answer] = lambda r: (202, {}, b"")
    arrived: threading.Condition = field(default_factory=threading.Condition)
    server: ThreadingHTTPServer | None = None

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        with self.arrived:
            ok = self.arrived.wait_for(lambda: len(self.received) >= count, timeout)
        assert ok, f"{self.url}: got {len(self.received)} requests, wanted {count}"
        return list(self.received)

    def start(self) -> Subscriber:
        subscriber = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                request = Received(self.path, dict(self.headers.items()), self.rfile.read(length))
                status, headers, body = subscriber.respond(request)
                with subscriber.arrived:  # recorded before the sender sees the answer
                    subscriber.received.append(request)
                    subscriber.arrived.notify_all()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = _QuietServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a sender that timed out and hung up is part of some tests


def reply_with(event) -> Answer:
    """A 200 answer carrying `event` in binary mode, as a function's reply."""
    headers, body = to_http(event)
    return 200, headers, body


def trigger(
    name: str,
    service: str | None = None,
    uri: str | None = None,
    attributes: dict[str, str] | None = None,
    filters: list[dict] | None = None,
    delivery: dict | None = None,
    broker: str = "c2d",
) -> dict:
    """A Trigger manifest shaped like the production ones."""
    subscriber: dict[str, Any] = {}
    if service:
        subscriber["ref"] = {"apiVersion": "serving.knative.dev/v1", "kind": "Service",
                             "name": service}
    if uri:
        subscriber["uri"] = uri
    spec: dict[str, Any] = {"broker": broker, "subscriber": subscriber}
    if attributes is not None:
        spec["filter"] = {"attributes": attributes}
    if filters is not None:
        spec["filters"] = filters
    if delivery is not None:
        spec["delivery"] = delivery
    return {"apiVersion": "eventing.knative.dev/v1", "kind": "Trigger",
            "metadata": {"name": name}, "spec": spec}


def write_manifests(folder: Path, *docs: dict, filename: str = "triggers.yaml") -> Path:
    """Write `docs` as one multi-document YAML file in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / filename
    path.write_text(yaml.safe_dump_all(list(docs), sort_keys=False))
    return path


def wait_until(predicate: Callable[[], object], timeout: float = 10.0, what: str = "") -> None:
    """Wait for `predicate()` to be true, checking every 10 ms; AssertionError at the deadline."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.01)
