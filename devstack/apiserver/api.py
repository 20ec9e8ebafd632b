"""The API semantics over the store: create, read, update, patch, delete, watch.

HTTP handlers and the garbage collector both go through this class, so every write
gets the same defaulting, validation, resourceVersion compare-and-set, generation,
status-subresource and finalizer rules.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from . import codec, crdschema, defaults, schemas, validation
from .errors import (
    ApiError,
    already_exists,
    bad_request,
    conflict,
    invalid,
    not_found,
    stale,
)
from .patch import json_patch, merge_patch, strategic_merge
from .resources import ResourceType, ResourceTypes, from_crd
from .selectors import combine, field_matcher, label_matcher
from .store import CASFailed, Obj, Store, Watcher, clone

SERVER_META = ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
               "generation")
NAMESPACE_KEY = "/namespaces"
CRD_KEY = "apiextensions.k8s.io/customresourcedefinitions"
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _spec_of(obj: Obj) -> Obj:
    """Everything generation tracks: all but metadata and status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


class API:
    def __init__(self, store: Store, types: ResourceTypes) -> None:
        self.store = store
        self.types = types
        for crd in store.list(CRD_KEY)[0]:
            types.set_crd(crd["metadata"]["name"], from_crd(crd))

    # ------------------------------------------------------------------ reads

    def get(self, rt: ResourceType, ns: str, name: str) -> Obj:
        obj = self.store.get(rt.key, (ns if rt.namespaced else "", name))
        if obj is None:
            raise not_found(rt.plural, rt.group, name)
        return obj

    def list(self, rt: ResourceType, ns: str | None, label_selector: str | None = None,
             field_selector: str | None = None) -> Obj:
        match = self._matcher(rt, label_selector, field_selector)
        items, rv = self.store.list(rt.key, ns if rt.namespaced else None)
        if match:
            items = [o for o in items if match(o)]
        items.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        return {"kind": rt.list_kind, "apiVersion": rt.api_version,
                "metadata": {"resourceVersion": str(rv)}, "items": items}

    def watch(self, rt: ResourceType, ns: str | None, resource_version: str | None,
              label_selector: str | None = None, field_selector: str | None = None,
              initial_end: bool = False) -> Watcher:
        match = self._matcher(rt, label_selector, field_selector)
        since = None if resource_version in (None, "", "0") else _int_rv(resource_version)
        return self.store.watch(rt.key, ns if rt.namespaced else None, since, match,
                                initial_end=initial_end)

    def _matcher(self, rt: ResourceType, labels: str | None,
                 fields: str | None) -> Callable[[Obj], bool] | None:
        return combine(label_matcher(labels), field_matcher(fields, rt.kind, rt.custom,
                                                             rt.selectable))

    # ------------------------------------------------------------------ create

    def create(self, rt: ResourceType, ns: str, body: Any, strict: bool = True,
               dry_run: bool = False) -> Obj:
        obj = self._decode(rt, ns, body)
        meta = obj["metadata"]
        if rt.namespaced:
            self._check_namespace(rt, ns, meta)
        else:
            meta.pop("namespace", None)        # cluster-scoped objects have none
        generated = not meta.get("name")
        if generated and not meta.get("generateName"):
            raise invalid(rt.kind, rt.group, "", [validation.required(
                "metadata.name", "name or generateName is required")])
        for _ in range(8):
            if generated:
                meta["name"] = meta["generateName"] + "".join(
                    random.choices(_NAME_CHARS, k=5))
            # Only a generated name is tried again: each try prepares a fresh copy.
            new = self._prepare_create(rt, clone(obj) if generated else obj, strict)
            if dry_run:
                return new
            try:
                stored = self.store.write(rt.key, new, None, create=True)
            except FileExistsError:
                if generated:
                    continue
                raise already_exists(rt.plural, rt.group, meta["name"]) from None
            self._after_write(rt, stored)
            return stored
        raise ApiError(500, "InternalError", "could not generate a unique name")

    def _check_namespace(self, rt: ResourceType, ns: str, meta: Obj) -> None:
        if meta.get("namespace") not in (None, "", ns):
            raise bad_request("the namespace of the provided object does not match the "
                              "namespace sent on the request")
        meta["namespace"] = ns
        namespace = self.store.get(NAMESPACE_KEY, ("", ns))
        if namespace is None:
            raise not_found("namespaces", "", ns)
        if namespace["metadata"].get("deletionTimestamp"):
            raise ApiError(403, "Forbidden", f'{rt.plural} "{meta.get("name") or ""}" is '
                           f"forbidden: unable to create new content in namespace {ns} because "
                           f"it is being terminated",
                           {"name": meta.get("name", ""), "kind": rt.plural})

    def _prepare_create(self, rt: ResourceType, obj: Obj, strict: bool) -> Obj:
        meta = obj["metadata"]
        for key in SERVER_META + ("resourceVersion", "selfLink", "managedFields"):
            meta.pop(key, None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now()
        if rt.generation:
            meta["generation"] = 1
        if rt.status_subresource:
            obj.pop("status", None)
        if rt.custom:
            obj = crdschema.validate_custom(rt, obj, strict)
            causes = validation.check_metadata(meta, label_name=False)
            if causes:
                raise invalid(rt.kind, rt.group, meta["name"], causes)
            return obj
        if rt.kind == "Secret":
            defaults.secret_string_data(obj)
        obj = validation.strip_nulls(obj)
        defaults.on_create(rt.kind, obj)
        validation.check_schema(rt, obj)
        validation.check_rules(rt, obj)
        return obj

    def _decode(self, rt: ResourceType, ns: str | None, body: Any) -> Obj:
        if not isinstance(body, dict):
            raise bad_request(f"the body of the request must be a {rt.kind} object")
        try:
            obj = clone(body)
        except TypeError as e:  # e.g. a YAML body's integer beyond 64 bits
            raise bad_request(f"the body of the request cannot be stored as JSON: {e}") from None
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if api_version is None and kind is None:
            obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind
        elif api_version != rt.api_version or kind != rt.kind:
            raise bad_request(f"the API version in the data ({api_version}) does not match the "
                              f"expected API version ({rt.api_version})"
                              if api_version != rt.api_version else
                              f"the kind in the data ({kind}) does not match the expected "
                              f"kind ({rt.kind})")
        if not isinstance(obj.get("metadata", {}), dict):
            raise bad_request("metadata must be an object")
        obj.setdefault("metadata", {})
        return obj

    # ------------------------------------------------------------------ update / patch

    def update(self, rt: ResourceType, ns: str, name: str, body: Any,
               subresource: str | None = None, strict: bool = True,
               dry_run: bool = False) -> Obj:
        obj = self._decode(rt, ns, body)
        meta = obj["metadata"]
        if meta.get("name") not in (None, "", name):
            raise bad_request(f"the name of the object ({meta['name']}) does not match the name "
                              f"on the URL ({name})")
        if rt.namespaced and meta.get("namespace") not in (None, "", ns):
            raise bad_request("the namespace of the provided object does not match the "
                              "namespace sent on the request")
        expect = meta.get("resourceVersion") or None
        return self._write_loop(rt, ns, name, lambda old: clone(obj), expect, subresource,
                                strict, dry_run)

    def patch(self, rt: ResourceType, ns: str, name: str, content_type: str, body: bytes,
              subresource: str | None = None, strict: bool = True,
              dry_run: bool = False) -> Obj:
        try:
            patch = codec.loads(body or b"null")
        except ValueError as e:
            raise bad_request(f"error decoding patch: {e}") from None
        kind = content_type.split(";")[0].strip().lower()
        if kind == "application/strategic-merge-patch+json":
            if rt.custom:
                raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an "
                               "unknown format - accepted media types include: "
                               "application/json-patch+json, application/merge-patch+json")
            top = schemas.kind_schema(rt.api_version, rt.kind)
        elif kind not in ("application/merge-patch+json", "application/json-patch+json"):
            raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an "
                           "unknown format - accepted media types include: "
                           "application/json-patch+json, application/merge-patch+json"
                           + ("" if rt.custom else ", application/strategic-merge-patch+json"))
        elif kind == "application/merge-patch+json" and not isinstance(patch, dict):
            raise bad_request("a merge patch must be a JSON object")
        def apply(old: Obj) -> Obj:
            current = clone(old)
            if kind == "application/json-patch+json":
                out = json_patch(current, patch)
            elif kind == "application/merge-patch+json":
                out = merge_patch(current, patch)
            else:
                out = strategic_merge(current, patch, top, schemas.resolve)
            if not isinstance(out, dict):
                raise bad_request("the patch produced something that is not an object")
            out.setdefault("metadata", {})
            wanted = out["metadata"].get("resourceVersion")
            if wanted and wanted != old["metadata"]["resourceVersion"]:
                raise stale(rt.plural, rt.group, name)
            return out

        return self._write_loop(rt, ns, name, apply, None, subresource, strict, dry_run)

    def mutate(self, rt: ResourceType, ns: str, name: str, fn: Callable[[Obj], None],
               subresource: str | None = None) -> Obj:
        """Read-modify-write with retries (for controllers such as the GC)."""
        def apply(old: Obj) -> Obj:
            new = clone(old)
            fn(new)
            return new
        return self._write_loop(rt, ns, name, apply, None, subresource, False)

    def _write_loop(self, rt: ResourceType, ns: str, name: str, make: Callable[[Obj], Obj],
                    expect: str | None, subresource: str | None, strict: bool,
                    dry_run: bool = False) -> Obj:
        key = (ns if rt.namespaced else "", name)
        for _ in range(100):
            old = self.store.get(rt.key, key)
            if old is None:
                raise not_found(rt.plural, rt.group, name)
            if expect is not None and old["metadata"]["resourceVersion"] != expect:
                raise stale(rt.plural, rt.group, name)
            new = self._prepare_update(rt, old, make(old), subresource, strict)
            if new is old or dry_run:
                return new
            try:
                stored = self.store.write(rt.key, new, old["metadata"]["resourceVersion"])
            except CASFailed:
                if expect is not None:
                    raise stale(rt.plural, rt.group, name) from None
                continue
            except KeyError:
                raise not_found(rt.plural, rt.group, name) from None
            self._after_write(rt, stored)
            return self._finish_deletion(rt, stored)
        raise conflict(rt.plural, rt.group, name, "too many concurrent writers")

    def _prepare_update(self, rt: ResourceType, old: Obj, body: Obj, subresource: str | None,
                        strict: bool) -> Obj:
        if subresource == "status":
            new = clone(old)
            if "status" in body:
                new["status"] = body["status"]
            else:
                new.pop("status", None)
        else:
            new = body
            new["apiVersion"], new["kind"] = rt.api_version, rt.kind
            meta = new.setdefault("metadata", {})
            for k in SERVER_META:
                if k in old["metadata"]:
                    meta[k] = old["metadata"][k]
                else:
                    meta.pop(k, None)
            meta["name"] = old["metadata"]["name"]
            if rt.namespaced:
                meta["namespace"] = old["metadata"]["namespace"]
            else:
                meta.pop("namespace", None)
            meta.pop("managedFields", None)
            meta.pop("selfLink", None)
            if rt.status_subresource or rt.kind == "Namespace":
                if "status" in old:
                    new["status"] = old["status"]
                else:
                    new.pop("status", None)
            if rt.kind == "Namespace" and subresource != "finalize":
                new["spec"] = old.get("spec", {})
            if rt.kind == "Secret":
                defaults.secret_string_data(new)
            if old["metadata"].get("deletionTimestamp"):
                added = set(meta.get("finalizers") or []) - set(
                    old["metadata"].get("finalizers") or [])
                if added:
                    raise invalid(rt.kind, rt.group, meta["name"], [validation.forbidden(
                        "metadata.finalizers", "no new finalizers can be added if the object "
                        "is being deleted")])
        meta = new["metadata"]
        meta["resourceVersion"] = old["metadata"]["resourceVersion"]
        if rt.custom:
            new = crdschema.validate_custom(rt, new, strict)
            causes = validation.check_metadata(new["metadata"], label_name=False)
            if causes:
                raise invalid(rt.kind, rt.group, meta["name"], causes)
        elif subresource == "status":
            # Only the status is new (spec and metadata are the stored object's, checked when
            # they were written): check it alone, as a real server's status strategy does.
            if "status" in new:
                new["status"] = validation.strip_nulls(new["status"])
            validation.check_schema(rt, {"apiVersion": rt.api_version, "kind": rt.kind,
                                         "metadata": meta, "status": new.get("status") or {}})
        else:
            new = validation.strip_nulls(new)
            validation.check_schema(rt, new)
            validation.check_rules(rt, new)
            validation.check_immutable(rt, new, old)
        if rt.generation and _spec_of(new) != _spec_of(old):
            new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
        if new == old:
            return old      # a no-op write keeps its resourceVersion and emits nothing
        return new

    def _after_write(self, rt: ResourceType, obj: Obj) -> None:
        if rt.key == CRD_KEY and not obj["metadata"].get("deletionTimestamp"):
            self.types.set_crd(obj["metadata"]["name"], from_crd(obj))

    def _finish_deletion(self, rt: ResourceType, obj: Obj) -> Obj:
        """An object being deleted goes away once its last finalizer is removed."""
        meta = obj["metadata"]
        if meta.get("deletionTimestamp") and not meta.get("finalizers") and not (
                rt.kind == "Pod" and meta.get("deletionGracePeriodSeconds")) and not (
                rt.kind == "Namespace" and (obj.get("spec") or {}).get("finalizers")):
            try:
                return self._remove(rt, obj, meta["resourceVersion"])
            except (KeyError, CASFailed):
                pass
        return obj

    # ------------------------------------------------------------------ delete

    def delete(self, rt: ResourceType, ns: str, name: str, options: Obj | None = None,
               dry_run: bool = False) -> tuple[Obj, bool]:
        """Delete; returns (object, removed now). Pending deletions keep the object."""
        options = options or {}
        dry_run = dry_run or bool(options.get("dryRun"))
        key = (ns if rt.namespaced else "", name)
        for _ in range(100):
            old = self.store.get(rt.key, key)
            if old is None:
                raise not_found(rt.plural, rt.group, name)
            self._check_preconditions(rt, old, options.get("preconditions") or {})
            if rt.kind == "Namespace" and name in ("default", "kube-system"):
                raise ApiError(403, "Forbidden", f'namespaces "{name}" is forbidden: this '
                               f"namespace may not be deleted",
                               {"name": name, "kind": "namespaces"})
            new = self._deleting(rt, old, options)
            if dry_run:
                return (old if new is None else new), new is None
            try:
                if new is None:
                    return self._remove(rt, old, old["metadata"]["resourceVersion"]), True
                if new is old:
                    return old, False
                stored = self.store.write(rt.key, new, old["metadata"]["resourceVersion"])
                return stored, False
            except CASFailed:
                continue
            except KeyError:
                raise not_found(rt.plural, rt.group, name) from None
        raise conflict(rt.plural, rt.group, name, "too many concurrent writers")

    def _check_preconditions(self, rt: ResourceType, old: Obj, pre: Obj) -> None:
        meta = old["metadata"]
        if pre.get("uid") and pre["uid"] != meta["uid"]:
            raise conflict(rt.plural, rt.group, meta["name"], f"Precondition failed: UID in "
                           f"precondition: {pre['uid']}, UID in object meta: {meta['uid']}")
        if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
            raise conflict(rt.plural, rt.group, meta["name"], f"Precondition failed: "
                           f"ResourceVersion in precondition: {pre['resourceVersion']}, "
                           f"ResourceVersion in object meta: {meta['resourceVersion']}")

    def _deleting(self, rt: ResourceType, old: Obj, options: Obj) -> Obj | None:
        """The object marked for deletion, or None to remove it now."""
        policy = options.get("propagationPolicy")
        if policy is None and options.get("orphanDependents") is not None:
            policy = "Orphan" if options["orphanDependents"] else "Background"
        if policy is None:
            # batch/v1 Jobs orphan their pods by default, for backwards compatibility.
            policy = "Orphan" if rt.kind == "Job" else "Background"
        if policy not in ("Orphan", "Background", "Foreground"):
            raise invalid("DeleteOptions", "", "", [validation.unsupported(
                "propagationPolicy", policy, ["Foreground", "Background", "Orphan"])])
        meta = old["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        if policy == "Foreground" and "foregroundDeletion" not in finalizers:
            finalizers.append("foregroundDeletion")
        if policy == "Orphan" and "orphan" not in finalizers:
            finalizers.append("orphan")
        grace = self._grace(rt, old, options.get("gracePeriodSeconds"))
        if meta.get("deletionTimestamp"):
            # Already terminating: a pod's grace period may only be shortened.
            if rt.kind == "Pod" and grace == 0 and not meta.get("finalizers"):
                return None
            if rt.kind == "Pod" and grace < (meta.get("deletionGracePeriodSeconds") or 0):
                new = clone(old)
                new["metadata"]["deletionGracePeriodSeconds"] = grace
                return new
            return old
        namespace_pending = rt.kind == "Namespace"
        if not finalizers and grace == 0 and not namespace_pending:
            return None
        new = clone(old)
        new["metadata"]["deletionTimestamp"] = now()
        new["metadata"]["deletionGracePeriodSeconds"] = grace
        if finalizers:
            new["metadata"]["finalizers"] = finalizers
        if namespace_pending:
            new["status"] = {"phase": "Terminating"}
        return new

    def _grace(self, rt: ResourceType, obj: Obj, requested: Any) -> int:
        """Pods bound to a node terminate gracefully; everything else goes at once."""
        if rt.kind != "Pod":
            return 0
        spec, phase = obj.get("spec") or {}, (obj.get("status") or {}).get("phase")
        if not spec.get("nodeName") or phase in ("Succeeded", "Failed"):
            return 0
        if requested is None:
            return int(spec.get("terminationGracePeriodSeconds", 30))
        return max(0, int(requested))

    def _remove(self, rt: ResourceType, obj: Obj, expect: str | None) -> Obj:
        key = (obj["metadata"].get("namespace") or "", obj["metadata"]["name"])
        final = self.store.remove(rt.key, key, expect)
        if rt.key == CRD_KEY:
            self.types.set_crd(obj["metadata"]["name"], [])
        return final

    def delete_collection(self, rt: ResourceType, ns: str | None, options: Obj | None,
                          label_selector: str | None, field_selector: str | None) -> int:
        count = 0
        for obj in self.list(rt, ns, label_selector, field_selector)["items"]:
            try:
                self.delete(rt, obj["metadata"].get("namespace", ""), obj["metadata"]["name"],
                            options)
                count += 1
            except ApiError as e:
                if e.code != 404:
                    raise
        return count

    # ------------------------------------------------------------------ subresources

    def bind(self, ns: str, name: str, body: Any) -> None:
        """``pods/<name>/binding``: assign a node, as a scheduler does."""
        rt = self.types.lookup("", "v1", "pods")
        target = (body or {}).get("target") or {}
        node = target.get("name")
        if not node:
            raise invalid("Binding", "", name, [validation.required("target.name")])

        def assign(pod: Obj) -> None:
            spec = pod["spec"]
            if spec.get("nodeName"):
                raise conflict("pods", "", name, f"pod {name} is already assigned to node "
                               f'"{spec["nodeName"]}"')
            spec["nodeName"] = node
            status = pod.setdefault("status", {})
            conditions = [c for c in status.get("conditions", []) if c["type"] != "PodScheduled"]
            conditions.append({"type": "PodScheduled", "status": "True",
                               "lastTransitionTime": now()})
            status["conditions"] = conditions

        key = (ns, name)
        for _ in range(100):
            old = self.store.get(rt.key, key)
            if old is None:
                raise not_found("pods", "", name)
            new = clone(old)
            assign(new)
            try:
                self.store.write(rt.key, new, old["metadata"]["resourceVersion"])
                return
            except CASFailed:
                continue

    def ensure_namespace(self, name: str) -> None:
        rt = self.types.lookup("", "v1", "namespaces")
        if self.store.get(rt.key, ("", name)) is None:
            self.create(rt, "", {"metadata": {"name": name}})


def _int_rv(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise bad_request(f"invalid resource version: {value!r}") from None
