"""Admission: at most `maxJobs` workflows hold a slot, whatever the number of instances.

The slots live in one ConfigMap, `c2d-admission`, whose `admitted` key lists
the workflows holding one. Taking or releasing a slot is a compare-and-set on
that object (its resourceVersion), never a counter in memory.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable

from shared.kube import Kube

NAME = "c2d-admission"
ENVIRONMENT = "c2d-environment"


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


def empty(namespace: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": NAME, "namespace": namespace,
                         "labels": {"app.kubernetes.io/managed-by": "c2d"}},
            "data": {"admitted": "[]"}}


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

    def __init__(self, kube: Kube, namespace: str):
        self.kube = kube
        self.namespace = namespace
        self.seen: dict | None = None  # the ConfigMap as last read or written here

    def read(self) -> dict:
        """The ConfigMap, created empty when missing."""
        self.seen = self.kube.get_or_create(empty(self.namespace))
        return self.seen

    def latest(self) -> dict:
        """The ConfigMap as this object last saw it (its own writes included), else read."""
        return self.seen if self.seen is not None else self.read()

    def current(self) -> list[str]:
        return admitted(self.read())

    def take(self, workflow: str, max_jobs: int) -> bool:
        """True when `workflow` holds a slot after this call (taken now or before).

        One read decides a full house (the common case under load): whoever frees
        a slot next admits from the queue.
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
        self.seen = mine.configmap
        return workflow in admitted(mine.configmap)

    def _take_together(self, batch: list[_Take], max_jobs: int) -> None:
        """Admit as many of `batch` as fit, in order, with one compare-and-set."""
        names = [take.workflow for take in batch]
        try:
            configmap = self.read()
            if with_slots(configmap, names, max_jobs) is not None:
                configmap = self.kube.update(
                    "ConfigMap", self.namespace, NAME,
                    lambda cm: with_slots(cm, names, max_jobs), known=configmap) or self.read()
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
            released = self.kube.update("ConfigMap", self.namespace, NAME,
                                        lambda cm: without(cm, names))
        if released is not None:
            self.seen = released


class _Take:
    """One thread's wish for a slot, made by whichever thread gets the turn first."""

    def __init__(self, workflow: str):
        self.workflow = workflow
        self.done = threading.Event()
        self.configmap: dict = {}
        self.error: Exception | None = None
