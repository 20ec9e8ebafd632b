"""The one way c2d talks to Kubernetes.

Objects go in and come out as plain dicts (what the API serves), through the
official client. Every call names a permission `(resource, verb)`; a `Kube`
built with a function's declared permissions refuses any other call, so a
function that uses a verb its Role lacks fails in tests, not in production
(see knative/rbac.yaml and tests/knative/test_rbac.py).
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from shared import workflow as wf

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
    """How to reach one kind through the typed client."""

    resource: str  # plural, as RBAC names it
    group: str
    version: str
    api: str  # client class name; CustomObjectsApi for custom resources
    suffix: str = ""  # the typed client's method suffix, e.g. "namespaced_config_map"


KINDS: dict[str, Kind] = {
    "ConfigMap": Kind("configmaps", "", "v1", "CoreV1Api", "namespaced_config_map"),
    "Secret": Kind("secrets", "", "v1", "CoreV1Api", "namespaced_secret"),
    "PersistentVolumeClaim": Kind("persistentvolumeclaims", "", "v1", "CoreV1Api",
                                  "namespaced_persistent_volume_claim"),
    "Pod": Kind("pods", "", "v1", "CoreV1Api", "namespaced_pod"),
    "Job": Kind("jobs", "batch", "v1", "BatchV1Api", "namespaced_job"),
    "NetworkPolicy": Kind("networkpolicies", "networking.k8s.io", "v1", "NetworkingV1Api",
                          "namespaced_network_policy"),
    "Workflow": Kind(wf.PLURAL, wf.GROUP, wf.VERSION, "CustomObjectsApi"),
}


def api_client(kubeconfig: str | None = None) -> client.ApiClient:
    """A client from the in-cluster service account, else from a kubeconfig."""
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        configuration = client.Configuration()
        config.load_incluster_config(client_configuration=configuration)
    else:
        configuration = client.Configuration()
        config.load_kube_config(config_file=kubeconfig, client_configuration=configuration)
    # Handlers must answer quickly; a hung API call becomes a retried 5xx instead.
    configuration.retries = False
    return client.ApiClient(configuration)


class Kube:
    """Kubernetes access for one function, limited to its declared permissions."""

    def __init__(self, api: client.ApiClient | None = None,
                 permissions: Iterable[Permission] | None = None, timeout: float = 10.0):
        self.api = api or api_client()
        self.permissions = frozenset(permissions) if permissions is not None else None
        self.timeout = timeout
        self._typed: dict[str, Any] = {}

    # ------------------------------------------------------------ plumbing

    def _check(self, kind: Kind, verb: str, subresource: str = "") -> None:
        resource = f"{kind.resource}/{subresource}" if subresource else kind.resource
        if self.permissions is not None and (resource, verb) not in self.permissions:
            raise NotPermitted(f"{verb} {resource} is not among this function's permissions",
                               status=403, reason="Forbidden")

    def _client(self, kind: Kind) -> Any:
        if kind.api not in self._typed:
            self._typed[kind.api] = getattr(client, kind.api)(self.api)
        return self._typed[kind.api]

    def _call(self, kind: Kind, verb: str, namespace: str, name: str | None = None,
              body: Any = None, subresource: str = "", **query: Any) -> Any:
        """Call `verb` on `kind` and return the decoded JSON body."""
        self._check(kind, verb, subresource)
        method, args = _typed_call(kind, verb, namespace, name, subresource)
        kwargs = {k: v for k, v in query.items() if v is not None}
        if body is not None:
            kwargs["body"] = body
        try:
            response = getattr(self._client(kind), method)(
                *args, _preload_content=False, _request_timeout=self.timeout, **kwargs)
        except ApiException as error:
            raise _error(error, f"{verb} {kind.resource} {namespace}/{name or ''}") from None
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise KubeError(f"{verb} {kind.resource}: API unreachable: {error}") from None
        data = response.data
        return json.loads(data) if data else {}

    # ------------------------------------------------------------ verbs

    def get(self, kind: str, namespace: str, name: str) -> dict | None:
        """The object, or None when it does not exist."""
        try:
            return self._call(KINDS[kind], "get", namespace, name)
        except KubeError as error:
            if error.status == 404:
                return None
            raise

    def list(self, kind: str, namespace: str, label_selector: str | None = None) -> list[dict]:
        found = self._call(KINDS[kind], "list", namespace, label_selector=label_selector)
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
        self._check(KINDS["Pod"], "get", "log")
        try:
            response = self._client(KINDS["Pod"]).read_namespaced_pod_log(
                name, namespace, tail_lines=tail_lines, _preload_content=False,
                _request_timeout=self.timeout)
        except ApiException as error:
            raise _error(error, f"log of pod {namespace}/{name}") from None
        return response.data.decode("utf-8", "replace")

    # ------------------------------------------------------------ compare-and-set

    def update_status(self, kind: str, namespace: str, name: str,
                      change: Callable[[dict], dict | None], attempts: int = 10) -> dict | None:
        """Apply a pure `change(object) -> new status | None` with compare-and-set.

        Reads the object, asks `change` for its new status (None: nothing to do),
        writes it with the read resourceVersion, and on 409 starts again from a
        fresh read. Returns the object as written; None when nothing was written
        (`change` said so, or the object does not exist).
        """
        return self._compare_and_set(kind, namespace, name, change, "status", attempts)

    def update(self, kind: str, namespace: str, name: str,
               change: Callable[[dict], dict | None], attempts: int = 10) -> dict | None:
        """Like update_status for a whole object: `change` returns the new object."""
        return self._compare_and_set(kind, namespace, name, change, "", attempts)

    def _compare_and_set(self, kind: str, namespace: str, name: str,
                         change: Callable[[dict], dict | None], subresource: str,
                         attempts: int) -> dict | None:
        for attempt in range(attempts):
            current = self.get(kind, namespace, name)
            if current is None:
                return None
            new = change(current)
            if new is None:
                return None
            body = {**current, "status": new} if subresource == "status" else new
            try:
                return self.replace(body, subresource=subresource)
            except Conflict:
                log.debug("conflict on %s %s/%s, retrying", kind, namespace, name)
                time.sleep(min(0.005 * 2**attempt, 0.2))
        raise Conflict(f"{kind} {namespace}/{name}: still conflicting after {attempts} attempts",
                       status=409, reason="Conflict")


_VERBS = {"get": "read", "list": "list", "create": "create", "update": "replace",
          "delete": "delete"}


def _typed_call(kind: Kind, verb: str, namespace: str, name: str | None,
                subresource: str) -> tuple[str, list[Any]]:
    """The typed client's method name and positional arguments for one call."""
    if kind.api == "CustomObjectsApi":
        method = ("get" if verb == "get" else _VERBS[verb]) + "_namespaced_custom_object"
        args = [kind.group, kind.version, namespace, kind.resource]
        if name is not None:
            args.append(name)
    else:
        method = f"{_VERBS[verb]}_{kind.suffix}"
        args = [namespace] if name is None else [name, namespace]
    return method + (f"_{subresource}" if subresource else ""), args


def _error(error: ApiException, what: str) -> KubeError:
    reason, message = "", error.reason or ""
    try:
        status = json.loads(error.body or "{}")
        reason, message = status.get("reason", ""), status.get("message", message)
    except ValueError:
        pass
    cls = Conflict if error.status == 409 else KubeError
    return cls(f"{what}: {error.status} {message}", status=error.status or 0, reason=reason)
