"""The one way c2d talks to Kubernetes.

Objects go in and come out as plain dicts (what the API serves), as plain JSON
over the connection `shared.connection` sets up. Every call names a permission
`(resource, verb)`; a `Kube` built with a function's declared permissions refuses
any other call, so a function that uses a verb its Role lacks fails in tests, not
in production (see knative/rbac.yaml and tests/knative/test_rbac.py).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote, urlencode

import urllib3

from shared import keepalive
from shared import workflow as wf
from shared.connection import Connection, Credentials, connect
from shared.httphead import HeaderFields
from shared.keepalive import Answer

log = logging.getLogger(__name__)

Permission = tuple[str, str]  # (resource, verb), e.g. ("jobs", "create")


class KubeError(RuntimeError):
    """A Kubernetes call failed; `status` is the HTTP code (0 when unreachable)."""

    def __init__(self, message: str, status: int = 0, reason: str = ""):
        self.status = status
        self.reason = reason
        super().__init__(message)

    @property
    def transient(self) -> bool:
        """Worth retrying later: unreachable, throttled or a server-side failure."""
        return self.status == 0 or self.status == 429 or self.status >= 500


class Conflict(KubeError):
    """409: a stale resourceVersion or an object that already exists."""


class NotPermitted(KubeError):
    """The calling function has not declared this permission."""


@dataclass(frozen=True)
class Kind:
    """Where one kind lives in the API."""

    resource: str  # plural, as RBAC names it
    group: str
    version: str

    def path(self, namespace: str | None, name: str | None = None, subresource: str = "") -> str:
        """The object's path (the collection's without a name; all namespaces' without one)."""
        path = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if namespace is not None:
            path += f"/namespaces/{quote(namespace, safe='')}"
        path += f"/{self.resource}"
        if name is not None:
            path += f"/{quote(name, safe='')}"
        return f"{path}/{subresource}" if subresource else path


KINDS: dict[str, Kind] = {
    "ConfigMap": Kind("configmaps", "", "v1"),
    "Secret": Kind("secrets", "", "v1"),
    "PersistentVolumeClaim": Kind("persistentvolumeclaims", "", "v1"),
    "Pod": Kind("pods", "", "v1"),
    "Job": Kind("jobs", "batch", "v1"),
    "NetworkPolicy": Kind("networkpolicies", "networking.k8s.io", "v1"),
    "Workflow": Kind(wf.PLURAL, wf.GROUP, wf.VERSION),
}
HTTP_VERBS = {"get": "GET", "list": "GET", "create": "POST", "update": "PUT",
              "delete": "DELETE"}


