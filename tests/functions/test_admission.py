"""maxJobs holds with two configure instances admitting concurrently; all finish; a slot
freed while a workflow is being queued does not stay idle; the threads of one instance
do not conflict with each other."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from cloudevents.core.v1.event import CloudEvent
from kubernetes import client

from devstack.cluster import EmbeddedCluster
from functions.configure import admission
from functions.configure import app as configure
from shared import events, settings
from shared import workflow as wf
from shared.app import Stage
from shared.connection import connect
from shared.kube import Conflict, Kube, KubeError
from tests.functions.conftest import environment
from tests.functions.harness import Counting, Functions, Relay, finished, ping, resource_event
from tests.unit.helpers import create_workflow

ADMITTED = range(wf.CONFIGURING, wf.FINISHED)  # 20..62: holding a slot


def test_max_jobs_two_instances(cluster: EmbeddedCluster, kube: Kube, make_workflow, receiver,
                                tmp_path):
    config = settings.load(environment(tmp_path, receiver, maxJobs="2",
                                       C2D_NAMESPACE="default"))
    first = Functions(str(cluster.kubeconfig), config)
    second = Functions(str(cluster.kubeconfig), config, stages=["configure"])
    relays = [Relay(first.urls), Relay({**first.urls, "configure": second.urls["configure"]})]
    peak, stop = [0], threading.Event()
    names: list[str] = []

    def watch_peak() -> None:  # sample the cluster: never more than 2 running
        while not stop.is_set():
            running = [w for w in kube.list("Workflow", "default")
                       if wf.name(w) in names and wf.status_code(w) in ADMITTED
                       and not wf.is_final(w)]
            slots = admission.admitted(kube.get("ConfigMap", "default", admission.NAME) or {})
            peak[0] = max(peak[0], len(running), len(slots))
            time.sleep(0.01)

    sampler = threading.Thread(target=watch_peak, daemon=True)
    try:
        created = [make_workflow() for _ in range(10)]
        names.extend(wf.name(w) for w in created)
        sampler.start()
        with ThreadPoolExecutor(10) as pool:  # all ten adds at once, split over both
            list(pool.map(lambda i: relays[i % 2].send(resource_event("add", created[i])),
                          range(10)))
        deadline = time.monotonic() + 240
        delivered: set[str] = set()
        while not all(wf.is_final(kube.get("Workflow", "default", n)) for n in names):
            assert time.monotonic() < deadline, "not all ten finished"
            for i, name in enumerate(names):
                for stage in wf.STAGES:
                    job = kube.get("Job", "default", f"{name}-{stage}")
                    if job and finished(job) and job["metadata"]["uid"] not in delivered:
                        delivered.add(job["metadata"]["uid"])
                        relays[i % 2].send(resource_event("update", job))
            time.sleep(0.05)
    finally:
        stop.set()
        first.close()
        second.close()
    assert peak[0] <= 2, f"{peak[0]} workflows were admitted at once"
    assert peak[0] == 2, "never ran two at once: admission is too strict"
    statuses = [kube.get("Workflow", "default", n)["status"] for n in names]
    assert all(s["phase"] == "Succeeded" for s in statuses), statuses
    assert any(s.get("dateCreated") != s.get("dateStarted") for s in statuses)


class ReleasedBeforeTheQueuedWrite(Kube):
    """Runs `release` once, just before the first write of a Workflow as Queued: the
    workflow is in the queue by then, and its status still 0."""

    def __init__(self, *args: Any, release: Callable[[], Any], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.release: Callable[[], Any] | None = release
        self.released: Any = None

    def replace(self, obj: dict, subresource: str = "") -> dict:
        if obj["kind"] == "Workflow" and wf.status(obj).get("phase") == wf.QUEUED_PHASE \
                and self.release is not None:
            release, self.release = self.release, None
            self.released = release()
        return super().replace(obj, subresource)


def workflow_finished(name: str, namespace: str) -> CloudEvent:
    return events.make(events.WORKFLOW_FINISHED, "/c2d/publish",
                       {"metadata": {"name": name, "namespace": namespace}})


def one_slot_held(cluster: EmbeddedCluster, kube: Kube, receiver, tmp_path,
                  namespace: str) -> tuple[Stage, admission.Slots]:
    """A new namespace with one slot (maxJobs 1), held by `holder`: a configure Stage on
    it, and its slots."""
    new_namespace(cluster, namespace)
    config = settings.load(environment(tmp_path, receiver, maxJobs="1", C2D_NAMESPACE=namespace))
    slots = admission.Slots(kube, namespace)
    assert slots.take("holder", 1) is admission.Slot.TAKEN
    return Stage("configure", config, kube, logging.getLogger("test")), slots


def test_a_slot_freed_while_queueing_goes_to_the_queued_workflow(
        cluster: EmbeddedCluster, kube: Kube, receiver, tmp_path):
    namespace = "admission-race"
    elsewhere, slots = one_slot_held(cluster, kube, receiver, tmp_path, namespace)
    workflow = create_workflow(kube, "late-queued", namespace)
    racing = ReleasedBeforeTheQueuedWrite(
        connect(str(cluster.kubeconfig)),
        release=lambda: configure.on_workflow_finished(workflow_finished("holder", namespace),
                                                       elsewhere))
    stage = Stage("configure", elsewhere.settings, racing, logging.getLogger("test"))

    assert configure.admit(workflow, stage, admission.Slots(racing, namespace)) is None

    assert racing.released is not None and racing.released.get_type() == events.WORKFLOW_STARTED
    assert slots.current() == ["late-queued"]
    assert kube.get("Job", namespace, "late-queued-configure") is not None
    # The Queued write came after the start, and wrote nothing over it.
    assert wf.status_code(kube.get("Workflow", namespace, "late-queued")) == wf.CONFIGURING


def test_a_freed_slot_goes_to_the_head_of_the_queue_without_a_listing(
        cluster: EmbeddedCluster, kube: Kube, receiver, tmp_path):
    namespace = "queue-head"
    stage, slots = one_slot_held(cluster, kube, receiver, tmp_path, namespace)
    for name in ("first", "second", "third"):
        added = resource_event("add", create_workflow(kube, name, namespace))
        assert configure.on_workflow_added(added, stage) is None
        assert wf.status_code(kube.get("Workflow", namespace, name)) == wf.QUEUED
    counting = Counting(connect(str(cluster.kubeconfig)))

    reply = configure.on_workflow_finished(workflow_finished("holder", namespace),
                                           Stage("configure", stage.settings, counting,
                                                 logging.getLogger("test")))

    assert reply is not None and events.workflow_ref(reply).name == "first"
    assert counting.lists == {}  # the cost of a freed slot does not grow with the queue
    stored = slots.read()
    assert (admission.admitted(stored), admission.queued(stored)) == (["first"],
                                                                      ["second", "third"])
    assert wf.status_code(kube.get("Workflow", namespace, "first")) == wf.CONFIGURING


def test_a_workflow_given_a_slot_that_will_not_start_hands_it_on(
        cluster: EmbeddedCluster, kube: Kube, receiver, tmp_path):
    namespace = "hand-on"
    stage, slots = one_slot_held(cluster, kube, receiver, tmp_path, namespace)
    for name in ("deleted", "stopped", "next"):
        create_workflow(kube, name, namespace)
        assert slots.take(name, 1) is admission.Slot.QUEUED
    kube.delete("Workflow", namespace, "deleted")
    stopping = kube.get("Workflow", namespace, "stopped")
    stopping["spec"]["stopRequested"] = True
    kube.replace(stopping)

    reply = configure.on_workflow_finished(workflow_finished("holder", namespace), stage)

    assert reply is not None and events.workflow_ref(reply).name == "next"
    assert slots.current() == ["next"]
    assert admission.queued(slots.read()) == []
    assert kube.get("Job", namespace, "stopped-configure") is None


def configmaps(counts: dict[tuple[str, str], int]) -> dict[str, int]:
    return {name: n for (kind, name), n in counts.items() if kind == "ConfigMap"}


def test_a_slot_and_the_announcement_are_one_write(
        cluster: EmbeddedCluster, kube: Kube, receiver, tmp_path):
    namespace = "announce"
    client.CoreV1Api(cluster.api_client()).create_namespace({"metadata": {"name": namespace}})
    config = settings.load(environment(tmp_path, receiver, maxJobs="3", C2D_NAMESPACE=namespace))
    counting = Counting(connect(str(cluster.kubeconfig)))
    stage = Stage("configure", config, counting, logging.getLogger("test"))
    for name in ("first", "second"):
        workflow = create_workflow(kube, name, namespace)
        reply = configure.on_workflow_added(resource_event("add", workflow), stage)
        assert reply is not None and reply.get_type() == events.WORKFLOW_STARTED
    announced = kube.get("ConfigMap", namespace, configure.environment.CONFIGMAP)
    assert admission.admitted(announced) == ["first", "second"]
    assert json.loads(announced["data"]["environment.json"])["currentJobs"] == 2
    # Per admission one write of the ConfigMap, and no read but the first: the slot is
    # taken and announced by the same compare-and-set, on the copy last written.
    assert configmaps(counting.reads) == {admission.NAME: 1}
    assert configmaps(counting.writes) == {admission.NAME: 2}


def test_the_tick_rewrites_an_announcement_made_under_older_settings(
        cluster: EmbeddedCluster, kube: Kube, receiver, tmp_path):
    namespace = "announce-settings"
    client.CoreV1Api(cluster.api_client()).create_namespace({"metadata": {"name": namespace}})
    before = settings.load(environment(tmp_path, receiver, maxJobs="3", C2D_NAMESPACE=namespace))
    after = settings.load(environment(tmp_path, receiver, maxJobs="5", C2D_NAMESPACE=namespace))
    configure.slots_of(Stage("configure", before, kube, logging.getLogger("test")),
                       namespace).take("holder", max_jobs=3)
    create_workflow(kube, "holder", namespace)

    configure.on_tick(ping(), Stage("configure", after, kube, logging.getLogger("test")))

    stored = kube.get("ConfigMap", namespace, configure.environment.CONFIGMAP)
    assert json.loads(stored["data"]["environment.json"]) == \
        configure.environment.announcement(after, 1)
    assert admission.admitted(stored) == ["holder"]


def test_a_released_slot_is_announced_by_the_same_write(
        cluster: EmbeddedCluster, kube: Kube, receiver, tmp_path):
    namespace = "announce-release"
    client.CoreV1Api(cluster.api_client()).create_namespace({"metadata": {"name": namespace}})
    config = settings.load(environment(tmp_path, receiver, maxJobs="3", C2D_NAMESPACE=namespace))
    stage = Stage("configure", config, kube, logging.getLogger("test"))
    configure.slots_of(stage, namespace).take("leaving", max_jobs=3)
    counting = Counting(connect(str(cluster.kubeconfig)))

    configure.on_workflow_finished(workflow_finished("leaving", namespace),
                                   Stage("configure", config, counting, logging.getLogger("test")))

    announced = kube.get("ConfigMap", namespace, configure.environment.CONFIGMAP)
    assert admission.admitted(announced) == []
    assert json.loads(announced["data"]["environment.json"])["currentJobs"] == 0
    assert configmaps(counting.writes) == {admission.NAME: 1}


class CountingConflicts(Kube):
    """Counts the writes the API server refused with 409 Conflict."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.conflicts = 0

    def replace(self, obj: dict, subresource: str = "") -> dict:
        try:
            return super().replace(obj, subresource)
        except Conflict:
            self.conflicts += 1
            raise


