"""`together` makes independent calls at once; Stage.create_all through it creates what a
Job's pod uses together, the Jobs after it."""

from __future__ import annotations

import logging
import threading

import pytest

from shared.app import Stage, together
from shared.kube import KubeError

from .helpers import load_settings


def obj(kind: str, name: str) -> dict:
    return {"kind": kind, "metadata": {"name": name, "namespace": "default"}}


CONFIGURE = [obj("ConfigMap", "wf"), obj("Secret", "wf"), obj("PersistentVolumeClaim", "wf-data"),
             obj("PersistentVolumeClaim", "wf-adminlogs"), obj("Job", "wf-configure")]


class Together:
    """A Kube double: the non-Job creates must all be in flight at once to get through."""

    def __init__(self, together: int, failing: str | None = None):
        self.barrier = threading.Barrier(together, timeout=5)
        self.failing = failing
        self.done: list[str] = []
        self.lock = threading.Lock()

    def create_or_get(self, created: dict) -> dict:
        name = f"{created['kind']}/{created['metadata']['name']}"
        if created["kind"] != "Job":
            self.barrier.wait()  # a create made alone waits here, then breaks
        if name == self.failing:
            raise KubeError("quota exceeded", status=403)
        with self.lock:
            self.done.append(name)
        return created


def stage(kube: Together) -> Stage:
    return Stage("configure", load_settings({}), kube, logging.getLogger("test"))  # type: ignore[arg-type]


def test_the_objects_a_job_uses_are_created_together_and_the_job_last() -> None:
    kube = Together(together=4)
    stage(kube).create_all(CONFIGURE)
    assert len(kube.done) == 5
    assert kube.done[-1] == "Job/wf-configure"


def test_a_failed_create_is_raised_once_the_others_ended_and_no_job_is_made() -> None:
    kube = Together(together=4, failing="Secret/wf")
    with pytest.raises(KubeError, match="quota"):
        stage(kube).create_all(CONFIGURE)
    assert sorted(kube.done) == ["ConfigMap/wf", "PersistentVolumeClaim/wf-adminlogs",
                                 "PersistentVolumeClaim/wf-data"]


def test_a_single_object_before_the_job_is_created_first() -> None:
    kube = Together(together=1)
    stage(kube).create_all([obj("NetworkPolicy", "wf"), obj("Job", "wf-algorithm")])
    assert kube.done == ["NetworkPolicy/wf", "Job/wf-algorithm"]


def test_together_gives_the_results_in_order_of_calls_made_at_once() -> None:
    meeting = threading.Barrier(3, timeout=5)  # a call made alone breaks it

    def call(result: str) -> str:
        meeting.wait()
        return result

    assert together(lambda: call("a"), lambda: call("b"), lambda: call("c")) == ["a", "b", "c"]
    assert together() == []


def test_together_raises_the_first_failure_once_every_call_ended() -> None:
    ended: list[str] = []
    meeting = threading.Barrier(2, timeout=5)

    def failing() -> None:
        meeting.wait()
        raise KubeError("throttled", status=429)

    def slow() -> str:
        meeting.wait()
        threading.Event().wait(0.2)  # still running when the first call has failed
        ended.append("slow")
        return "slow"

    with pytest.raises(KubeError, match="throttled"):
        together(failing, slow)
    assert ended == ["slow"]
