"""The embedded ApiServerSource: watch the Kubernetes API, send events like Knative's adapter.

Through the official `kubernetes` client (an `ApiClient` from a kubeconfig) it
lists each watched resource and then watches from the list's resourceVersion,
re-listing on 410 Gone. Like the real adapter, whose store ignores the
reflector's Replace, the (re-)list sends nothing: no `add` for objects that
existed at start, and changes inside a re-list gap are lost. Every watch event
becomes one CloudEvent (see `make_apiserver_event`), sent with 5 retries from
50 ms, then dropped.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import urllib3
from cloudevents.core.base import BaseCloudEvent
from kubernetes.client import ApiClient
from kubernetes.watch.watch import iter_resp_lines

from devstack.eventing.delivery import Sender, send_with_retry
from devstack.eventing.events import ce_overrides, make_event
from devstack.eventing.manifests import Manifest, ManifestError

log = logging.getLogger(__name__)

WATCH_TIMEOUT_SECONDS = 300  # the server ends a watch after this; we resume from the last RV
ERROR_PAUSE = 1.0  # before re-trying an API server that failed
EVENT_VERBS = {"ADDED": "add", "MODIFIED": "update", "DELETED": "delete"}


class Gone(Exception):
    """The resourceVersion is too old (410): list again."""


class WatchError(Exception):
    """The API server answered a list or watch with an error."""


def guess_plural(kind: str) -> str:
    """The resource name Kubernetes' UnsafeGuessKindToResource gives (used in `subject`)."""
    singular = kind.lower()
    if singular.endswith("s"):
        return singular + "es"
    if singular.endswith("y"):
        return singular[:-1] + "ies"
    return singular + "s"


def subject_of(api_version: str, namespace: str, kind: str, name: str) -> str:
    """`/apis/<apiVersion>/namespaces/<ns>/<plural>/<name>`, as the adapter's self link."""
    if "." in api_version and "/" not in api_version:  # the adapter's "versionUnknown" hack
        api_version += "/versionUnknown"
    return f"/apis/{api_version}/namespaces/{namespace}/{guess_plural(kind)}/{name}"


def make_apiserver_event(
    source: str,
    verb: str,
    obj: Mapping[str, Any],
    mode: str = "Resource",
    extensions: Mapping[str, str] | None = None,
) -> BaseCloudEvent:
    """The adapter's event for `verb` (add, update, delete) of `obj`: fresh id, time now."""
    metadata = obj.get("metadata") or {}
    api_version, kind = obj.get("apiVersion", ""), obj.get("kind", "")
    name, namespace = metadata.get("name", ""), metadata.get("namespace", "")
    if mode == "Reference":
        event_type = f"dev.knative.apiserver.ref.{verb}"
        data: Any = {k: v for k, v in (("kind", kind), ("namespace", namespace),
                                        ("name", name), ("apiVersion", api_version)) if v}
    else:
        event_type = f"dev.knative.apiserver.resource.{verb}"
        data = obj
    attributes = {
        "type": event_type,
        "source": source,
        "subject": subject_of(api_version, namespace, kind, name),
        "time": datetime.now(UTC),
        "datacontenttype": "application/json",
        "kind": kind,
        "name": name,
        "namespace": namespace,
        "apiversion": api_version,
        **(extensions or {}),
    }
    return make_event(attributes, json.dumps(data).encode("utf-8"))


@dataclass
class WatchedResource:
    """One `spec.resources[]` entry, resolved to its API path."""

    api_version: str
    kind: str
    label_selector: str
    plural: str = ""
    ready: threading.Event = field(default_factory=threading.Event)

    def path(self, namespace: str) -> str:
        prefix = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        return f"{prefix}/namespaces/{namespace}/{self.plural}"