def test_the_threads_of_one_instance_take_turns_on_the_slots(cluster: EmbeddedCluster,
                                                             kube: Kube):
    namespace = "turns"
    client.CoreV1Api(cluster.api_client()).create_namespace({"metadata": {"name": namespace}})
    counting = CountingConflicts(connect(str(cluster.kubeconfig)))
    leaving = [f"old-{i}" for i in range(4)]
    for name in leaving:
        admission.Slots(kube, namespace).take(name, max_jobs=8)
    arriving = [f"new-{i}" for i in range(4)]
    together = threading.Barrier(8)

    def take(name: str) -> bool:
        together.wait(timeout=10)
        return admission.Slots(counting, namespace).take(name, max_jobs=8)

    def release(name: str) -> None:
        together.wait(timeout=10)
        admission.Slots(counting, namespace).release([name], max_jobs=8)

    with ThreadPoolExecutor(8) as pool:
        taken = [pool.submit(take, name) for name in arriving]
        released = [pool.submit(release, name) for name in leaving]
    assert all(future.result() for future in taken)
    for future in released:
        future.result()  # raises what a release raised
    assert sorted(admission.Slots(kube, namespace).current()) == arriving
    assert counting.conflicts == 0


def takes_queued_behind_a_busy_turn(kube: Kube, namespace: str, names: list[str],
                                    max_jobs: int) -> dict[str, admission.Slot | BaseException]:
    """Each name's take, all started while the turn is busy and let go together; in the
    order they joined the wait (their threads' order, not that of `names`)."""
    with admission.Slots._turn:
        with ThreadPoolExecutor(len(names)) as pool:
            taken = {name: pool.submit(admission.Slots(kube, namespace).take, name, max_jobs)
                     for name in names}
            deadline = time.monotonic() + 10
            while len(admission.Slots._waiting.get(namespace, [])) < len(names):
                assert time.monotonic() < deadline, "the takes never queued up"
                time.sleep(0.005)
            arrived = [take.workflow for take in admission.Slots._waiting[namespace]]
            admission.Slots._turn.release()
            try:
                return {name: taken[name].exception(timeout=10) or taken[name].result()
                        for name in arrived}
            finally:
                admission.Slots._turn.acquire()


