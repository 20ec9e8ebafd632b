"""Admission: at most `maxJobs` workflows hold a slot, whatever the number of instances.

The slots live in the ConfigMap `c2d-environment`: its `admitted` key lists the
workflows holding one, its `queued` key those waiting for one, first come, first
served. Taking or releasing a slot is a compare-and-set on that object (its
resourceVersion), never a counter in memory. A workflow that finds no slot free
joins the queue in the same write, and a release hands the freed slots to the
head of the queue in its own: whoever frees a slot knows whom to start without
listing the queued workflows, a listing that grew with the queue. The same
writes keep the object's announcement current (`environment.json`, given by
`Slots.announce`): its `currentJobs` is the number admitted by construction.

Each process remembers the ConfigMap as it last read or wrote it, and writes
on that copy: a round trip less per slot changing hands. The copy is a hint,
never the truth: a stale one costs a refused write and a fresh read (the
compare-and-set), and every take writes (a slot, or a place in the queue), so
no decision rests on a stale copy alone.
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
# The queue stops growing past this many bytes of names (a ConfigMap holds 1 MiB);
# a workflow left out stays `Queued` in its status, and the tick queues it once
# there is room.
QUEUE_LIMIT_BYTES = 512 * 1024

Change = Callable[[dict], "dict | None"]


class Slot(enum.Enum):
    """What a take found: a slot taken by this call, one held already, or a place in the queue."""

    TAKEN = "taken"
    HELD = "held"
    QUEUED = "queued"

    def __bool__(self) -> bool:  # holding a slot after the call
        return self is not Slot.QUEUED


def admitted(configmap: dict) -> list[str]:
    return json.loads((configmap.get("data") or {}).get("admitted") or "[]")


def queued(configmap: dict) -> list[str]:
    return json.loads((configmap.get("data") or {}).get("queued") or "[]")


def with_slot(configmap: dict, workflow: str, max_jobs: int) -> dict | None:
    """The ConfigMap with `workflow` admitted or queued; None when it already is."""
    return with_slots(configmap, [workflow], max_jobs)


def with_slots(configmap: dict, workflows: Iterable[str], max_jobs: int) -> dict | None:
    """The ConfigMap with `workflows` admitted in order while slots are free, the rest
    queued; None when nothing changes."""
    holders, waiting = admitted(configmap), queued(configmap)
    arriving = []
    for workflow in workflows:
        if workflow in holders:
            continue
        if len(holders) < max_jobs:
            holders.append(workflow)
        elif workflow not in waiting and workflow not in arriving:
            arriving.append(workflow)
    waiting = [name for name in waiting if name not in holders]
    return _changed(configmap, holders, _appended(waiting, arriving))


def without(configmap: dict, workflows: Iterable[str], max_jobs: int) -> dict | None:
    """The ConfigMap with `workflows` out of their slots and the queue, and the free slots
    given to the head of the queue; None when nothing changes."""
    return reconciled(configmap, workflows, (), (), max_jobs)


def reconciled(configmap: dict, gone: Iterable[str], unqueued: Iterable[str],
               waiting: Iterable[str], max_jobs: int) -> dict | None:
    """What the tick writes: `gone` out of the slots and the queue, `unqueued` out of
    the queue, every workflow of `waiting` in one of them (those missing join the
    queue, in order), and the free slots given to the head of the queue; None when
    nothing changes."""
    gone, unqueued = set(gone), set(unqueued)
    holders = [name for name in admitted(configmap) if name not in gone]
    queue = [name for name in queued(configmap) if name not in gone | unqueued]
    placed = gone | set(holders) | set(queue)
    missing = [name for name in dict.fromkeys(waiting) if name not in placed]
    return _changed(configmap, *_promoted(holders, _appended(queue, missing), max_jobs))


def given(before: dict, after: dict) -> list[str]:
    """The workflows that hold a slot in `after` and did not in `before`."""
    held = set(admitted(before))
    return [name for name in admitted(after) if name not in held]


def _promoted(holders: list[str], waiting: list[str], max_jobs: int
              ) -> tuple[list[str], list[str]]:
    free = max(max_jobs - len(holders), 0)
    return holders + waiting[:free], waiting[free:]


def _appended(waiting: list[str], names: list[str]) -> list[str]:
    """`waiting` with `names` at its end, as many as the queue's limit lets in."""
    size = len(json.dumps(waiting))
    for at, name in enumerate(names):
        size += len(json.dumps(name)) + 2
        if size > QUEUE_LIMIT_BYTES:
            return waiting + names[:at]
    return waiting + names


