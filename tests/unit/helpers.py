"""Builders the unit tests share: a valid Workflow, settings, hostile strings, paths, and
a recording HTTP server."""

from __future__ import annotations

import contextlib
import http.server
import ssl
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from shared import settings as settings_module

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "knative" / "crd.yaml"
EXAMPLES_DIR = ROOT / "examples" / "workflows"

# Hostile strings for every user-controlled field: YAML/Jinja syntax, line breaks of every
# kind (incl. the Unicode separators YAML treats as breaks), quotes, anchors, documents.
HOSTILE = [
    "plain",
    "line one\nline two",
    "key: value",
    "- item",
    "{{ secret }}",
    "{% if true %}x{% endif %}",
    "{# comment #}",
    '"double" \'single\' `back`',
    "&anchor value",
    "*anchor",
    "--- \nkind: Pod",
    "...",
    "a\u2028b\u2029c\u0085d",
    "tab\there\r\n",
    "#not a comment",
    "!!python/object:os.system",
    "null",
    "true",
    "0x1F",
    "\\u0041 backslash \\",
    "\x00nul\x07bell\x1bescape",
    "emoji \U0001f600 and bom \ufeff",
    " leading and trailing ",
    "}}{{",
    "]]}}>|",
]


def make_workflow(name: str = "wf-1", namespace: str = "c2d", **stage_overrides: Any) -> dict:
    """A valid Workflow as the API returns it, with one Ocean stage."""
    stage: dict[str, Any] = {
        "index": 0,
        "input": [
            {"index": 0, "id": "did:op:aaa111",
             "url": ["https://example.org/data/a.csv", "https://example.org/data/b.csv"]},
            {"index": 1, "id": "did:op:bbb222", "url": "https://example.org/data/c.csv"},
        ],
        "algorithm": {
            "id": "did:op:algo333",
            "rawcode": "print('hello')",
            "container": {"image": "python", "tag": "3.12-slim", "checksum": "",
                          "entrypoint": "python $ALGO"},
        },
        "compute": {"Instances": 1, "namespace": "ocean-compute", "maxtime": 30},
        "output": {"metadataUri": "https://aquarius.example.org", "publishOutput": 1},
    }
    stage.update(stage_overrides)
    return {
        "apiVersion": "oceanprotocol.com/v1alpha1",
        "kind": "Workflow",
        "metadata": {"name": name, "namespace": namespace,
                     "uid": "0b7c1a1e-9d3c-4c8e-9a57-1f1f2f3f4f5f", "resourceVersion": "7"},
        "spec": {"metadata": {"stages": [stage], "chainId": 8996},
                 "secret": "s3cr3t-value", "stopRequested": False},
    }


def create_workflow(kube: Any, name: str, namespace: str) -> dict:
    """make_workflow's body created through `kube` (a shared.kube.Kube); the stored object."""
    body = make_workflow(name=name, namespace=namespace)
    for field in ("uid", "resourceVersion"):  # the server assigns them
        del body["metadata"][field]
    return kube.create(body)


def load_settings(env: Mapping[str, str] | None = None) -> settings_module.Settings:
    return settings_module.load(dict(env or {}))


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


class _Recording(http.server.BaseHTTPRequestHandler):
    """Answers every GET with an empty list; keeps the path, headers and client name."""

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        peer = self.connection.getpeercert() if isinstance(self.connection, ssl.SSLSocket) \
            else None
        self.server.seen.append({  # type: ignore[attr-defined]
            "path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()},
            "client": dict(pair[0] for pair in peer["subject"]) if peer else None})
        body = b'{"kind": "ConfigMapList", "items": []}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def recording_server(tls: ssl.SSLContext | None = None) -> Iterator[tuple[int, list[dict]]]:
    """An HTTP(S) server on loopback standing in for the API (or a proxy): its port, and
    the requests it has seen (`path`, lower-case `headers`, the client certificate's
    `client` name)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Recording)
    server.seen = []  # type: ignore[attr-defined]
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1], server.seen  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
