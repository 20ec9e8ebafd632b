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
    current = admitted(configmap)
    if workflow in current or len(current) >= max_jobs:
        return None
    return _with(configmap, [*current, workflow])


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
    """

    _turn = threading.Lock()

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
        with self._turn:
            return self._take(workflow, max_jobs)

    def _take(self, workflow: str, max_jobs: int) -> bool:
        configmap = self.read()
        holders = admitted(configmap)
        if workflow in holders:
            return True
        if len(holders) >= max_jobs:
            return False
        taken = self.kube.update("ConfigMap", self.namespace, NAME,
                                 lambda cm: with_slot(cm, workflow, max_jobs), known=configmap)
        if taken is not None:
            self.seen = taken
            return True
        return workflow in self.current()

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