class Kube:
    """Kubernetes access for one function, limited to its declared permissions.

    Without a connection: in a pod its ServiceAccount, else the kubeconfig
    (`shared.connection.connect`).
    """

    def __init__(self, connection: Connection | None = None,
                 permissions: Iterable[Permission] | None = None, timeout: float = 10.0):
        self.connection = connection or connect()
        self.http = ApiHttp(self.connection)
        self.permissions = frozenset(permissions) if permissions is not None else None
        self.timeout = timeout

    # ------------------------------------------------------------ plumbing

    def _check(self, kind: Kind, verb: str, subresource: str = "") -> None:
        resource = f"{kind.resource}/{subresource}" if subresource else kind.resource
        if self.permissions is not None and (resource, verb) not in self.permissions:
            raise NotPermitted(f"{verb} {resource} is not among this function's permissions",
                               status=403, reason="Forbidden")

    def _call(self, kind: Kind, verb: str, namespace: str, name: str | None = None,
              body: Any = None, subresource: str = "", **query: Any) -> Any:
        """Call `verb` on `kind` and return the decoded JSON body."""
        self._check(kind, verb, subresource)
        what = f"{verb} {kind.resource} {namespace}/{name or ''}"
        data = self._request(HTTP_VERBS[verb], kind.path(namespace, name, subresource), what,
                             body=body, **query)
        return json.loads(data) if data else {}

    def _request(self, method: str, path: str, what: str, body: Any = None,
                 accept: str = "application/json", **query: Any) -> bytes:
        """One HTTP request; the body of a 2xx answer, else KubeError."""
        try:
            response = self.http.request(method, path, body, accept=accept,
                                         timeout=self.timeout, **query)
        except (urllib3.exceptions.HTTPError, http.client.HTTPException, OSError) as error:
            raise KubeError(f"{what}: API unreachable: {error}") from None
        if not 200 <= response.status < 300:
            raise _error(response.status, response.data, response.reason, what)
        return response.data

    # ------------------------------------------------------------ verbs

    def get(self, kind: str, namespace: str, name: str) -> dict | None:
        """The object, or None when it does not exist."""
        try:
            return self._call(KINDS[kind], "get", namespace, name)
        except KubeError as error:
            if error.status == 404:
                return None
            raise

    def list(self, kind: str, namespace: str, label_selector: str | None = None,
             field_selector: str | None = None) -> list[dict]:
        found = self._call(KINDS[kind], "list", namespace, labelSelector=label_selector,
                           fieldSelector=field_selector)
        return found.get("items", [])

    def create(self, obj: dict) -> dict:
        kind = KINDS[obj["kind"]]
        return self._call(kind, "create", obj["metadata"]["namespace"], body=obj)

    def create_or_get(self, obj: dict) -> dict:
        """Create `obj`; when it already exists, return the existing one instead."""
        try:
            return self.create(obj)
        except Conflict as error:
            if error.reason != "AlreadyExists":
                raise
        existing = self.get(obj["kind"], obj["metadata"]["namespace"], obj["metadata"]["name"])
        if existing is None:  # deleted in between: try once more
            return self.create(obj)
        return existing

    def get_or_create(self, obj: dict) -> dict:
        """The object as stored; `obj` is created first when it does not exist.

        For objects that almost always exist: one read, where create_or_get
        would try a create that conflicts first.
        """
        metadata = obj["metadata"]
        return self.get(obj["kind"], metadata["namespace"], metadata["name"]) \
            or self.create_or_get(obj)

    def replace(self, obj: dict, subresource: str = "") -> dict:
        """PUT `obj`; its resourceVersion makes this a compare-and-set (Conflict)."""
        kind = KINDS[obj["kind"]]
        metadata = obj["metadata"]
        return self._call(kind, "update", metadata["namespace"], metadata["name"], body=obj,
                          subresource=subresource)

    def delete(self, kind: str, namespace: str, name: str,
               propagation: str = "Background") -> bool:
        """Delete; False when it was already gone."""
        try:
            self._call(KINDS[kind], "delete", namespace, name,
                       body={"propagationPolicy": propagation})
            return True
        except KubeError as error:
            if error.status == 404:
                return False
            raise

    def pod_log(self, namespace: str, name: str, tail_lines: int | None = None) -> str:
        pod = KINDS["Pod"]
        self._check(pod, "get", "log")
        data = self._request("GET", pod.path(namespace, name, "log"),
                             f"log of pod {namespace}/{name}", accept="*/*",
                             tailLines=tail_lines)
        return data.decode("utf-8", "replace")

    # ------------------------------------------------------------ compare-and-set

    def update_status(self, kind: str, namespace: str, name: str,
                      change: Callable[[dict], dict | None], attempts: int = 10,
                      known: dict | None = None) -> dict | None:
        """Apply a pure `change(object) -> new status | None` with compare-and-set.

        Reads the object, asks `change` for its new status (None: nothing to do),
        writes it with the read resourceVersion, and on 409 starts again from a
        fresh read. `known`, a copy the caller read moments ago, stands in for the
        first read: when it is stale the write conflicts and a fresh read follows.
        Returns the object as written; None when nothing was written (`change`
        said so, or the object does not exist).
        """
        return self._compare_and_set(kind, namespace, name, change, "status", attempts, known)

    def update(self, kind: str, namespace: str, name: str,
               change: Callable[[dict], dict | None], attempts: int = 10,
               known: dict | None = None) -> dict | None:
        """Like update_status for a whole object: `change` returns the new object."""
        return self._compare_and_set(kind, namespace, name, change, "", attempts, known)

    def _compare_and_set(self, kind: str, namespace: str, name: str,
                         change: Callable[[dict], dict | None], subresource: str,
                         attempts: int, known: dict | None) -> dict | None:
        # Without a resourceVersion a PUT is not a compare-and-set: such a copy is not used.
        if known is not None and not known.get("metadata", {}).get("resourceVersion"):
            known = None
        for attempt in range(attempts):
            current = known if attempt == 0 and known else self.get(kind, namespace, name)
            if current is None:
                return None
            new = change(current)
            if new is None:
                if current is known:  # `known` may be stale: decide on a fresh read
                    continue
                return None
            body = {**current, "status": new} if subresource == "status" else new
            try:
                return self.replace(body, subresource=subresource)
            except Conflict:
                log.debug("conflict on %s %s/%s, retrying", kind, namespace, name)
                # The write that won is already stored: the first retry reads it at
                # once; only a writer that keeps losing backs off.
                if 0 < attempt < attempts - 1:
                    time.sleep(min(0.005 * 2 ** (attempt - 1), 0.2))
        raise Conflict(f"{kind} {namespace}/{name}: still conflicting after {attempts} attempts",
                       status=409, reason="Conflict")