def test_the_takes_that_wait_for_their_turn_are_made_with_one_write(cluster: EmbeddedCluster,
                                                                     kube: Kube):
    namespace = "together"
    client.CoreV1Api(cluster.api_client()).create_namespace({"metadata": {"name": namespace}})
    admission.Slots(kube, namespace).take("first", max_jobs=4)
    counting = Counting(connect(str(cluster.kubeconfig)))

    results = takes_queued_behind_a_busy_turn(counting, namespace,
                                              [f"new-{i}" for i in range(6)], max_jobs=4)

    stored = admission.Slots(kube, namespace).read()
    assert counting.writes == {("ConfigMap", admission.NAME): 1}
    # In the order they arrived: the first three take the free slots, the rest queue.
    arrived = list(results)
    assert admission.admitted(stored) == ["first", *arrived[:3]]
    assert admission.queued(stored) == arrived[3:]
    assert [slot.value for slot in results.values()] == ["taken"] * 3 + ["queued"] * 3


def test_a_take_that_arrives_while_a_write_is_refused_joins_its_retry(cluster: EmbeddedCluster,
                                                                      kube: Kube):
    """Another instance wrote since this one last read: its write is refused, and a take
    that came meanwhile is made by the retry, not by a write of its own after it."""
    namespace = new_namespace(cluster, "join-the-retry")

    class ArrivingDuringTheWrite(CountingConflicts):
        writes = 0
        late: Future | None = None

        def replace(self, obj: dict, subresource: str = "") -> dict:
            self.writes += 1
            if self.late is None:
                self.late = pool.submit(admission.Slots(self, namespace).take, "late", 4)
                deadline = time.monotonic() + 10
                while not admission.Slots._waiting.get(namespace):
                    assert time.monotonic() < deadline, "the late take never queued up"
                    time.sleep(0.005)
            return super().replace(obj, subresource)

    here = ArrivingDuringTheWrite(connect(str(cluster.kubeconfig)))
    admission.Slots(kube, namespace).take("first", max_jobs=4)
    admission.Slots(here, namespace).read()
    admission.Slots(kube, namespace).take("other", max_jobs=4)  # the copy here is stale now
    with ThreadPoolExecutor(1) as pool:
        assert admission.Slots(here, namespace).take("mine", 4) is admission.Slot.TAKEN
        assert here.late is not None and here.late.result(timeout=10) is admission.Slot.TAKEN

    assert (here.conflicts, here.writes) == (1, 2)
    assert admission.Slots(kube, namespace).current() == ["first", "other", "mine", "late"]


