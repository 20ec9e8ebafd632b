"""Admission: at most `maxJobs` workflows hold a slot, whatever the number of instances.

The slots live in the ConfigMap `c2d-environment`, whose `admitted` key lists
the workflows holding one. Taking or releasing a slot is a compare-and-set on
that object (its resourceVersion), never a counter in memory. The same write
keeps the object's announcement current (`environment.json`, given by
`Slots.announce`): its `currentJobs` is the number admitted by construction,
and a slot changing hands costs no second object to read and write.

Each process remembers the ConfigMap as it last read or wrote it, and writes
on that copy: a round trip less per slot changing hands. The copy is a hint,
never the truth. A stale one costs a refused write and a fresh read (the
compare-and-set); a stale full house is looked at again by whoever queues a
workflow on it (`functions.configure.app.admit`).
"""

from __future__ import annotations

import enum
import json
import threading
import weakref
from collections.abc import Callable, Iterable

from functions.configure import environment
from shared.kube import Kube

NAME = environment.CONFIGMAP

Change = Callable[[dict], "dict | None"]


class Slot(enum.Enum):
    """What a take found: no slot free, a slot taken by this call, or one held already."""

    FULL = "full"
    TAKEN = "taken"
    HELD = "held"

    def __bool__(self) -> bool:  # holding a slot after the call
        return self is not Slot.FULL


def admitted(configmap: dict) -> list[str]:
    return json.loads((configmap.get("data") or {}).get("admitted") or "[]")


def with_slot(configmap: dict, workflow: str, max_jobs: int) -> dict | None:
    """The ConfigMap with `workflow` admitted; None when it already is or no slot is free."""
    return with_slots(configmap, [workflow], max_jobs)


def with_slots(configmap: dict, workflows: Iterable[str], max_jobs: int) -> dict | None:
    """The ConfigMap with as many of `workflows` admitted as fit, in order; None if none."""
    current = admitted(configmap)
    names = list(current)
    for workflow in workflows:
        if workflow not in names and len(names) < max_jobs:
            names.append(workflow)
    return None if names == current else _with(configmap, names)


def without(configmap: dict, workflows: Iterable[str]) -> dict | None:
    """The ConfigMap with `workflows` released; None when none of them held a slot."""
    gone = set(workflows)
    current = admitted(configmap)
    if not gone & set(current):
        return None
    return _with(configmap, [name for name in current if name not in gone])


def _with(configmap: dict, names: list[str]) -> dict:
    return {**configmap, "data": {**(configmap.get("data") or {}),
                                  "admitted": json.dumps(names)}}