class ApiHttp:
    """Plain JSON requests over a `Connection`: its host, auth headers and pool.

    Not through the official client's request path: c2d reads and writes plain
    JSON, and that path (its typed API classes, ~23 MB per worker; pydantic
    validation of every argument, its body walk and per-call auth refresh, a third
    of an admission's CPU) does nothing for it. Requests read whole go over this
    thread's kept-alive `http.client` connection (`shared.keepalive`), with the
    pool's TLS settings; through a proxy, or with settings that module does not
    read, they go through the urllib3 pool, as streams (watches) always do.
    """

    # Not following redirects and not retrying: a handler must answer quickly, and a
    # hung call becomes a retried 5xx instead. Built once, where urllib3 would build it
    # on every call.
    NO_RETRIES = urllib3.Retry(total=False, redirect=False)

    def __init__(self, connection: Connection):
        self.host = connection.host
        self._auth = AuthHeaders(connection.credentials)
        manager = connection.pool
        self._origin = direct_origin(manager, self.host)
        # Straight to the host's connection pool, with paths: the manager would parse the
        # URL and look the pool up again on every call, a sixth of a call's CPU. A proxy's
        # manager must see whole URLs, so it keeps them; so does a host urllib3 refuses,
        # for the first call to report (as "API unreachable") rather than this one.
        self._opener, self._prefix = manager, self.host
        if not isinstance(manager, urllib3.ProxyManager):
            with contextlib.suppress(urllib3.exceptions.LocationValueError):
                self._opener, self._prefix = manager.connection_from_url(self.host), ""

    def request(self, method: str, path: str, body: Any = None, *,
                content_type: str = "application/json", accept: str = "application/json",
                timeout: float, **query: Any) -> Answer:
        """The answer read whole, whatever its status; OSError, http.client.HTTPException
        or urllib3.exceptions.HTTPError when there is none."""
        target, headers, payload = self._prepare(path, body, content_type, accept, query)
        if self._origin is not None:
            return _CONNECTIONS.request(self._origin, method, target, payload, headers, timeout)
        response = self._urlopen(method, target, payload, headers,
                                 urllib3.Timeout(total=timeout), preload=True)
        fields = HeaderFields()  # the first of a repeated field, as over keepalive
        for name, value in response.headers.items():
            fields.setdefault(name.lower(), value)
        return Answer(response.status, response.reason or "", fields, response.data)

    def stream(self, method: str, path: str, body: Any = None, *,
               content_type: str = "application/json", accept: str = "application/json",
               timeout: urllib3.Timeout, **query: Any) -> urllib3.BaseHTTPResponse:
        """The answer with its body unread (a watch), through the urllib3 pool."""
        target, headers, payload = self._prepare(path, body, content_type, accept, query)
        return self._urlopen(method, target, payload, headers, timeout, preload=False)

    def _prepare(self, path: str, body: Any, content_type: str, accept: str,
                 query: dict[str, Any]) -> tuple[str, dict[str, str], bytes | None]:
        params = [(k, v) for k, v in query.items() if v is not None]
        target = path + (f"?{urlencode(params)}" if params else "")
        headers = {"Accept": accept, **self._auth.headers()}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = content_type
        return target, headers, payload

    def _urlopen(self, method: str, target: str, payload: bytes | None, headers: dict[str, str],
                 timeout: urllib3.Timeout, preload: bool) -> urllib3.BaseHTTPResponse:
        return self._opener.urlopen(method, self._prefix + target, body=payload,
                                    headers=headers, retries=self.NO_RETRIES, redirect=False,
                                    timeout=timeout, preload_content=preload)


