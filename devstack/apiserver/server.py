"""The embedded API server: store + API + garbage collector behind a threaded HTTP server."""

from __future__ import annotations

import logging
import socket
import threading
from http.server import ThreadingHTTPServer
from pathlib import Path

import yaml

from . import discovery, schemas
from .api import API, CRD_KEY
from .audit import AuditLog
from .errors import ApiError
from .gc import GarbageCollector
from .handlers import App, Handler
from .resources import ResourceTypes
from .store import Store

log = logging.getLogger(__name__)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request(self, request: socket.socket, client_address: object) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: socket.socket) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """End kept-alive connections so that no handler thread outlives the server."""
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class APIServer:
    """An in-process Kubernetes API server on loopback (see the package docstring)."""

    def __init__(self, crd_files: list[Path] | None = None, data_dir: Path | None = None,
                 log_dir: Path | None = None, host: str = "127.0.0.1", port: int = 0,
                 audit_log: Path | None = None) -> None:
        self.crd_files = [Path(p) for p in crd_files or []]
        self.data_dir = Path(data_dir) if data_dir else None
        self.log_dir = Path(log_dir) if log_dir else None
        self.audit_log = Path(audit_log) if audit_log else None
        self.host, self.port = host, port
        self.url = ""
        self.api: API | None = None
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._gc: GarbageCollector | None = None
        self._app: App | None = None

    def start(self) -> str:
        """Start serving in background threads; returns ``http://127.0.0.1:PORT``."""
        store = Store(self.data_dir)
        self.api = API(store, ResourceTypes())
        self._gc = GarbageCollector(self.api)
        self._gc.start()
        for name in ("default", "kube-system", "kube-public"):
            self.api.ensure_namespace(name)
        for path in self.crd_files:
            self.apply_crds(path)
        self._app = App(self.api, self.log_dir,
                        discovery.version_info(schemas.KUBERNETES_VERSION),
                        AuditLog(self.audit_log) if self.audit_log else None)
        handler = type("BoundHandler", (Handler,), {"app": self._app})
        self._httpd = _HTTPServer((self.host, self.port), handler)
        self.port = self._httpd.server_address[1]
        self.url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        kwargs={"poll_interval": 0.05},
                                        name="apiserver-http", daemon=True)
        self._thread.start()
        return self.url

    def apply_crds(self, path: Path) -> None:
        """Create or replace every CRD in a YAML file (multi-document allowed)."""
        rt = self.api.types.by_key(CRD_KEY)
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            name = doc["metadata"]["name"]
            try:
                current = self.api.get(rt, "", name)
            except ApiError:
                self.api.create(rt, "", doc)
                continue
            doc = dict(doc, metadata=dict(doc["metadata"], resourceVersion=current[
                "metadata"]["resourceVersion"]))
            self.api.update(rt, "", name, doc)

    def stop(self) -> None:
        """Stop serving; open watches and log streams end; the journal is closed."""
        if self._app:
            self._app.stopping = True
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.close_connections()
            self._httpd.server_close()
        if self.api:
            self.api.store.close()        # ends every watch stream and the collector's
        if self._gc:
            self._gc.stop()
        if self._thread:
            self._thread.join(timeout=5)
        if self._app and self._app.audit:
            self._app.audit.close()
        self._httpd = None

    def __enter__(self) -> APIServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
