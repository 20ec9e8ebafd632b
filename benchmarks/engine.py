"""Scenarios 1-3: stage transitions, control-plane overhead and throughput on the embedded stack.

Every workflow is the same trivial one (no input, a one-line rawcode algorithm),
so that the pods' own work is as small as it gets and the engine's share shows.

- `run_workflows(..., at_once=False)`: one workflow at a time (no queueing): the
  transition latencies and the overhead per workflow of an idle engine.
- `run_workflows(..., at_once=True)`: all submitted together under `maxJobs`:
  throughput, and the transition latencies under load.
- `run_reference(...)`: the same three Jobs per workflow, built by the same
  builders, created back-to-back by this process with the same concurrency
  and no engine: the throughput reference.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psutil

from benchmarks.machine import BusySampler, busy_between, busy_seconds
from benchmarks.observe import Accepted, BrokerTap, Timeline
from benchmarks.stats import summary
from devstack.apiserver import audit
from shared import events, keepalive, manifests
from shared import workflow as wf

TRIVIAL_ALGORITHM = "print('trivial algorithm', flush=True)\n"
REFERENCE_NAMESPACE = "bench-reference"
TRANSITIONS = ("add->configure", "configure->algorithm", "algorithm->publish")
STAGE_REPLY = {"configure": events.CONFIGURE_SUCCEEDED, "algorithm": events.ALGORITHM_FINISHED}
COLLECTION = {"ConfigMap": "/api/v1/namespaces/{ns}/configmaps",
              "Secret": "/api/v1/namespaces/{ns}/secrets",
              "PersistentVolumeClaim": "/api/v1/namespaces/{ns}/persistentvolumeclaims",
              "Job": "/apis/batch/v1/namespaces/{ns}/jobs",
              "NetworkPolicy": "/apis/networking.k8s.io/v1/namespaces/{ns}/networkpolicies",
              "Workflow": f"/apis/{wf.GROUP}/{wf.VERSION}/namespaces/{{ns}}/{wf.PLURAL}"}


def workflow_body(name: str, namespace: str) -> dict[str, Any]:
    """The trivial workflow: no dataset, a one-line Python algorithm, outputs published."""
    stage = {"index": 0, "input": [],
             "algorithm": {"id": "did:op:bench-trivial", "rawcode": TRIVIAL_ALGORITHM,
                           "container": {"image": "python", "tag": "3.11-slim",
                                         "entrypoint": "python $ALGO"}},
             "output": {"publishOutput": 1, "publishAlgorithmLog": 1}}
    return {"apiVersion": wf.API_VERSION, "kind": wf.KIND,
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"secret": "bench-secret",
                     "metadata": {"chainId": 8996, "stages": [stage]}}}


@dataclass
class EngineRun:
    """What one run through the engine produced (instants in `time.time()` seconds)."""

    label: str
    names: list[str]
    submitted: dict[str, float]
    started: float
    ended: float
    timeline: Timeline
    accepted: list[Accepted]
    timed_out: list[str] = field(default_factory=list)
    job_created: dict[str, float] = field(default_factory=dict)  # from the audit log
    at_once: bool = False
    busy: list[tuple[float, float]] = field(default_factory=list)  # BusySampler's samples

    def admitted_at_once(self, name: str) -> bool:
        """Whether workflow `name` was admitted on its add, never written Queued."""
        return name not in self.timeline.wf_queued

    @property
    def wall(self) -> float:
        return self.ended - self.started

    @property
    def jobs(self) -> dict[str, float]:
        """Job name -> when it was created in the API (the audit log's stamp of the
        create's answer), else when the harness's watch saw it (later, by the watch's
        delivery and this busy process)."""
        return self.job_created or self.timeline.job_added


def run_workflows(stack: Any, prefix: str, count: int, at_once: bool, timeout: float,
                  tap: BrokerTap) -> EngineRun:
    """Submit `count` trivial workflows (together or one by one) and wait for them all."""
    namespace = stack.namespace
    # Plain HTTP, as the reference creates its objects: the typed client's validation
    # cost this process (the stack's) ~1 ms per workflow, right during a burst.
    api = _Api(stack.cluster.url, namespace)
    timeline = Timeline(stack.cluster.url, namespace).start()
    names = [f"{prefix}-{i:04d}" for i in range(count)]
    submitted: dict[str, float] = {}
    first_tap = len(tap.snapshot())
    # Only a batch has an admission window to read them for (`admission_window`).
    sampler = BusySampler().start() if at_once else None

    def submit(name: str) -> None:
        submitted[name] = time.time()
        api.create(workflow_body(name, namespace))

    started = time.time()
    timed_out: list[str] = []
    try:
        if at_once:
            for name in names:
                submit(name)
            if not timeline.wait(lambda t: all(n in t.wf_final for n in names), timeout):
                timed_out = [n for n in names if n not in timeline.wf_final]
        else:
            for name in names:
                submit(name)
                if not timeline.wait(lambda t, n=name: n in t.wf_final, timeout):
                    timed_out.append(name)
                    break
        ended = max([timeline.wf_final.get(n, 0.0) for n in names] + [started])
    finally:
        timeline.stop()
        api.close()
        busy = sampler.stop() if sampler else []
    audit_log = getattr(stack.cluster, "audit_log", None)
    created = audit.created(audit_log, "jobs", namespace) if audit_log else {}
    return EngineRun(prefix, names, submitted, started, ended, timeline,
                     tap.snapshot()[first_tap:], timed_out, created, at_once, busy)


class CpuMeter:
    """CPU seconds (user + system) spent between `start()` and `stop()`, by whom.

    `harness`: the stack's own processes: this one (Job controller, kubelet, Broker,
    sources and the harness itself) and the API server's; `functions`: the gunicorn
    processes of the stack; `rest`: the whole machine's busy time minus those two: the
    pods, and any other work running on the machine (see the load average).
    """

    def __init__(self, stack: Any):
        self.functions = [psutil.Process(server.pid) for server in stack.functions.values()
                          if hasattr(server, "pid")]
        apiserver_pid = getattr(stack.cluster.apiserver, "pid", None)
        self.stack = [psutil.Process(), *([psutil.Process(apiserver_pid)]
                                          if apiserver_pid else [])]
        self._start: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        own = sum(p.cpu_times().user + p.cpu_times().system for p in self.stack)
        functions = 0.0
        for master in self.functions:
            for process in [master, *master.children(recursive=True)]:
                try:
                    times = process.cpu_times()
                except psutil.Error:
                    continue
                functions += times.user + times.system
        return {"harness": own, "functions": functions, "machine": busy_seconds()}

    def start(self) -> CpuMeter:
        self._start = self._now()
        return self

    def stop(self) -> dict[str, float]:
        end = self._now()
        spent = {k: end[k] - self._start[k] for k in end}
        spent["rest"] = spent.pop("machine") - spent["harness"] - spent["functions"]
        return spent


# ---------------------------------------------------------------- figures from a run


def first_accepted(accepted: Iterable[Accepted]) -> dict[tuple[str, str, str], float]:
    """(what, workflow, stage) -> the first instant it entered the Broker.

    what: `add` (the Workflow's add), `job-finished` (a Job update showing it
    finished), or the type of one of c2d's reply events.
    """
    found: dict[tuple[str, str, str], float] = {}
    for record in accepted:
        if record.workflow is None:
            continue
        if record.type == events.RESOURCE_ADD and record.stage is None:
            key = ("add", record.workflow, "")
        elif record.type == events.RESOURCE_UPDATE and record.job_finished:
            key = ("job-finished", record.workflow, record.stage or "")
        elif record.type.startswith(events.PREFIX):
            key = (record.type, record.workflow, "")
        else:
            continue
        found.setdefault(key, record.at)
    return found


def transitions(run: EngineRun) -> dict[str, list[float]]:
    """Per transition, the seconds from the event entering the Broker to the next Job
    created in the API (`EngineRun.jobs`).

    `configure->algorithm` starts at the configure Job's finished update; its two
    halves (the configure function answering with `configure.succeeded`, the
    algorithm function creating the Job) are listed too, and the same for publish.
    `add->configure` counts the workflows admitted at once; a queued one starts
    when a slot frees, from the last `workflow.finished` before its Job. Both
    together, every workflow from the event that let it in, are listed as well.
    Also, for context, the embedded cluster's share: pod exit seen -> that Job
    update entering the Broker; and the observer's: a Job created -> seen by the
    harness's watch.
    """
    first = first_accepted(run.accepted)
    jobs = run.jobs
    samples: dict[str, list[float]] = {name: [] for name in TRANSITIONS}
    parts: dict[str, list[float]] = {}

    def add(name: str, start: float | None, end: float | None) -> None:
        if start is not None and end is not None:
            target = samples[name] if name in samples else parts.setdefault(name, [])
            target.append(end - start)

    pods_by_job: dict[str, float] = {}
    for pod, (workflow, stage) in run.timeline.pod_owner.items():
        if pod in run.timeline.pod_finished:
            pods_by_job[f"{workflow}-{stage}"] = run.timeline.pod_finished[pod]
    # A slot freed (some workflow.finished entered the Broker) -> a queued one's configure Job.
    freed = sorted(r.at for r in run.accepted if r.type == events.WORKFLOW_FINISHED)
    for name in run.names:
        configure_job = jobs.get(f"{name}-configure")
        if run.admitted_at_once(name):
            let_in = first.get(("add", name, ""))
            add("add->configure", let_in, configure_job)
        else:
            before = [t for t in freed if configure_job is not None and t <= configure_job]
            let_in = before[-1] if before else None
            add("  (queued) workflow.finished -> next configure Job", let_in, configure_job)
        add("  (every workflow) add or slot freed -> configure Job", let_in, configure_job)
        for stage, following in (("configure", "algorithm"), ("algorithm", "publish")):
            finished = first.get(("job-finished", name, stage))
            reply = first.get((STAGE_REPLY[stage], name, ""))
            created = jobs.get(f"{name}-{following}")
            add(f"{stage}->{following}", finished, created)
            add(f"  {stage} Job finished -> {STAGE_REPLY[stage].split('.', 3)[-1]} reply",
                finished, reply)
            add(f"  {STAGE_REPLY[stage].split('.', 3)[-1]} reply -> {following} Job",
                reply, created)
        add("publish Job finished -> phase final", first.get(("job-finished", name, "publish")),
            run.timeline.wf_final.get(name))
        for stage in ("configure", "algorithm", "publish"):
            add("(cluster) pod exit -> Job-finished event", pods_by_job.get(f"{name}-{stage}"),
                first.get(("job-finished", name, stage)))
            if run.job_created:
                add("(observer) Job created in the API -> seen by the harness's watch",
                    run.job_created.get(f"{name}-{stage}"),
                    run.timeline.job_added.get(f"{name}-{stage}"))
    return {**samples, **parts}


def admission_window(run: EngineRun) -> dict[str, Any] | None:
    """How busy the machine was while a batch's first workflows were admitted together:
    from the first create to the last of their configure Jobs.

    Their `add->configure` is bounded by the CPU an admission costs, all processes
    together (API server, Broker, configure, the pods started meanwhile). With the
    cores near 100 % busy there, that figure follows the machine's speed rather
    than any wait in the engine. None for a run one at a time.
    """
    admitted = [name for name in run.names if run.admitted_at_once(name)]
    ends = [run.jobs.get(f"{name}-configure") for name in admitted]
    if not run.at_once or not admitted or None in ends or not run.submitted:
        return None
    start, end = min(run.submitted.values()), max(ends)
    busy = busy_between(run.busy, start, end)
    if busy is None or end <= start:
        return None
    cores = os.cpu_count() or 1
    return {"admitted": len(admitted), "seconds": end - start, "cores": cores,
            "busy_cpu_seconds": busy, "utilisation": busy / (cores * (end - start)),
            "cpu_seconds_per_admission": busy / len(admitted)}


def slow_workflows(run: EngineRun, limit: float = 5.0) -> dict[str, dict[str, float]]:
    """Workflows with a transition slower than `limit` seconds (a lost event waits for the
    resync tick): name -> transition -> seconds, to look up in the stack's log."""
    first = first_accepted(run.accepted)
    jobs = run.jobs
    slow: dict[str, dict[str, float]] = {}
    for name in run.names:
        for stage, following in (("configure", "algorithm"), ("algorithm", "publish")):
            start = first.get(("job-finished", name, stage))
            end = jobs.get(f"{name}-{following}")
            if start is not None and end is not None and end - start > limit:
                slow.setdefault(name, {})[f"{stage}->{following}"] = end - start
    return slow