_CONNECTIONS = keepalive.Connections()
# The urllib3 pool settings `direct_origin` carries over; any other keeps urllib3.
_DIRECT_SETTINGS = {"ca_certs", "ca_cert_data", "cert_file", "key_file", "cert_reqs",
                    "server_hostname", "assert_hostname", "maxsize", "block", "retries",
                    "socket_options"}


def direct_origin(manager: urllib3.PoolManager, host: str) -> keepalive.Origin | None:
    """`host` with `manager`'s TLS settings, for kept-alive connections; None when
    `manager` is a proxy's or has settings this does not carry over."""
    settings = {key: value for key, value in manager.connection_pool_kw.items()
                if value is not None}
    if type(manager) is not urllib3.PoolManager or not set(settings) <= _DIRECT_SETTINGS \
            or isinstance(settings.get("assert_hostname"), str):
        return None
    try:
        origin = keepalive.Origin.of(host)
    except ValueError:
        return None
    if origin.scheme == "http":
        return origin
    try:
        tls = ssl.create_default_context(cafile=settings.get("ca_certs"),
                                         cadata=settings.get("ca_cert_data"))
        if settings.get("cert_reqs") in (ssl.CERT_NONE, "CERT_NONE", "NONE"):
            tls.check_hostname = False
            tls.verify_mode = ssl.CERT_NONE
        elif settings.get("assert_hostname") is False:
            tls.check_hostname = False
        if settings.get("cert_file"):
            tls.load_cert_chain(settings["cert_file"], settings.get("key_file"))
    except (OSError, ValueError):  # urllib3 meets it on the first call and reports it there
        return None
    return replace(origin, tls=tls, server_hostname=settings.get("server_hostname"))


class AuthHeaders:
    """A connection's auth headers, asked for at most every REFRESH_SECONDS.

    A token file is read again, and an official client's kubeconfig refresh hook
    re-applies the whole file (a scan of the environment for proxies): not on every
    call. Asking every few seconds keeps a rotated token current.
    """

    REFRESH_SECONDS = 5.0

    def __init__(self, credentials: Credentials):
        self.credentials = credentials
        self._lock = threading.Lock()
        self._headers: dict[str, str] = {}
        self._until = 0.0

    def headers(self) -> dict[str, str]:
        now = time.monotonic()
        with self._lock:
            if now >= self._until:
                self._headers = self.credentials()
                self._until = now + self.REFRESH_SECONDS
            return self._headers


def _error(status: int, body: Any, reason: str | None, what: str) -> KubeError:
    """A KubeError from an API answer, with the Status object's reason and message."""
    kind_of_failure, message = "", reason or ""
    try:
        answer = json.loads(body or "{}")
        kind_of_failure, message = answer.get("reason", ""), answer.get("message", message)
    except (ValueError, AttributeError):
        pass
    cls = Conflict if status == 409 else KubeError
    return cls(f"{what}: {status} {message}", status=status, reason=kind_of_failure)
