"""HTTP: routing of Kubernetes REST paths onto the API, watch streams, logs, discovery."""

from __future__ import annotations

import logging
import queue
import select
import socket
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

from shared.httphead import BadHead, read_fields

from . import codec, discovery, logs, protobuf, tables
from .api import API
from .audit import AuditLog, ObjectRef
from .errors import ApiError, bad_request, gone
from .resources import ResourceType
from .store import Gone, Watcher, watch_line

log = logging.getLogger(__name__)
BOOKMARK_EVERY = 5.0        # seconds of silence before a watch sends a BOOKMARK
IDLE_CHECK = 1.0            # how often an idle watch checks its client is still there
MAX_BODY = 3 * 1024 * 1024  # a real API server's request size limit


class App:
    """What a request handler needs: the API, the pod log folder, the stop flag, the
    audit log (None: no audit)."""

    def __init__(self, api: API, log_dir: Path | None, version: dict[str, str],
                 audit: AuditLog | None = None) -> None:
        self.api = api
        self.log_dir = log_dir
        self.version = version
        self.audit = audit
        self.stopping = False


def _flag(value: str | None) -> bool:
    return (value or "").lower() in ("1", "t", "true")


def _int(query: dict[str, str], name: str) -> int | None:
    if name not in query or query[name] == "":
        return None
    try:
        return int(query[name])
    except ValueError:
        raise bad_request(f"invalid {name}: {query[name]!r}") from None


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "c2d-embedded-apiserver"
    app: App           # set on the subclass made by the server
    _ref: ObjectRef | None = None  # what the request in hand is about, for the audit log
    _sent = 0          # the status code the request in hand was answered with

    def setup(self) -> None:
        super().setup()
        # Small request/response pairs on a kept-alive connection: no Nagle delays.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def parse_request(self) -> bool:
        """The request line and header fields of HTTP/1.0 and 1.1, without `email`.

        The stdlib's reader (`email`) was a sixth of this server's profile in a
        benchmark burst (issue 8); `shared.httphead` is ten times cheaper.
        """
        self.command, self.request_version = None, self.default_request_version
        self.close_connection = True
        self.requestline = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        words = self.requestline.split()
        if not words:
            return False
        if len(words) != 3 or words[2] not in ("HTTP/1.0", "HTTP/1.1"):
            self.request_version = "HTTP/1.1"  # answered with a status line, as HTTP/1.1
            self.send_error(HTTPStatus.BAD_REQUEST, f"Bad request line ({self.requestline!r})")
            return False
        self.command, self.path, self.request_version = words
        if self.path.startswith("//"):
            self.path = "/" + self.path.lstrip("/")
        try:
            self.headers = read_fields(self.rfile)  # type: ignore[assignment]
        except BadHead as error:
            self.send_error(error.code, str(error))
            return False
        connection = self.headers.get("Connection", "").lower()
        self.close_connection = connection == "close" or (
            self.request_version == "HTTP/1.0" and connection != "keep-alive")
        if self.headers.get("Expect", "").lower() == "100-continue" \
                and self.request_version == "HTTP/1.1":
            return self.handle_expect_100()
        return True

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib name)
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:  # noqa: N802 (stdlib naming)
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    # ------------------------------------------------------------------ plumbing

    def _send(self, code: int, body: Any, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else codec.dumps(body)
        head = (f"HTTP/1.1 {code} {self.responses.get(code, ('',))[0]}\r\n"
                f"Content-Type: {content_type}\r\nContent-Length: {len(data)}\r\n"
                f"Cache-Control: no-cache, private\r\n\r\n").encode()
        self.wfile.write(head + data)       # one write: headers and body together
        self._sent = code

    def _body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise bad_request("invalid Content-Length") from None
        if length > MAX_BODY:
            self.close_connection = True      # the unread body makes the connection unusable
            raise ApiError(413, "RequestEntityTooLarge", f"the request body is {length} bytes; "
                           f"the limit is {MAX_BODY}")
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            raise ApiError(411, "BadRequest", "chunked request bodies are not supported; send "
                           "a Content-Length")
        return self.rfile.read(length) if length else b""

    def _json_body(self, raw: bytes) -> Any:
        if not raw.strip():
            return None
        ctype = (self.headers.get("Content-Type") or "").lower()
        if ctype.startswith("application/vnd.kubernetes.protobuf"):
            return protobuf.decode(raw)
        try:
            if "yaml" in ctype:
                return yaml.safe_load(raw)
            return codec.loads(raw)
        except (ValueError, yaml.YAMLError) as e:
            raise bad_request(f"the body of the request could not be decoded: {e}") from None

    def _dispatch(self, method: str) -> None:
        received, self._ref, self._sent = time.time(), None, 0
        self._answer(method)
        if self.app.audit is not None and self._sent:
            self.app.audit.record(method, self.path, self._ref, self._sent, received,
                                  time.time())

    def _answer(self, method: str) -> None:
        try:
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            raw = self._body() if method in ("POST", "PUT", "PATCH", "DELETE") else b""
            self._route(method, url.path, query, raw)
        except ApiError as e:
            self._send(e.code, e.status())
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:  # every failure is still a Status
            log.exception("request %s %s failed", method, self.path)
            self._send(500, ApiError(500, "InternalError", f"Internal error occurred: {e}")
                       .status())

    # ------------------------------------------------------------------ routing

    def _route(self, method: str, path: str, query: dict[str, str], raw: bytes) -> None:
        parts = [p for p in path.split("/") if p]
        app = self.app
        if method == "GET":
            doc = discovery.document(app.api.types, parts, app.version, self.headers)
            if doc is not None:
                self._send(200, doc)
                return
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        ns, plural, name, sub = self._split(rest)
        rt = app.api.types.lookup(group, version, plural) if plural else None
        if rt is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if ns is not None and not rt.namespaced:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if rt.namespaced and name is not None and ns is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if sub is not None and sub not in rt.subresources:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        self._ref = ObjectRef(plural, ns, name, sub, group, version)
        if name is None:
            self._collection(method, rt, ns, query, raw)
        else:
            self._item(method, rt, ns or "", name, sub, query, raw)

    @staticmethod
    def _split(rest: list[str]) -> tuple[str | None, str | None, str | None, str | None]:
        """-> (namespace, plural, name, subresource)."""
        if len(rest) >= 3 and rest[0] == "namespaces" and not (
                len(rest) == 3 and rest[2] in ("status", "finalize")):
            ns, rest = rest[1], rest[2:]
        else:
            ns = None
        padded = rest + [None] * (3 - len(rest))
        if len(rest) > 3 or not rest:
            return ns, None, None, None
        return ns, padded[0], padded[1], padded[2]

    def _collection(self, method: str, rt: ResourceType, ns: str | None,
                    query: dict[str, str], raw: bytes) -> None:
        api = self.app.api
        if method == "GET":
            if _flag(query.get("watch")):
                self._watch(rt, ns, query)
                return
            result = api.list(rt, ns, query.get("labelSelector"), query.get("fieldSelector"))
            self._send(200, self._maybe_table(rt, result, query))
        elif method == "POST":
            body = self._json_body(raw)
            if rt.namespaced and ns is None:
                raise ApiError(405, "MethodNotAllowed", "the server does not allow this method "
                               "on the requested resource")
            created = api.create(rt, ns or "", body, strict=self._strict(rt, query),
                                 dry_run=self._dry_run(query))
            if self._ref is not None:  # a generated name is known only now
                self._ref.name = created["metadata"]["name"]
            self._send(201, created)
        elif method == "DELETE":
            options = self._delete_options(raw, query)
            api.delete_collection(rt, ns, options, query.get("labelSelector"),
                                  query.get("fieldSelector"))
            self._send(200, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                             "status": "Success"})
        else:
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on "
                           "the requested resource")

    def _item(self, method: str, rt: ResourceType, ns: str, name: str, sub: str | None,
              query: dict[str, str], raw: bytes) -> None:
        api = self.app.api
        if sub == "log":
            if method != "GET":
                raise ApiError(405, "MethodNotAllowed", "only GET is allowed on pods/log")
            self._log(ns, name, query)
            return
        if sub == "binding":
            if method != "POST":
                raise ApiError(405, "MethodNotAllowed", "only POST is allowed on pods/binding")
            api.bind(ns, name, self._json_body(raw))
            self._send(201, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                             "status": "Success", "code": 201})
            return
        if method == "GET":
            self._send(200, self._maybe_table(rt, api.get(rt, ns, name), query))
            return
        dry_run = self._dry_run(query)
        strict = self._strict(rt, query)
        if method == "PUT":
            self._send(200, api.update(rt, ns, name, self._json_body(raw), sub, strict, dry_run))
        elif method == "PATCH":
            ctype = self.headers.get("Content-Type") or ""
            self._send(200, api.patch(rt, ns, name, ctype, raw, sub, strict, dry_run))
        elif method == "DELETE" and sub is None:
            obj, removed = api.delete(rt, ns, name, self._delete_options(raw, query), dry_run)
            if removed and rt.kind != "Pod":
                self._send(200, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                 "status": "Success", "details": {
                                     "name": name, "group": rt.group, "kind": rt.plural,
                                     "uid": obj["metadata"]["uid"]}})
            else:
                self._send(200, obj)
        else:
            raise ApiError(405, "MethodNotAllowed", "the server does not allow this method on "
                           "the requested resource")

    @staticmethod
    def _strict(rt: ResourceType, query: dict[str, str]) -> bool:
        """Built-ins always reject unknown fields; custom resources prune them unless Strict."""
        return not rt.custom or query.get("fieldValidation", "") == "Strict"

    @staticmethod
    def _dry_run(query: dict[str, str]) -> bool:
        """``dryRun=All``: validate and answer, store nothing."""
        value = query.get("dryRun")
        if value not in (None, "", "All"):
            raise bad_request(f'unsupported dry run value "{value}": only "All" is allowed')
        return value == "All"

    def _delete_options(self, raw: bytes, query: dict[str, str]) -> dict[str, Any]:
        options = self._json_body(raw) or {}
        if not isinstance(options, dict):
            raise bad_request("DeleteOptions must be an object")
        if "propagationPolicy" in query:
            options["propagationPolicy"] = query["propagationPolicy"]
        if "gracePeriodSeconds" in query:
            options["gracePeriodSeconds"] = _int(query, "gracePeriodSeconds")
        if "orphanDependents" in query:
            options["orphanDependents"] = _flag(query["orphanDependents"])
        return options

    def _maybe_table(self, rt: ResourceType, result: dict[str, Any],
                     query: dict[str, str]) -> dict[str, Any]:
        if "as=Table" not in (self.headers.get("Accept") or ""):
            return result
        items = result["items"] if "items" in result else [result]
        return tables.table(rt, items, result["metadata"].get("resourceVersion", ""),
                            query.get("includeObject", "Metadata"))

    # ------------------------------------------------------------------ streams

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")

    def _end_stream(self) -> None:
        try:
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True

    def _client_gone(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _watch(self, rt: ResourceType, ns: str | None, query: dict[str, str]) -> None:
        api = self.app.api
        bookmarks = _flag(query.get("allowWatchBookmarks"))
        initial = _flag(query.get("sendInitialEvents"))
        rv = query.get("resourceVersion")
        if initial and rv not in (None, "", "0"):
            raise bad_request("sendInitialEvents needs resourceVersion unset or \"0\"")
        if initial:
            rv = None
        timeout = _int(query, "timeoutSeconds")
        try:
            watcher = api.watch(rt, ns, rv, query.get("labelSelector"),
                                query.get("fieldSelector"), initial_end=initial and bookmarks)
        except Gone as e:
            self._start_stream()
            self._chunk(watch_line("ERROR", gone(str(e)).status()))
            self._end_stream()
            return
        self._start_stream()
        as_table = "as=Table" in (self.headers.get("Accept") or "")
        try:
            self._pump(rt, watcher, bookmarks, timeout, as_table)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        finally:
            watcher.close()
        self._end_stream()

    def _pump(self, rt: ResourceType, watcher: Watcher, bookmarks: bool,
              timeout: int | None, as_table: bool) -> None:
        first = True
        deadline = time.monotonic() + timeout if timeout else None
        quiet_since = time.monotonic()
        while not self.app.stopping:
            wait = IDLE_CHECK
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    return
            try:
                item = watcher.next(wait)
            except queue.Empty:
                if self._client_gone():
                    return
                if bookmarks and time.monotonic() - quiet_since >= BOOKMARK_EVERY:
                    rv = self.app.api.store.bookmark(watcher)
                    if rv is not None:
                        self._chunk(self._bookmark(rt, rv, False))
                        quiet_since = time.monotonic()
                continue
            if item is None:
                return
            kind, obj, _ = item
            if kind == "BOOKMARK":
                self._chunk(self._bookmark(rt, obj, True))
            elif as_table:    # kubectl get -w: one-row tables, column definitions once
                self._chunk(watch_line(kind, tables.table(
                    rt, [obj], obj["metadata"]["resourceVersion"], "Metadata", columns=first)))
                first = False
            else:
                self._chunk(Watcher.line(item))
            quiet_since = time.monotonic()

    @staticmethod
    def _bookmark(rt: ResourceType, rv: int, initial_end: bool) -> bytes:
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if initial_end:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        return watch_line("BOOKMARK", {"kind": rt.kind, "apiVersion": rt.api_version,
                                       "metadata": meta})

    def _log(self, ns: str, name: str, query: dict[str, str]) -> None:
        api = self.app.api
        rt = api.types.lookup("", "v1", "pods")
        pod = api.get(rt, ns, name)
        container = logs.pick_container(pod, query.get("container"))
        if self.app.log_dir is None:
            raise bad_request("this API server has no log folder (log_dir) configured")
        path = logs.log_path(self.app.log_dir, ns, name, container)
        if not path.exists():
            raise bad_request(f'container "{container}" in pod "{name}" is waiting to start: '
                              f"ContainerCreating")
        tail = _int(query, "tailLines")
        if not _flag(query.get("follow")):
            self._send(200, logs.read(path, tail, _int(query, "limitBytes")), "text/plain")
            return
        uid = pod["metadata"]["uid"]

        def done() -> bool:
            current = api.store.get(rt.key, (ns, name))
            return current is None or current["metadata"]["uid"] != uid or _terminated(
                current, container)

        self._start_stream()
        try:
            for data in logs.follow(path, tail, done, lambda: self.app.stopping or
                                    self._client_gone()):
                self._chunk(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return
        self._end_stream()


def _terminated(pod: dict[str, Any], container: str) -> bool:
    status = pod.get("status") or {}
    if status.get("phase") in ("Succeeded", "Failed"):
        return True
    for cs in (status.get("containerStatuses") or []) + (status.get("initContainerStatuses")
                                                          or []):
        if cs.get("name") == container and "terminated" in (cs.get("state") or {}):
            return True
    return False


