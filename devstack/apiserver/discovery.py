"""Discovery documents (/version, /api, /apis, per group-version) and a minimal OpenAPI v3.

Aggregated discovery is not served: the plain JSON documents are, which kubectl accepts
as fallback. OpenAPI v3 lists, per group-version, the PATCH operations with their
group-version-kind and the ``fieldValidation`` parameter, which is what kubectl reads
to use server-side field validation. It carries no schemas (``kubectl explain`` does
not work); ``/openapi/v2`` answers 404, so ``kubectl apply`` computes strategic merge
patches from its compiled-in types and JSON merge patches for custom resources.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from .errors import ApiError
from .resources import ResourceType, ResourceTypes

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
SUBRESOURCE_VERBS = {
    "status": ("{kind}", ["get", "patch", "update"]),
    "log": ("Pod", ["get"]),
    "binding": ("Binding", ["create"]),
    "finalize": ("Namespace", ["update"]),
    "scale": ("Scale", ["get", "patch", "update"]),
}


def version_info(kubernetes_version: str) -> dict[str, str]:
    major, minor, _ = kubernetes_version.split(".")
    return {"major": major, "minor": minor, "gitVersion": f"v{kubernetes_version}",
            "gitCommit": "c2d-embedded", "gitTreeState": "clean",
            "buildDate": "2026-01-01T00:00:00Z", "goVersion": "python", "compiler": "c2d",
            "platform": "linux/amd64"}


def resource_list(types: ResourceTypes, group: str, version: str) -> dict[str, Any]:
    resources = []
    for rt in types.all():
        if rt.group != group or rt.version != version:
            continue
        entry = {"name": rt.plural, "singularName": rt.singular, "namespaced": rt.namespaced,
                 "kind": rt.kind, "verbs": VERBS}
        if rt.short_names:
            entry["shortNames"] = list(rt.short_names)
        if rt.categories:
            entry["categories"] = list(rt.categories)
        resources.append(entry)
        for sub in rt.subresources:
            kind, verbs = SUBRESOURCE_VERBS[sub]
            resources.append({"name": f"{rt.plural}/{sub}", "singularName": "",
                              "namespaced": rt.namespaced, "kind": kind.format(kind=rt.kind),
                              "verbs": verbs})
    if not resources:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version, "resources": resources}


def _group(name: str, versions: list[str]) -> dict[str, Any]:
    gvs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": gvs, "preferredVersion": gvs[0]}


def group_list(types: ResourceTypes) -> dict[str, Any]:
    groups = [_group(g, vs) for g, vs in types.group_versions().items() if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else "api/v1"


def openapi_index(types: ResourceTypes) -> dict[str, Any]:
    paths = {}
    for group, versions in types.group_versions().items():
        for version in versions:
            names = ",".join(sorted(rt.plural + str(rt.columns) for rt in types.all()
                                    if rt.group == group and rt.version == version))
            digest = hashlib.sha256(names.encode()).hexdigest()[:32].upper()
            path = _gv_path(group, version)
            paths[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest}"}
    return {"paths": paths}


def _patch_operation(rt: ResourceType) -> dict[str, Any]:
    content = {t: {"schema": {"type": "object"}} for t in
               ("application/json-patch+json", "application/merge-patch+json")}
    return {
        "operationId": f"patch{rt.kind}",
        "parameters": [{"name": n, "in": "query", "schema": {"type": "string",
                                                             "uniqueItems": True}}
                       for n in ("dryRun", "fieldManager", "fieldValidation")],
        "requestBody": {"content": content, "required": True},
        "responses": {"200": {"description": "OK"}},
        "x-kubernetes-action": "patch",
        "x-kubernetes-group-version-kind": {"group": rt.group, "version": rt.version,
                                            "kind": rt.kind},
    }


def openapi_group_version(types: ResourceTypes, group: str, version: str) -> dict[str, Any]:
    paths = {}
    for rt in types.all():
        if rt.group != group or rt.version != version:
            continue
        base = rt.base_path("{namespace}" if rt.namespaced else None)
        paths[base + "/{name}"] = {"patch": _patch_operation(rt)}
    if not paths:
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1"},
            "paths": paths, "components": {"schemas": {}}}


def document(types: ResourceTypes, parts: list[str], version: dict[str, str],
             headers: Mapping[str, str]) -> Any:
    """The discovery document at ``parts``, or None when the path is not discovery."""
    if parts == ["version"]:
        return version
    if parts in (["healthz"], ["livez"], ["readyz"]):
        return b"ok"
    if parts == ["api"]:
        return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": headers.get("Host", "")}]}
    if parts == ["apis"]:
        return group_list(types)
    if parts == ["api", "v1"]:
        return resource_list(types, "", "v1")
    if len(parts) == 2 and parts[0] == "apis":
        versions = types.group_versions().get(parts[1])
        if not versions:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        return dict(_group(parts[1], versions), kind="APIGroup", apiVersion="v1")
    if len(parts) == 3 and parts[0] == "apis":
        return resource_list(types, parts[1], parts[2])
    if parts[:1] == ["openapi"]:
        if parts == ["openapi", "v3"]:
            return openapi_index(types)
        if parts[:2] == ["openapi", "v3"] and parts[2:3] == ["api"] and len(parts) == 4:
            return openapi_group_version(types, "", parts[3])
        if parts[:2] == ["openapi", "v3"] and parts[2:3] == ["apis"] and len(parts) == 5:
            return openapi_group_version(types, parts[3], parts[4])
        raise ApiError(404, "NotFound", "the server could not find the requested resource")
    return None