def overheads(run: EngineRun) -> tuple[list[float], list[float], list[float]]:
    """Per workflow: (end-to-end seconds, the pods' run time, end-to-end minus pods)."""
    wall, pods, overhead = [], [], []
    for name in run.names:
        start, end = run.submitted.get(name), run.timeline.wf_final.get(name)
        pod_time = run.timeline.pod_seconds(name)
        if start is None or end is None or pod_time is None:
            continue
        wall.append(end - start)
        pods.append(pod_time)
        overhead.append(end - start - pod_time)
    return wall, pods, overhead


def phases(run: EngineRun) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name in run.names:
        phase = run.timeline.wf_phase.get(name, "not finished")
        counts[phase] = counts.get(phase, 0) + 1
    return counts


def run_summary(run: EngineRun) -> dict[str, Any]:
    """The raw samples and their summaries, ready for the results file."""
    wall, pods, overhead = overheads(run)
    moves = transitions(run)
    return {
        "workflows": len(run.names), "wall_seconds": run.wall, "phases": phases(run),
        "timed_out": run.timed_out, "slow_workflows": slow_workflows(run),
        "transitions": {k: {"samples": v, **summary(v)} for k, v in moves.items()},
        "end_to_end": {"samples": wall, **summary(wall)},
        "pod_seconds": {"samples": pods, **summary(pods)},
        "pod_seconds_by_stage": {k: summary(v)
                                 for k, v in run.timeline.pod_seconds_by_stage().items()},
        "overhead": {"samples": overhead, **summary(overhead)},
        "admission_window": admission_window(run),
    }