def test_a_take_tells_a_slot_taken_now_from_one_held_before(cluster: EmbeddedCluster,
                                                            kube: Kube):
    namespace = "taken-or-held"
    client.CoreV1Api(cluster.api_client()).create_namespace({"metadata": {"name": namespace}})
    slots = admission.Slots(kube, namespace)
    assert slots.take("a", max_jobs=1) is admission.Slot.TAKEN
    assert slots.take("a", max_jobs=1) is admission.Slot.HELD
    assert slots.take("b", max_jobs=1) is admission.Slot.QUEUED
    assert [bool(slots.take(name, 1)) for name in ("a", "b")] == [True, False]


def test_a_failed_take_fails_every_take_it_was_making(cluster: EmbeddedCluster, kube: Kube):
    namespace = "together-failing"
    client.CoreV1Api(cluster.api_client()).create_namespace({"metadata": {"name": namespace}})

    class Refusing(Kube):
        def replace(self, obj: dict, subresource: str = "") -> dict:
            raise KubeError("throttled", status=429)

    refusing = Refusing(connect(str(cluster.kubeconfig)))
    errors = takes_queued_behind_a_busy_turn(refusing, namespace, ["w-0", "w-1", "w-2"], 4)

    assert all(isinstance(error, KubeError) and error.status == 429
               for error in errors.values())
    assert admission.Slots(kube, namespace).current() == []


