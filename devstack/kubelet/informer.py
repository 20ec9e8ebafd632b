"""List+watch of one resource kind over HTTP, the way real controllers do it.

An :class:`Informer` lists the collection (remembering its ``resourceVersion``),
then watches from that version, keeps a local cache of the objects (plain dicts,
exactly as the API server sent them) and calls a handler for every change. A
``410 Gone`` (or any broken stream) makes it re-list; objects that vanished in
between are reported as deleted. Used by the Job controller and the kubelet.

:class:`Rest` makes their calls: plain JSON in and out, so the controllers work
on the same dicts the API server sends.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import urllib3
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from shared.connection import Connection
from shared.kube import ApiHttp, Kind

log = logging.getLogger(__name__)

Handler = Callable[[str, dict], None]  # (ADDED | MODIFIED | DELETED, object)

# The server ends each watch after this long; the informer then resumes from
# its last resourceVersion (no re-list), as client-go does.
WATCH_TIMEOUT_SECONDS = 300


MERGE_PATCH = "application/merge-patch+json"
CALL_TIMEOUT = 30.0


def path(resource: str, namespace: str | None = None, name: str | None = None,
         subresource: str = "", group: str = "") -> str:
    """``/api/v1/...`` or ``/apis/<group>/v1/...`` for a resource (all namespaces without one)."""
    return Kind(resource, group, "v1").path(namespace, name, subresource)


class Rest:
    """JSON calls for the embedded controllers, through shared.kube.ApiHttp.

    Not through the official client's typed methods: those validate every argument
    with pydantic and walk every body, 0.1-0.2 ms of CPU a call in the stack's own
    process, which also runs the Broker and the sources. A non-2xx answer raises the
    client's ApiException, as the typed methods do.
    """

    def __init__(self, api_client: client.ApiClient) -> None:
        self._http = ApiHttp(Connection.of_client(api_client))

    def open(self, method: str, where: str, body: Any = None,
             content_type: str = "application/json", timeout: float | None = CALL_TIMEOUT,
             **query: Any) -> urllib3.BaseHTTPResponse:
        """The response, its body unread (for watches); the caller releases it."""
        return self._http.stream(method, where, body, content_type=content_type,
                                 timeout=urllib3.Timeout(read=timeout), **query)

    def call(self, method: str, where: str, body: Any = None,
             content_type: str = "application/json", **query: Any) -> dict:
        """The decoded answer; ApiException when it is not a 2xx."""
        answer = self._http.request(method, where, body, content_type=content_type,
                                    timeout=CALL_TIMEOUT, **query)
        if not 200 <= answer.status <= 299:
            raise ApiException(status=answer.status, reason=answer.reason,
                               body=answer.data.decode("utf-8", "replace"))
        return json.loads(answer.data) if answer.data else {}

    def get(self, where: str) -> dict | None:
        """The object, or None when it does not exist."""
        try:
            return self.call("GET", where)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise


def key_of(obj: dict) -> str:
    """``namespace/name`` of an object (``name`` for cluster-scoped ones)."""
    meta = obj.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{ns}/{meta.get('name')}" if ns else str(meta.get("name"))


class Informer:
    """Keeps a cache of one collection up to date and reports every change.

    ``collection`` is the collection's path for all namespaces, e.g. ``/api/v1/pods``.
    The handler runs on the informer's own thread; it must be quick (enqueue work,
    don't do it).
    """

    def __init__(self, name: str, rest: Rest, collection: str, handler: Handler) -> None:
        self.name = name
        self._rest = rest
        self._collection = collection
        self._handler = handler
        self._cache: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._synced = threading.Event()
        self._resp: Any = None
        self._thread = threading.Thread(target=self._run, name=f"informer-{name}", daemon=True)

    # -- cache reads -------------------------------------------------------

    def get(self, key: str) -> dict | None:
        with self._lock:
            return self._cache.get(key)

    def items(self) -> list[dict]:
        with self._lock:
            return list(self._cache.values())

    def observe(self, obj: dict) -> None:
        """Put an object this process just wrote (create/patch answer) into the cache.

        The watch event follows shortly; until then a controller reading the
        cache sees its own write instead of acting twice (what client-go's
        "expectations" are for).
        """
        key = key_of(obj)
        with self._lock:
            if not _older(obj, self._cache.get(key)):
                self._cache[key] = obj

    # -- life cycle --------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def wait_synced(self, timeout: float = 10.0) -> bool:
        """True once the first list has been loaded into the cache."""
        return self._synced.wait(timeout)

    def stop(self) -> None:
        self._stop.set()
        resp = self._resp
        if resp is not None:
            try:  # unblocks the read in the watch loop at once
                resp.shutdown()
            except Exception:  # noqa: BLE001 - already closed is fine
                pass
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    # -- internals ---------------------------------------------------------

    def _run(self) -> None:
        rv: str | None = None
        failures = 0
        while not self._stop.is_set():
            try:
                if rv is None:
                    rv = self._relist()
                rv = self._watch(rv)
                failures = 0
            except ApiException as exc:
                if exc.status == 410:
                    log.info("informer %s: resourceVersion %s too old, re-listing", self.name, rv)
                    rv = None
                    continue
                failures += 1
                log.warning("informer %s: %s", self.name, exc)
                rv = None
            except Exception as exc:  # noqa: BLE001 - connection errors, shutdown
                if self._stop.is_set():
                    return
                failures += 1
                log.warning("informer %s: watch broken (%s), re-listing", self.name, exc)
                rv = None
            # back off only after errors, never between healthy watches
            self._stop.wait(min(0.05 * 2**failures, 2.0))

    def _emit(self, kind: str, obj: dict) -> None:
        try:
            self._handler(kind, obj)
        except Exception:  # a handler bug must not stop the watch
            log.exception("informer %s: handler failed on %s %s", self.name, kind, key_of(obj))

    def _relist(self) -> str:
        body = self._rest.call("GET", self._collection)
        fresh = {key_of(o): o for o in body.get("items") or []}
        with self._lock:
            old = self._cache
            self._cache = dict(fresh)
        for key, obj in old.items():
            if key not in fresh:
                self._emit("DELETED", obj)
        for key, obj in fresh.items():
            prev = old.get(key)
            if prev is None:
                self._emit("ADDED", obj)
            elif _rv(prev) != _rv(obj):
                self._emit("MODIFIED", obj)
        self._synced.set()
        return str((body.get("metadata") or {}).get("resourceVersion") or "")

    def _watch(self, rv: str) -> str:
        resp = self._rest.open("GET", self._collection, timeout=None, watch="true",
                               resourceVersion=rv, allowWatchBookmarks="true",
                               timeoutSeconds=str(WATCH_TIMEOUT_SECONDS))
        self._resp = resp
        try:
            if self._stop.is_set():  # stop() ran while this watch was being opened
                return rv
            if not 200 <= resp.status <= 299:
                raise ApiException(http_resp=resp)
            for line in iter_resp_lines(resp):
                if self._stop.is_set():
                    break
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    raise ApiException(status=obj.get("code"), reason=obj.get("message"))
                new_rv = (obj.get("metadata") or {}).get("resourceVersion")
                if new_rv:
                    rv = str(new_rv)
                if kind == "BOOKMARK":
                    continue
                key = key_of(obj)
                with self._lock:
                    if kind == "DELETED":
                        self._cache.pop(key, None)
                    elif not _older(obj, self._cache.get(key)):
                        self._cache[key] = obj
                self._emit(kind, obj)
        finally:
            self._resp = None
            resp.release_conn()
        return rv


def _rv(obj: dict | None) -> str | None:
    return ((obj or {}).get("metadata") or {}).get("resourceVersion")


def _older(obj: dict, cached: dict | None) -> bool:
    """True when ``obj`` is known to be older than ``cached`` (numeric versions only)."""
    try:
        return cached is not None and int(_rv(obj)) < int(_rv(cached))
    except (TypeError, ValueError):
        return False