# ---------------------------------------------------------------- the reference


class _Api:
    """Create and delete objects with plain HTTP (the reference's own cost stays small).

    Kept-alive `http.client` connections (`shared.keepalive`), as the functions
    call the API: this process also routes the burst's events, and `requests`
    had cost it ~1 ms of CPU per call, a urllib3 pool ~0.2 ms.
    """

    HEADERS = {"Content-Type": "application/json"}

    def __init__(self, server: str, namespace: str):
        self.origin = keepalive.Origin.of(server)
        self.namespace = namespace
        self.connections = keepalive.Connections()

    def _send(self, method: str, path: str, body: dict[str, Any]) -> keepalive.Answer:
        return self.connections.request(self.origin, method, path, json.dumps(body).encode(),
                                        self.HEADERS, timeout=30)

    def create(self, obj: dict[str, Any]) -> None:
        answer = self._send("POST", COLLECTION[obj["kind"]].format(ns=self.namespace), obj)
        if answer.status not in (200, 201):
            raise RuntimeError(f"creating {obj['kind']} {obj['metadata']['name']}: "
                               f"{answer.status} {answer.data[:300]!r}")

    def delete(self, kind: str, name: str) -> None:
        self._send("DELETE", COLLECTION[kind].format(ns=self.namespace) + f"/{name}",
                   {"propagationPolicy": "Background"})

    def ensure_namespace(self) -> None:
        answer = self._send("POST", "/api/v1/namespaces", {
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}})
        if answer.status not in (200, 201, 409):
            raise RuntimeError(f"namespace {self.namespace}: {answer.status}")

    def close(self) -> None:
        self.connections.close()