def test_a_queued_workflow_another_admission_is_starting_is_left_to_it(
        cluster: EmbeddedCluster, kube: Kube, receiver, tmp_path):
    """Two slots: `leaving` frees one; `starting` holds the other, given by an admission
    still creating its objects. The freed slot goes to the head of the queue;
    `starting` is not started a second time, unless the tick finds it still queued."""
    namespace = new_namespace(cluster, "held-while-queued")
    config = settings.load(environment(tmp_path, receiver, maxJobs="2",
                                       C2D_NAMESPACE=namespace))
    for name in ("starting", "next-in-line"):
        create_workflow(kube, name, namespace)
        kube.update_status("Workflow", namespace, name,
                           lambda w: configure.decide.queued(wf.status(w)))
    slots = admission.Slots(kube, namespace)
    assert slots.take("leaving", max_jobs=2) is admission.Slot.TAKEN
    assert slots.take("starting", max_jobs=2) is admission.Slot.TAKEN
    assert slots.take("next-in-line", max_jobs=2) is admission.Slot.QUEUED
    counting = Counting(connect(str(cluster.kubeconfig)))
    stage = Stage("configure", config, counting, logging.getLogger("test"))

    reply = configure.on_workflow_finished(workflow_finished("leaving", namespace), stage)

    assert reply is not None and events.workflow_ref(reply).name == "next-in-line"
    assert sorted(slots.current()) == ["next-in-line", "starting"]
    assert kube.get("Job", namespace, "next-in-line-configure") is not None
    assert kube.get("Job", namespace, "starting-configure") is None
    assert ("Workflow", "starting") not in counting.writes
    assert wf.status_code(kube.get("Workflow", namespace, "starting")) == wf.QUEUED

    configure.on_tick(ping(), stage)  # its admission never got to it: the tick does

    assert kube.get("Job", namespace, "starting-configure") is not None
    assert wf.status_code(kube.get("Workflow", namespace, "starting")) == wf.CONFIGURING


def new_namespace(cluster: EmbeddedCluster, name: str) -> str:
    client.CoreV1Api(cluster.api_client()).create_namespace({"metadata": {"name": name}})
    return name


def test_a_take_writes_on_the_copy_this_process_saw_last(cluster: EmbeddedCluster):
    namespace = new_namespace(cluster, "seen-last")
    counting = Counting(connect(str(cluster.kubeconfig)))
    slots = admission.Slots(counting, namespace)

    assert slots.take("a", max_jobs=3) is admission.Slot.TAKEN  # nothing seen yet: one read
    assert slots.take("b", max_jobs=3) is admission.Slot.TAKEN  # on what that write returned
    slots.release(["a"], max_jobs=3)

    assert configmaps(counting.reads) == {admission.NAME: 1}
    assert configmaps(counting.writes) == {admission.NAME: 3}
    assert admission.Slots(counting, namespace).current() == ["b"]


def test_a_stale_copy_costs_a_refused_write_never_a_slot(cluster: EmbeddedCluster, kube: Kube):
    namespace = new_namespace(cluster, "seen-stale")
    here = CountingConflicts(connect(str(cluster.kubeconfig)))
    assert admission.Slots(here, namespace).take("mine", max_jobs=1) is admission.Slot.TAKEN
    admission.Slots(here, namespace).release(["mine"], 1)  # seen here: the slot is free
    assert admission.Slots(kube, namespace).take("other", max_jobs=1) is admission.Slot.TAKEN

    assert admission.Slots(here, namespace).take("late", max_jobs=1) is admission.Slot.QUEUED
    assert here.conflicts == 1  # the stale copy was tried, refused, and read again
    assert admission.Slots(kube, namespace).current() == ["other"]
    assert admission.queued(admission.Slots(kube, namespace).read()) == ["late"]


