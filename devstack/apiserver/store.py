"""In-memory object store with a cluster-wide resourceVersion, watch fan-out and a journal.

Stored objects are never mutated: every write stores a fresh dict, so readers may hold
references without copying. ``clone()`` gives a private copy to modify.
"""

from __future__ import annotations

import json
import os
import queue
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import codec

Obj = dict[str, Any]
Key = tuple[str, str]          # (namespace, name); namespace "" for cluster-scoped


clone = codec.clone


@dataclass(frozen=True)
class Event:
    type: str                  # ADDED, MODIFIED, DELETED
    bucket: str                # ResourceType.key
    obj: Obj
    old: Obj | None            # previous version for MODIFIED and DELETED
    rv: int
    # The watch line of each type this event went out as, encoded by the first watch
    # to send it: every watch of the kind sends the same bytes.
    lines: dict[str, bytes] = field(default_factory=dict, compare=False, repr=False)


def watch_line(kind: str, obj: Any) -> bytes:
    """One line of a watch stream."""
    return codec.dumps({"type": kind, "object": obj}) + b"\n"


class Gone(Exception):
    """A watch asked for a resourceVersion older than the kept history."""


class CASFailed(Exception):
    """The stored object changed (or vanished) since the caller read it."""


class Watcher:
    """One watch: a queue filled by the store under its lock; ``None`` ends it.

    Items are ``(type, object, lines)``, ``lines`` being the event's shared memo of
    encoded lines (see :meth:`line`), or whole Events for a ``raw`` watch.
    """

    def __init__(self, store: Store, bucket: str | None, namespace: str | None,
                 match: Callable[[Obj], bool] | None, raw: bool = False) -> None:
        self._store = store
        self.raw = raw          # queue whole Events (the garbage collector wants ``old``)
        self.bucket = bucket
        self.namespace = namespace
        self.match = match
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.closed = False

    def offer(self, ev: Event) -> None:
        if self.bucket is not None and ev.bucket != self.bucket:
            return
        if self.namespace and ev.obj["metadata"].get("namespace") != self.namespace:
            return
        if self.raw:
            self.queue.put(ev)
            return
        if self.match is None:
            self.queue.put((ev.type, ev.obj, ev.lines))
            return
        now = self.match(ev.obj)
        before = ev.old is not None and ev.type == "MODIFIED" and self.match(ev.old)
        if ev.type == "MODIFIED" and before != now:
            # Moving in or out of a selector looks like ADDED / DELETED to this watch.
            self.queue.put(("ADDED" if now else "DELETED", ev.obj, ev.lines))
        elif now:
            self.queue.put((ev.type, ev.obj, ev.lines))

    @staticmethod
    def line(item: tuple[str, Obj, dict[str, bytes]]) -> bytes:
        """The watch line of an item, encoded once for all the watches that send it."""
        kind, obj, lines = item
        found = lines.get(kind)
        if found is None:
            found = lines[kind] = watch_line(kind, obj)
        return found

    def next(self, timeout: float | None) -> Any:
        """The next event; ``None`` when closed; raises queue.Empty on timeout."""
        return self.queue.get(timeout=timeout)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._store.unwatch(self)
            self.queue.put(None)