def _bare(obj: dict[str, Any]) -> dict[str, Any]:
    """The engine's object without its owner (there is no Workflow here)."""
    obj["metadata"].pop("ownerReferences", None)
    return obj


@dataclass
class ReferenceRun:
    names: list[str]
    started: float
    ended: float
    failed: list[str]
    timeline: Timeline

    @property
    def wall(self) -> float:
        return self.ended - self.started


def run_reference(stack: Any, prefix: str, count: int, concurrency: int,
                  timeout: float) -> ReferenceRun:
    """The same Jobs as the engine creates, back-to-back per workflow, `concurrency` at once."""
    api = _Api(stack.cluster.url, REFERENCE_NAMESPACE)
    api.ensure_namespace()
    timeline = Timeline(stack.cluster.url, REFERENCE_NAMESPACE, workflows=False).start()
    names = [f"{prefix}-{i:04d}" for i in range(count)]
    pending = iter(names)
    lock = threading.Lock()
    failed: list[str] = []
    deadline = time.monotonic() + timeout

    def one(name: str) -> None:
        workflow = workflow_body(name, REFERENCE_NAMESPACE)
        workflow["metadata"]["uid"] = str(uuid.uuid4())
        created: list[tuple[str, str]] = []
        try:
            for stage in ("configure", "algorithm", "publish"):
                for obj in manifests.for_stage(workflow, stack.settings, stage):
                    api.create(_bare(obj))
                    created.append((obj["kind"], obj["metadata"]["name"]))
                job = f"{name}-{stage}"
                left = deadline - time.monotonic()
                if not timeline.wait(lambda t, j=job: j in t.job_finished, max(left, 0)):
                    raise TimeoutError(job)
        except (RuntimeError, OSError, http.client.HTTPException):  # OSError: timeouts too
            with lock:
                failed.append(name)
        for kind, object_name in reversed(created):  # clean up, as the engine does
            api.delete(kind, object_name)

    def worker() -> None:
        while True:
            with lock:
                name = next(pending, None)
            if name is None:
                return
            one(name)

    started = time.time()
    threads = [threading.Thread(target=worker, name=f"bench-reference-{i}", daemon=True)
               for i in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(deadline - time.monotonic(), 0) + 30)
    ended = time.time()
    timeline.stop()
    api.close()
    return ReferenceRun(names, started, ended, failed, timeline)


def reference_summary(run: ReferenceRun) -> dict[str, Any]:
    per_workflow = [
        sum(run.timeline.pod_finished[p] - run.timeline.pod_started[p]
            for p, (owner, _) in run.timeline.pod_owner.items()
            if owner == name and p in run.timeline.pod_started and p in run.timeline.pod_finished)
        for name in run.names]
    return {"workflows": len(run.names), "wall_seconds": run.wall, "failed": run.failed,
            "pod_seconds": {"samples": per_workflow, **summary(per_workflow)},
            "pod_seconds_by_stage": {k: summary(v)
                                     for k, v in run.timeline.pod_seconds_by_stage().items()}}