def _changed(configmap: dict, holders: list[str], waiting: list[str]) -> dict | None:
    if holders == admitted(configmap) and waiting == queued(configmap):
        return None
    return _with(configmap, holders, waiting)


def _with(configmap: dict, holders: list[str], waiting: list[str] | None = None) -> dict:
    data = {**(configmap.get("data") or {}), "admitted": json.dumps(holders)}
    if waiting is not None:
        data["queued"] = json.dumps(waiting)
    return {**configmap, "data": data}


def empty(namespace: str, announce: Callable[[int], dict] | None = None) -> dict:
    """The ConfigMap with no slot taken (and the announcement saying so, when given)."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": NAME, "namespace": namespace,
                         "labels": {"app.kubernetes.io/managed-by": "c2d"}},
            "data": {"admitted": "[]", "queued": "[]",
                     **(_announced(announce, 0) if announce else {})}}


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
    longer waits for nine writes before its own. Takes that arrive while that
    write is tried join it on its next try.
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
        """Whether `workflow` holds a slot after this call, since when, or waits (`Slot`).

        Written on the copy last seen here (`seen`; read when there is none): a
        stale one is refused and the take decided again on a fresh read. Only a
        workflow already admitted or queued on that copy writes nothing.
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
            return Slot.QUEUED
        return Slot.HELD if mine.held_before else Slot.TAKEN

    def _take_together(self, batch: list[_Take], max_jobs: int) -> None:
        """Admit as many of `batch` as fit, in order, and queue the rest: one compare-and-set."""
        def admit(configmap: dict) -> dict | None:  # on each version the write is tried on
            # Takes that arrived while this one was read or refused join it: in a burst,
            # another instance's write costs this one a retry, not one retry per take.
            with self._waiting_lock:
                batch.extend(self._waiting.pop(self.namespace, []))
            held = set(admitted(configmap))
            for take in batch:
                take.held_before = take.workflow in held
            return with_slots(configmap, [take.workflow for take in batch], max_jobs)

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

    def release(self, workflows: Iterable[str], max_jobs: int) -> list[str]:
        """Take `workflows` out of their slots and the queue; the workflows the freed
        slots went to, which the caller starts."""
        names = list(workflows)
        return self._hand_over(lambda cm: without(cm, names, max_jobs)) if names else []

    def reconcile(self, gone: Iterable[str], unqueued: Iterable[str], waiting: Iterable[str],
                  max_jobs: int) -> list[str]:
        """The tick's repair (`reconciled`); the workflows given a slot, which it starts."""
        gone, unqueued, waiting = list(gone), list(unqueued), list(waiting)
        return self._hand_over(lambda cm: reconciled(cm, gone, unqueued, waiting, max_jobs))

    def _hand_over(self, change: Change) -> list[str]:
        """Write `change`; the workflows it gave a slot, on the version it was written on."""
        tried_on: list[dict] = []

        def recorded(configmap: dict) -> dict | None:
            tried_on.append(configmap)
            return change(configmap)

        with self._turn:
            written = self._write(recorded)
        return given(tried_on[-1], written) if written is not None else []


class _Take:
    """One thread's wish for a slot, made by whichever thread gets the turn first."""

    def __init__(self, workflow: str):
        self.workflow = workflow
        self.done = threading.Event()
        self.configmap: dict = {}
        self.held_before = False
        self.error: Exception | None = None