def empty(namespace: str, announce: Callable[[int], dict] | None = None) -> dict:
    """The ConfigMap with no slot taken (and the announcement saying so, when given)."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": NAME, "namespace": namespace,
                         "labels": {"app.kubernetes.io/managed-by": "c2d"}},
            "data": {"admitted": "[]", **(_announced(announce, 0) if announce else {})}}


def announcing(change: Change, announce: Callable[[int], dict]) -> Change:
    """`change`, with `environment.json` following the slots it leaves.

    A change of no slot still writes when the announcement is stale (the
    settings changed since it was written).
    """
    def changed(configmap: dict) -> dict | None:
        new = change(configmap)
        base = configmap if new is None else new
        data = {**(base.get("data") or {}), **_announced(announce, len(admitted(base)))}
        if new is None and data == configmap.get("data"):
            return None
        return {**base, "data": data}
    return changed


def _announced(announce: Callable[[int], dict], count: int) -> dict[str, str]:
    return {environment.KEY: environment.dumps(announce(count))}


class Slots:
    """The admission ConfigMap of one namespace, through compare-and-set.

    The threads of one process take turns on it: between themselves they could
    only conflict, and in a burst of adds each conflict cost an admission a
    read, a write and a pause. Other processes still meet the compare-and-set.
    The takes that wait for their turn are made together by the next thread to
    get it, with one read and one write: in a burst, the tenth admission no
    longer waits for nine writes before its own.
    """

    _turn = threading.Lock()
    _waiting: dict[str, list[_Take]] = {}  # namespace -> takes not yet made, in order
    _waiting_lock = threading.Lock()
    # Per client (one per cluster), namespace -> the ConfigMap as this process last saw it.
    _seen: weakref.WeakKeyDictionary[Kube, dict[str, dict]] = weakref.WeakKeyDictionary()

    def __init__(self, kube: Kube, namespace: str,
                 announce: Callable[[int], dict] | None = None):
        self.kube = kube
        self.namespace = namespace
        self.announce = announce  # number admitted -> the announcement; None: leave it as is

    def read(self) -> dict:
        """The ConfigMap, created empty when missing."""
        return self._remember(self.kube.get_or_create(empty(self.namespace, self.announce)))

    def seen(self) -> dict | None:
        """The ConfigMap as this process last read or wrote it (a hint: it may be stale)."""
        return self._seen.get(self.kube, {}).get(self.namespace)

    def _remember(self, configmap: dict | None) -> dict | None:
        if configmap is not None:
            self._seen.setdefault(self.kube, {})[self.namespace] = configmap
        return configmap

    def publish(self) -> None:
        """Rewrite a stale announcement (the settings changed since it was written)."""
        self._write(lambda cm: None)

    def _changed(self, change: Change) -> Change:
        return change if self.announce is None else announcing(change, self.announce)

    def _write(self, change: Change) -> dict | None:
        """Compare-and-set `change` (None: nothing to write), with the announcement.

        Tried first on the copy last seen here; a stale one is refused and read again.
        """
        return self._remember(self.kube.update("ConfigMap", self.namespace, NAME,
                                               self._changed(change), known=self.seen()))

    def current(self) -> list[str]:
        return admitted(self.read())

    def take(self, workflow: str, max_jobs: int) -> Slot:
        """Whether `workflow` holds a slot after this call, and since when (`Slot`).

        The copy last seen here decides (`seen`; read when there is none). A full
        house on a stale copy only queues a workflow, and `admit` looks again right
        after; a caller that wants a fresh decision reads first, as an add does.
        """
        mine = _Take(workflow)
        with self._waiting_lock:
            self._waiting.setdefault(self.namespace, []).append(mine)
        with self._turn:
            if not mine.done.is_set():
                with self._waiting_lock:
                    batch = self._waiting.pop(self.namespace, [])
                if mine not in batch:  # taken off the list by a thread that died on it
                    batch.append(mine)
                self._take_together(batch, max_jobs)
        if mine.error is not None:
            raise mine.error
        if workflow not in admitted(mine.configmap):
            return Slot.FULL
        return Slot.HELD if mine.held_before else Slot.TAKEN

    def _take_together(self, batch: list[_Take], max_jobs: int) -> None:
        """Admit as many of `batch` as fit, in order, with one compare-and-set."""
        names = [take.workflow for take in batch]

        def admit(configmap: dict) -> dict | None:  # on each version the write is tried on
            held = set(admitted(configmap))
            for take in batch:
                take.held_before = take.workflow in held
            return with_slots(configmap, names, max_jobs)

        try:
            configmap = self.seen() or self.read()
            if admit(configmap) is not None:
                configmap = self._write(admit) or self.read()
        except Exception as error:  # each waiting handler answers for its own event
            for take in batch:
                take.error = error
                take.done.set()
            raise
        for take in batch:
            take.configmap = configmap
            take.done.set()

    def release(self, workflows: Iterable[str]) -> None:
        """Free the slots `workflows` hold (none of them holding one writes nothing)."""
        names = list(workflows)
        if not names:
            return
        with self._turn:
            self._write(lambda cm: without(cm, names))


class _Take:
    """One thread's wish for a slot, made by whichever thread gets the turn first."""

    def __init__(self, workflow: str):
        self.workflow = workflow
        self.done = threading.Event()
        self.configmap: dict = {}
        self.held_before = False
        self.error: Exception | None = None