def label_selector(selector: Any, where: str) -> str:
    """A LabelSelector (`matchLabels`, `matchExpressions`) as the `labelSelector` query string."""
    if selector is None:
        return ""
    if not isinstance(selector, Mapping):
        raise ManifestError(f"{where} must be a mapping")
    terms = [f"{k}={v}" for k, v in (selector.get("matchLabels") or {}).items()]
    for i, expression in enumerate(selector.get("matchExpressions") or []):
        at = f"{where}.matchExpressions[{i}]"
        key, operator = expression.get("key"), expression.get("operator")
        values = expression.get("values") or []
        if not key:
            raise ManifestError(f"{at}.key is required")
        if operator in ("In", "NotIn"):
            if not values:
                raise ManifestError(f"{at}.values must not be empty for {operator}")
            terms.append(f"{key} {operator.lower()} ({','.join(values)})")
        elif operator in ("Exists", "DoesNotExist"):
            if values:
                raise ManifestError(f"{at}.values must be empty for {operator}")
            terms.append(key if operator == "Exists" else f"!{key}")
        else:
            raise ManifestError(f"{at}.operator must be In, NotIn, Exists or DoesNotExist")
    return ",".join(terms)


class ApiServerSource:
    """One ApiServerSource manifest watching through `api_client`, sending to `sink`."""

    def __init__(
        self,
        manifest: Manifest,
        sink: str,
        api_client: ApiClient,
        namespace: str = "default",
        sender: Sender | None = None,
    ) -> None:
        spec, where = manifest.spec, manifest.where
        self.name = manifest.name
        self.namespace = manifest.namespace or namespace
        self.sink = sink
        self.api = api_client
        self.source = api_client.configuration.host
        self.mode = spec.get("mode", "Reference")
        if self.mode not in ("Resource", "Reference"):
            raise ManifestError(f"{where}: spec.mode must be Resource or Reference")
        if spec.get("namespaceSelector"):
            raise ManifestError(f"{where}: spec.namespaceSelector is not supported by the "
                                "embedded ApiServerSource (it watches its own namespace)")
        self.owner = spec.get("owner")
        self.extensions = ce_overrides(spec, where)
        resources = spec.get("resources")
        if not isinstance(resources, list) or not resources:
            raise ManifestError(f"{where}: spec.resources must be a non-empty list")
        self.resources = []
        for i, resource in enumerate(resources):
            at = f"{where}: spec.resources[{i}]"
            if not isinstance(resource, Mapping) or not resource.get("apiVersion") \
                    or not resource.get("kind"):
                raise ManifestError(f"{at} needs apiVersion and kind")
            self.resources.append(WatchedResource(
                resource["apiVersion"], resource["kind"],
                label_selector(resource.get("selector"), f"{at}.selector")))
        self._sender = sender or Sender()
        self._own_sender = sender is None
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._responses: set[Any] = set()
        self._lock = threading.Lock()
        self.sent = 0
        self.dropped = 0
        self.watches = 0  # watch requests made (they end and resume; tests observe it)

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> ApiServerSource:
        """Resolve each resource's plural (discovery) and watch each in its own thread."""
        for resource in self.resources:
            resource.plural = self._plural(resource)
            thread = threading.Thread(target=self._watch_forever, args=(resource,),
                                      name=f"apiserversource-{self.name}-{resource.kind}",
                                      daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def wait_ready(self, timeout: float = 10.0) -> bool:
        """True once every resource has been listed (later changes will be sent)."""
        return all(r.ready.wait(timeout) for r in self.resources)

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            for response in self._responses:
                response.shutdown()  # unblocks a thread reading the watch stream
        for thread in self._threads:
            thread.join()
        self._threads.clear()
        if self._own_sender:
            self._sender.close()

    # -- API access --------------------------------------------------------

    def _get(self, path: str, query: list[tuple[str, str]], timeout: Any = None) -> Any:
        method, url, headers, _, _ = self.api.param_serialize(
            method="GET", resource_path=path, query_params=query,
            header_params={"Accept": "application/json"}, auth_settings=["BearerToken"],
        )
        return self.api.call_api(method, url, header_params=headers, _request_timeout=timeout)

    def _get_json(self, path: str, query: list[tuple[str, str]]) -> dict[str, Any]:
        response = self._get(path, query, timeout=30)
        body = response.read()
        if response.status == 410:
            raise Gone()
        if not 200 <= response.status < 300:
            raise WatchError(f"GET {path}: HTTP {response.status}: {body[:300]!r}")
        return json.loads(body)

    def _plural(self, resource: WatchedResource) -> str:
        """The resource name from discovery, as the real adapter's RESTMapper finds it."""
        prefix = "/api/v1" if resource.api_version == "v1" else f"/apis/{resource.api_version}"
        try:
            listing = self._get_json(prefix, [])
        except (WatchError, ValueError, urllib3.exceptions.HTTPError) as exc:
            log.warning("apiserversource %s: discovery of %s failed (%s); guessing the plural",
                        self.name, prefix, exc)
            return guess_plural(resource.kind)
        for api_resource in listing.get("resources", []):
            if api_resource.get("kind") == resource.kind and "/" not in api_resource["name"]:
                return api_resource["name"]
        raise ManifestError(f"ApiServerSource {self.name}: the API server does not serve "
                            f"{resource.kind} in {resource.api_version}")

    # -- watching ----------------------------------------------------------

    def _watch_forever(self, resource: WatchedResource) -> None:
        version: str | None = None
        while not self._stop.is_set():
            try:
                if version is None:
                    version = self._list(resource)
                    resource.ready.set()
                version = self._watch(resource, version)
            except Gone:
                log.info("apiserversource %s: %s watch expired; listing again (changes "
                         "meanwhile are not sent)", self.name, resource.kind)
                version = None
            except Exception as exc:  # API down or a bad answer: pause and resume
                if self._stop.is_set():
                    return
                log.warning("apiserversource %s: watching %s failed: %s",
                            self.name, resource.kind, exc)
                self._stop.wait(ERROR_PAUSE)

    def _list(self, resource: WatchedResource) -> str:
        """List once for a starting resourceVersion; like the adapter, send nothing."""
        query = [("labelSelector", resource.label_selector)] if resource.label_selector else []
        listing = self._get_json(resource.path(self.namespace), query)
        return str((listing.get("metadata") or {}).get("resourceVersion", ""))

    def _watch(self, resource: WatchedResource, version: str) -> str:
        """Stream watch events from `version` until the server ends the watch."""
        query = [("watch", "true"), ("resourceVersion", version),
                 ("allowWatchBookmarks", "true"),
                 ("timeoutSeconds", str(WATCH_TIMEOUT_SECONDS))]
        if resource.label_selector:
            query.append(("labelSelector", resource.label_selector))
        response = self._get(resource.path(self.namespace), query, timeout=(10, None))
        raw = response.response
        with self._lock:
            self._responses.add(raw)
            self.watches += 1
        try:
            if self._stop.is_set():
                return version
            if response.status == 410:
                raise Gone()
            if not 200 <= response.status < 300:
                raise WatchError(f"watch {resource.kind}: HTTP {response.status}: "
                                 f"{response.read()[:300]!r}")
            for line in iter_resp_lines(raw):
                if not line.strip():
                    continue
                version = self._handle(resource, json.loads(line), version)
        finally:
            with self._lock:
                self._responses.discard(raw)
            raw.release_conn()
        return version

    def _handle(self, resource: WatchedResource, event: dict[str, Any], version: str) -> str:
        kind, obj = event.get("type"), event.get("object") or {}
        if kind == "ERROR":
            if obj.get("code") == 410:
                raise Gone()
            raise WatchError(f"watch {resource.kind}: {obj.get('message') or obj}")
        version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
        verb = EVENT_VERBS.get(kind)
        if verb is None:  # BOOKMARK: only the resourceVersion moves
            return version
        obj.setdefault("apiVersion", resource.api_version)
        obj.setdefault("kind", resource.kind)
        if self.owner and not _owned_by(obj, self.owner):
            return version
        self._send(make_apiserver_event(self.source, verb, obj, self.mode, self.extensions))
        return version

    def _send(self, event: BaseCloudEvent) -> None:
        response = send_with_retry(self._sender, self.sink, event, stop=self._stop)
        ok = response.status is not None and 200 <= response.status < 300
        with self._lock:
            if ok:
                self.sent += 1
            else:
                self.dropped += 1
        if not ok:
            log.warning("apiserversource %s: dropped %s %s: %s", self.name, event.get_type(),
                        event.get_subject(), response.error or f"HTTP {response.status}")


def _owned_by(obj: Mapping[str, Any], owner: Mapping[str, Any]) -> bool:
    """`spec.owner`: keep objects with an ownerReference of that apiVersion and kind."""
    for reference in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if reference.get("kind") == owner.get("kind") and \
                reference.get("apiVersion") == owner.get("apiVersion"):
            return True
    return False

