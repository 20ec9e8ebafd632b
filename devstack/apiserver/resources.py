"""The resource types the server serves: built-ins and those defined by CRDs."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Column:
    """A printer column of a custom resource (``additionalPrinterColumns``)."""

    name: str
    type: str
    json_path: str
    description: str = ""
    priority: int = 0
    format: str = ""


@dataclass(frozen=True)
class ResourceType:
    group: str                 # "" for the core group
    version: str
    kind: str
    plural: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    status_subresource: bool = False
    generation: bool = False   # metadata.generation tracked (bumped on spec change)
    subresources: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    # Custom resources only.
    schema: dict[str, Any] | None = field(default=None, compare=False, hash=False)
    columns: tuple[Column, ...] = ()
    custom: bool = False
    selectable: tuple[str, ...] = ()  # field selector paths (`selectableFields`)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def key(self) -> str:
        """Storage key: one store bucket per group and plural."""
        return f"{self.group}/{self.plural}"

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def list_kind(self) -> str:
        return self.kind + "List"

    def base_path(self, namespace: str | None) -> str:
        root = f"/apis/{self.group}/{self.version}" if self.group else "/api/v1"
        if self.namespaced and namespace:
            return f"{root}/namespaces/{namespace}/{self.plural}"
        return f"{root}/{self.plural}"


def _core(kind: str, plural: str, namespaced: bool = True, **kw: Any) -> ResourceType:
    return ResourceType("", "v1", kind, plural, namespaced, **kw)


BUILTINS: tuple[ResourceType, ...] = (
    _core("Namespace", "namespaces", namespaced=False, short_names=("ns",),
          status_subresource=True, subresources=("status", "finalize")),
    _core("ConfigMap", "configmaps", short_names=("cm",)),
    _core("Secret", "secrets"),
    _core("PersistentVolumeClaim", "persistentvolumeclaims", short_names=("pvc",),
          status_subresource=True, subresources=("status",)),
    _core("Pod", "pods", short_names=("po",), status_subresource=True,
          subresources=("status", "log", "binding"), categories=("all",)),
    _core("Event", "events", short_names=("ev",)),
    ResourceType("batch", "v1", "Job", "jobs", True, status_subresource=True, generation=True,
                 subresources=("status",), categories=("all",)),
    ResourceType("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", True,
                 short_names=("netpol",), generation=True),
    ResourceType("coordination.k8s.io", "v1", "Lease", "leases", True),
    ResourceType("apiextensions.k8s.io", "v1", "CustomResourceDefinition",
                 "customresourcedefinitions", False, short_names=("crd", "crds"),
                 status_subresource=True, generation=True, subresources=("status",)),
)


def from_crd(crd: dict[str, Any]) -> list[ResourceType]:
    """One ResourceType per served version of a CRD."""
    spec = crd["spec"]
    names = spec["names"]
    out = []
    for version in spec.get("versions", []):
        if not version.get("served", True):
            continue
        subresources = version.get("subresources") or {}
        columns = tuple(
            Column(c["name"], c.get("type", "string"), c["jsonPath"], c.get("description", ""),
                   int(c.get("priority", 0)), c.get("format", ""))
            for c in version.get("additionalPrinterColumns") or ())
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        # `.status.phase` in the CRD is `status.phase` in a field selector.
        selectable = tuple(f["jsonPath"].lstrip(".")
                           for f in version.get("selectableFields") or ())
        out.append(ResourceType(
            spec["group"], version["name"], names["kind"], names["plural"],
            spec.get("scope", "Namespaced") == "Namespaced",
            short_names=tuple(names.get("shortNames") or ()),
            status_subresource="status" in subresources, generation=True,
            subresources=tuple(s for s in ("status", "scale") if s in subresources),
            categories=tuple(names.get("categories") or ()),
            schema=schema, columns=columns, custom=True, selectable=selectable))
    return out


class ResourceTypes:
    """Thread-safe lookup of served resource types; CRDs are added and removed live."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_path: dict[tuple[str, str, str], ResourceType] = {}
        self._by_crd: dict[str, list[ResourceType]] = {}
        for rt in BUILTINS:
            self._by_path[(rt.group, rt.version, rt.plural)] = rt

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._by_path.get((group, version, plural))

    def all(self) -> list[ResourceType]:
        with self._lock:
            return list(self._by_path.values())

    def by_key(self, key: str) -> ResourceType | None:
        """Any served version of the bucket ``group/plural`` (the storage version first)."""
        for rt in self.all():
            if rt.key == key:
                return rt
        return None

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        for rt in self.all():
            if rt.api_version == api_version and rt.kind == kind:
                return rt
        return None

    def group_versions(self) -> dict[str, list[str]]:
        """group -> versions, built-in order first."""
        out: dict[str, list[str]] = {}
        for rt in self.all():
            versions = out.setdefault(rt.group, [])
            if rt.version not in versions:
                versions.append(rt.version)
        return out

    def set_crd(self, name: str, types: list[ResourceType]) -> None:
        with self._lock:
            for old in self._by_crd.pop(name, []):
                self._by_path.pop((old.group, old.version, old.plural), None)
            for rt in types:
                self._by_path[(rt.group, rt.version, rt.plural)] = rt
            if types:
                self._by_crd[name] = types
