"""The garbage collector: ownerReference cascading deletion, finalizers, namespaces.

It reacts to every change in the store (one thread, no polling):

- an owner removed (background deletion): dependents whose owners are all gone are
  deleted; references to vanished owners are dropped from dependents that keep others;
- ``foregroundDeletion`` finalizer: dependents are deleted (foreground too); the owner
  goes once no dependent with ``blockOwnerDeletion: true`` remains;
- ``orphan`` finalizer: the owner's references are removed from its dependents, then
  the finalizer;
- a new object whose owners do not exist is deleted, as a real collector does;
- a terminating namespace is emptied, then removed; a removed CRD takes its objects.
"""

from __future__ import annotations

import logging
import threading

from .api import API, CRD_KEY, NAMESPACE_KEY
from .errors import ApiError
from .store import Event, Obj

log = logging.getLogger(__name__)


class GarbageCollector:
    def __init__(self, api: API) -> None:
        self.api = api
        self._dependents: dict[str, set[tuple[str, str, str]]] = {}   # owner uid -> objects
        self._watch = api.store.watch(None, None, None, raw=True)
        self._thread = threading.Thread(target=self._run, name="apiserver-gc", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._watch.close()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            ev = self._watch.next(None)
            if ev is None:
                return
            try:
                self._handle(ev)
            except Exception:  # keep collecting whatever one object does
                log.exception("garbage collector failed on %s", ev.obj["metadata"].get("name"))

    # ------------------------------------------------------------------ index

    def _index(self, ev: Event) -> None:
        ident = (ev.bucket, ev.obj["metadata"].get("namespace") or "", ev.obj["metadata"]["name"])
        for ref in (ev.old or {}).get("metadata", {}).get("ownerReferences") or []:
            self._dependents.get(ref["uid"], set()).discard(ident)
        if ev.type != "DELETED":
            for ref in ev.obj["metadata"].get("ownerReferences") or []:
                self._dependents.setdefault(ref["uid"], set()).add(ident)

    def _dependents_of(self, uid: str) -> list[tuple[str, Obj]]:
        out = []
        for bucket, ns, name in list(self._dependents.get(uid, ())):
            obj = self.api.store.get(bucket, (ns, name))
            if obj is not None and any(r["uid"] == uid for r in
                                       obj["metadata"].get("ownerReferences") or []):
                out.append((bucket, obj))
        return out

    # ------------------------------------------------------------------ reactions

    def _handle(self, ev: Event) -> None:
        self._index(ev)
        meta = ev.obj["metadata"]
        if ev.type == "DELETED":
            self._owner_gone(meta["uid"])
            self._recheck_owners(ev.obj)
            if ev.bucket == CRD_KEY:
                self._drop_custom_objects(ev.obj)
            if meta.get("namespace"):
                self._recheck_namespace(meta["namespace"])
            return
        if ev.type == "ADDED" and meta.get("ownerReferences"):
            if not any(self.api.store.by_uid(r["uid"]) for r in meta["ownerReferences"]):
                self._delete(ev.bucket, ev.obj, "Background")
                return
        if meta.get("deletionTimestamp"):
            finalizers = meta.get("finalizers") or []
            if "orphan" in finalizers:
                self._orphan(ev.bucket, ev.obj)
            elif "foregroundDeletion" in finalizers:
                self._foreground(ev.bucket, ev.obj)
            if ev.bucket == NAMESPACE_KEY:
                self._empty_namespace(ev.obj)

    def _owner_gone(self, uid: str) -> None:
        for bucket, dep in self._dependents_of(uid):
            refs = dep["metadata"].get("ownerReferences") or []
            alive = [r for r in refs if r["uid"] != uid and self.api.store.by_uid(r["uid"])]
            if alive:
                self._mutate(bucket, dep, lambda o, keep=alive: o["metadata"].__setitem__(
                    "ownerReferences", keep))
            else:
                self._delete(bucket, dep, "Background")
        self._dependents.pop(uid, None)

    def _recheck_owners(self, obj: Obj) -> None:
        """A dependent went away: an owner waiting in foreground may now be free."""
        for ref in obj["metadata"].get("ownerReferences") or []:
            found = self.api.store.by_uid(ref["uid"])
            if found is None:
                continue
            bucket, owner = found
            if owner["metadata"].get("deletionTimestamp") and "foregroundDeletion" in (
                    owner["metadata"].get("finalizers") or []):
                self._foreground(bucket, owner, delete_dependents=False)

    def _foreground(self, bucket: str, owner: Obj, delete_dependents: bool = True) -> None:
        uid = owner["metadata"]["uid"]
        blocking = False
        for dep_bucket, dep in self._dependents_of(uid):
            if delete_dependents and not dep["metadata"].get("deletionTimestamp"):
                self._delete(dep_bucket, dep, "Foreground")
            ref = next(r for r in dep["metadata"]["ownerReferences"] if r["uid"] == uid)
            if ref.get("blockOwnerDeletion") and self.api.store.get(
                    dep_bucket, (dep["metadata"].get("namespace") or "", dep["metadata"]["name"])):
                blocking = True
        if not blocking:
            self._drop_finalizer(bucket, owner, "foregroundDeletion")

    def _orphan(self, bucket: str, owner: Obj) -> None:
        uid = owner["metadata"]["uid"]
        for dep_bucket, dep in self._dependents_of(uid):
            self._mutate(dep_bucket, dep, lambda o: o["metadata"].__setitem__(
                "ownerReferences", [r for r in o["metadata"].get("ownerReferences") or []
                                    if r["uid"] != uid]))
        self._drop_finalizer(bucket, owner, "orphan")

    def _empty_namespace(self, namespace: Obj) -> None:
        name = namespace["metadata"]["name"]
        for bucket in self.api.store.buckets():
            if bucket == NAMESPACE_KEY:
                continue
            for obj in self.api.store.list(bucket, name)[0]:
                if not obj["metadata"].get("deletionTimestamp"):
                    self._delete(bucket, obj, "Background")
        self._recheck_namespace(name)

    def _recheck_namespace(self, name: str) -> None:
        namespace = self.api.store.get(NAMESPACE_KEY, ("", name))
        if namespace is None or not namespace["metadata"].get("deletionTimestamp"):
            return
        for bucket in self.api.store.buckets():
            if bucket != NAMESPACE_KEY and self.api.store.list(bucket, name)[0]:
                return
        rt = self.api.types.by_key(NAMESPACE_KEY)
        try:
            self.api.mutate(rt, "", name, lambda o: o.setdefault("spec", {}).__setitem__(
                "finalizers", []), subresource="finalize")
        except ApiError as e:
            if e.code != 404:
                raise

    def _drop_custom_objects(self, crd: Obj) -> None:
        bucket = f"{crd['spec']['group']}/{crd['spec']['names']['plural']}"
        for obj in self.api.store.list(bucket)[0]:
            try:
                self.api.store.remove(bucket, (obj["metadata"].get("namespace") or "",
                                               obj["metadata"]["name"]), None)
            except KeyError:
                pass

    # ------------------------------------------------------------------ writes

    def _delete(self, bucket: str, obj: Obj, policy: str) -> None:
        rt = self.api.types.by_key(bucket)
        if rt is None:
            return
        meta = obj["metadata"]
        try:
            self.api.delete(rt, meta.get("namespace") or "", meta["name"],
                            {"propagationPolicy": policy,
                             "preconditions": {"uid": meta["uid"]}})
        except ApiError as e:
            if e.code not in (404, 409):
                raise

    def _mutate(self, bucket: str, obj: Obj, fn) -> None:
        rt = self.api.types.by_key(bucket)
        if rt is None:
            return
        try:
            self.api.mutate(rt, obj["metadata"].get("namespace") or "", obj["metadata"]["name"],
                            fn)
        except ApiError as e:
            if e.code != 404:
                raise

    def _drop_finalizer(self, bucket: str, obj: Obj, finalizer: str) -> None:
        self._mutate(bucket, obj, lambda o: o["metadata"].__setitem__(
            "finalizers", [f for f in o["metadata"].get("finalizers") or [] if f != finalizer]))