def test_an_add_on_a_stale_full_house_is_decided_again_on_a_fresh_copy(
        cluster: EmbeddedCluster, kube: Kube, receiver, tmp_path):
    """This process last saw a full house; another instance freed the slot since. The
    place in the queue it tries to write is refused, and the add starts the workflow."""
    namespace = new_namespace(cluster, "seen-full")
    config = settings.load(environment(tmp_path, receiver, maxJobs="1", C2D_NAMESPACE=namespace))
    here = Counting(connect(str(cluster.kubeconfig)))
    assert admission.Slots(here, namespace).take("holder", max_jobs=1) is admission.Slot.TAKEN
    admission.Slots(kube, namespace).release(["holder"], 1)
    workflow = create_workflow(kube, "next", namespace)

    reply = configure.on_workflow_added(resource_event("add", workflow),
                                        Stage("configure", config, here, logging.getLogger("t")))

    assert reply is not None and reply.get_type() == events.WORKFLOW_STARTED
    assert here.writes[("Workflow", "next")] == 1  # started, never written Queued
    assert admission.Slots(kube, namespace).current() == ["next"]


class AdmittedBehindTheListing(Kube):
    """Right after the tick's listing of Workflows is served, another instance creates
    and admits `late`: the listing cannot show it."""

    def __init__(self, *args: Any, other: Kube, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.other, self.done = other, False

    def list(self, kind: str, namespace: str, label_selector: str | None = None,
             field_selector: str | None = None) -> list[dict]:
        listed = super().list(kind, namespace, label_selector, field_selector)
        if kind == "Workflow" and not self.done:
            self.done = True
            create_workflow(self.other, "late", namespace)
            admission.Slots(self.other, namespace).take("late", max_jobs=2)
        return listed


def test_the_tick_keeps_the_slot_of_a_workflow_admitted_after_its_listing(
        cluster: EmbeddedCluster, kube: Kube, receiver, tmp_path):
    namespace = new_namespace(cluster, "tick-late")
    config = settings.load(environment(tmp_path, receiver, maxJobs="2", C2D_NAMESPACE=namespace))
    racing = AdmittedBehindTheListing(connect(str(cluster.kubeconfig)), other=kube)

    configure.on_tick(ping(), Stage("configure", config, racing, logging.getLogger("t")))

    assert racing.done
    assert admission.Slots(kube, namespace).current() == ["late"]


def test_the_tick_keeps_the_queue_true_to_the_workflows(
        cluster: EmbeddedCluster, kube: Kube, receiver, tmp_path):
    """Workflows written Queued without a place (by an older version, or a lost write)
    join the queue in age order; a place of a workflow gone is dropped; and when
    `maxJobs` grows, the head of the queue starts."""
    namespace = new_namespace(cluster, "tick-queue")
    one = settings.load(environment(tmp_path, receiver, maxJobs="1", C2D_NAMESPACE=namespace))
    three = settings.load(environment(tmp_path, receiver, maxJobs="3", C2D_NAMESPACE=namespace))
    create_workflow(kube, "holder", namespace)
    kube.update_status("Workflow", namespace, "holder",
                       lambda w: configure.decide.started(wf.status(w)))
    slots = admission.Slots(kube, namespace)
    assert slots.take("holder", 1) is admission.Slot.TAKEN
    assert slots.take("gone", 1) is admission.Slot.QUEUED  # no such workflow
    for name in ("q1", "q2"):
        create_workflow(kube, name, namespace)
        kube.update_status("Workflow", namespace, name,
                           lambda w: configure.decide.queued(wf.status(w)))

    configure.on_tick(ping(), Stage("configure", one, kube, logging.getLogger("t")))

    assert (slots.current(), admission.queued(slots.read())) == (["holder"], ["q1", "q2"])

    configure.on_tick(ping(), Stage("configure", three, kube, logging.getLogger("t")))

    assert (slots.current(), admission.queued(slots.read())) == (["holder", "q1", "q2"], [])
    for name in ("q1", "q2"):
        assert wf.status_code(kube.get("Workflow", namespace, name)) == wf.CONFIGURING