class Journal:
    """Append-only JSON lines; compacted to a snapshot at every start."""

    def __init__(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        self.path = data_dir / "journal.jsonl"
        self._file = None
        self.appended = 0       # records written since the last compaction

    def load(self) -> tuple[int, dict[str, dict[Key, Obj]]]:
        rv, buckets = 0, {}
        if self.path.exists():
            with open(self.path, encoding="utf-8") as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                    except json.JSONDecodeError:
                        break          # a torn last line after a crash
                    rv = max(rv, rec["rv"])
                    if rec["op"] == "rv":
                        continue
                    bucket = buckets.setdefault(rec["bucket"], {})
                    key = (rec["ns"], rec["name"])
                    if rec["op"] == "put":
                        bucket[key] = rec["obj"]
                    else:
                        bucket.pop(key, None)
        self._compact(rv, buckets)
        return rv, buckets

    def _compact(self, rv: int, buckets: dict[str, dict[Key, Obj]]) -> None:
        if self._file:
            self._file.close()
        self.appended = 0
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(json.dumps({"op": "rv", "rv": rv}) + "\n")
            for bucket, objs in buckets.items():
                for (ns, name), obj in objs.items():
                    f.write(json.dumps({"op": "put", "rv": rv, "bucket": bucket, "ns": ns,
                                        "name": name, "obj": obj}) + "\n")
        os.replace(tmp, self.path)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (kept open)

    def append(self, op: str, rv: int, bucket: str, key: Key, obj: Obj | None) -> None:
        if self._file is None:      # closed: the server is stopping
            return
        rec = {"op": op, "rv": rv, "bucket": bucket, "ns": key[0], "name": key[1]}
        if obj is not None:
            rec["obj"] = obj
        self._file.write(json.dumps(rec) + "\n")
        self._file.flush()
        self.appended += 1

    def maybe_compact(self, rv: int, buckets: dict[str, dict[Key, Obj]]) -> None:
        """Rewrite the journal as a snapshot once it is mostly history."""
        live = sum(len(objs) for objs in buckets.values())
        if self._file and self.appended > max(10000, 4 * live):
            self._compact(rv, buckets)

    def close(self) -> None:
        if self._file:
            self._file.close()
            self._file = None


def object_key(obj: Obj) -> Key:
    meta = obj["metadata"]
    return meta.get("namespace") or "", meta["name"]


class Store:
    """All objects, by bucket and (namespace, name). Writes are compare-and-set."""

    def __init__(self, data_dir: Path | None = None, history: int = 10000) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, dict[Key, Obj]] = {}
        self._uids: dict[str, tuple[str, Key]] = {}
        self._watchers: set[Watcher] = set()
        self._history: deque[Event] = deque(maxlen=history)
        self._journal = Journal(data_dir) if data_dir else None
        self._rv = 0
        if self._journal:
            self._rv, self._buckets = self._journal.load()
            for bucket, objs in self._buckets.items():
                for key, obj in objs.items():
                    self._uids[obj["metadata"]["uid"]] = (bucket, key)
        self._oldest = self._rv   # history covers every change after this version

    @property
    def resource_version(self) -> int:
        return self._rv

    def get(self, bucket: str, key: Key) -> Obj | None:
        return self._buckets.get(bucket, {}).get(key)

    def by_uid(self, uid: str) -> tuple[str, Obj] | None:
        with self._lock:
            where = self._uids.get(uid)
            if where is None:
                return None
            return where[0], self._buckets[where[0]][where[1]]

    def list(self, bucket: str, namespace: str | None = None) -> tuple[list[Obj], int]:
        with self._lock:
            objs = self._buckets.get(bucket, {})
            if namespace:
                items = [o for (ns, _), o in objs.items() if ns == namespace]
            else:
                items = list(objs.values())
            return items, self._rv

    def buckets(self) -> list[str]:
        with self._lock:
            return [b for b, objs in self._buckets.items() if objs]

    def write(self, bucket: str, obj: Obj, expect: str | None, create: bool = False) -> Obj:
        """Store ``obj`` (now owned by the store) if the current version is ``expect``.

        ``create`` requires absence; otherwise ``expect`` is the resourceVersion read
        (``None``: unconditional). Raises KeyError (absent), FileExistsError, CASFailed.
        """
        key = object_key(obj)
        with self._lock:
            objs = self._buckets.setdefault(bucket, {})
            old = objs.get(key)
            if create and old is not None:
                raise FileExistsError(key)
            if not create:
                if old is None:
                    raise KeyError(key)
                if expect is not None and old["metadata"]["resourceVersion"] != expect:
                    raise CASFailed(key)
            self._rv += 1
            obj["metadata"]["resourceVersion"] = str(self._rv)
            objs[key] = obj
            self._uids[obj["metadata"]["uid"]] = (bucket, key)
            self._emit(Event("ADDED" if old is None else "MODIFIED", bucket, obj, old, self._rv))
            if self._journal:
                self._journal.append("put", self._rv, bucket, key, obj)
                self._journal.maybe_compact(self._rv, self._buckets)
            return obj

    def remove(self, bucket: str, key: Key, expect: str | None) -> Obj:
        """Delete; the DELETED event carries the object at a new resourceVersion."""
        with self._lock:
            objs = self._buckets.get(bucket, {})
            old = objs.get(key)
            if old is None:
                raise KeyError(key)
            if expect is not None and old["metadata"]["resourceVersion"] != expect:
                raise CASFailed(key)
            self._rv += 1
            del objs[key]
            self._uids.pop(old["metadata"]["uid"], None)
            final = dict(old, metadata=dict(old["metadata"], resourceVersion=str(self._rv)))
            self._emit(Event("DELETED", bucket, final, old, self._rv))
            if self._journal:
                self._journal.append("del", self._rv, bucket, key, None)
                self._journal.maybe_compact(self._rv, self._buckets)
            return final

    def _emit(self, ev: Event) -> None:
        if len(self._history) == self._history.maxlen:
            self._oldest = self._history[0].rv
        self._history.append(ev)
        for w in list(self._watchers):
            w.offer(ev)

    def watch(self, bucket: str | None, namespace: str | None, since: int | None,
              match: Callable[[Obj], bool] | None = None, raw: bool = False,
              initial_end: bool = False) -> Watcher:
        """Watch from ``since`` (exclusive); ``None`` starts with ADDED for what exists.

        ``initial_end`` queues ``("BOOKMARK", rv, {})`` after those ADDED events.
        """
        w = Watcher(self, bucket, namespace, match, raw)
        with self._lock:
            if since is None:
                for b, objs in self._buckets.items():
                    if bucket is not None and b != bucket:
                        continue
                    for key in sorted(objs):
                        w.offer(Event("ADDED", b, objs[key], None, self._rv))
                if initial_end:
                    w.queue.put(("BOOKMARK", self._rv, {}))
            elif since < self._oldest:
                raise Gone(f"too old resource version: {since} ({self._oldest + 1})")
            else:
                for ev in self._history:
                    if ev.rv > since:
                        w.offer(ev)
            self._watchers.add(w)
        return w

    def bookmark(self, w: Watcher) -> int | None:
        """A resourceVersion ``w`` has fully seen, or None when events are pending."""
        with self._lock:
            return self._rv if w.queue.empty() else None

    def unwatch(self, w: Watcher) -> None:
        with self._lock:
            self._watchers.discard(w)

    def close(self) -> None:
        with self._lock:
            watchers = list(self._watchers)
        for w in watchers:
            w.close()
        with self._lock:
            if self._journal:
                self._journal.close()
