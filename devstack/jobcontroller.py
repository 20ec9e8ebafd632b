"""The embedded Job controller (``batch/v1``, non-indexed Jobs), over HTTP like a real one.

It watches Jobs and Pods, and for each Job:

- creates pods from ``spec.template`` named ``<job>-<5 random>``, labelled
  ``job-name`` / ``controller-uid`` (and their ``batch.kubernetes.io/`` forms),
  owned by the Job (``controller: true``, ``blockOwnerDeletion: true``), up to
  ``parallelism`` at a time until ``completions`` pods succeeded;
- keeps ``status.active`` / ``ready`` / ``succeeded`` / ``failed``,
  ``startTime`` and ``completionTime`` (success only, as upstream);
- succeeds with ``SuccessCriteriaMet`` then ``Complete`` (reason
  ``CompletionsReached``); fails with ``FailureTarget`` then, once no pod is
  still running, ``Failed``, with reason ``BackoffLimitExceeded`` (more failed
  pods, or container restarts under ``restartPolicy: OnFailure``, than
  ``backoffLimit``, default 6) or ``DeadlineExceeded`` (``activeDeadlineSeconds``
  counted from ``startTime``); the running pods are deleted;
- ``suspend``: deletes the active pods, condition ``Suspended``; resuming
  resets ``startTime``;
- ``ttlSecondsAfterFinished``: deletes the finished Job (propagation
  ``Background``; the garbage collector removes its pods).

Every change is driven by a watch event or by a timer set for the exact
moment (deadline, TTL, retry back-off): no polling. Pods deleted before they
finished count as failed. A new pod after a failure is created after
``retry_backoff`` seconds, doubling per failure (0 by default in the embedded
stack; a real cluster waits 10 s, 20 s, ...).
"""

from __future__ import annotations

import heapq
import logging
import random
import threading
import time
from datetime import UTC, datetime

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from devstack.kubelet import status as st
from devstack.kubelet.informer import MERGE_PATCH, Informer, Rest, path

log = logging.getLogger(__name__)

DEFAULT_BACKOFF_LIMIT = 6
MAX_RETRY_BACKOFF = 360.0
# The alphabet Kubernetes uses for generated name suffixes (no vowels, no look-alikes).
_SUFFIX_CHARS = "bcdfghjklmnpqrstvwxz2456789"
_TERMINAL = ("Succeeded", "Failed")
_DISCARDED = "Discarded"  # a pod the controller removed on suspension: not a failure


def _suffix() -> str:
    return "".join(random.choice(_SUFFIX_CHARS) for _ in range(5))


def _owner_job(pod: dict) -> tuple[str, str] | None:
    """(key, uid) of the Job controlling ``pod``, if any."""
    for ref in pod["metadata"].get("ownerReferences") or []:
        if ref.get("kind") == "Job" and ref.get("controller"):
            return f"{pod['metadata'].get('namespace') or 'default'}/{ref['name']}", ref["uid"]
    return None


def _seconds_since(stamp: str | None) -> float:
    t = st.parse_time(stamp)
    return 0.0 if t is None else (datetime.now(UTC) - t).total_seconds()


class _Queue:
    """A work queue of Job keys: each key once, never two workers on one key."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._order: list[str] = []
        self._dirty: set[str] = set()
        self._busy: set[str] = set()
        self._timers: list[tuple[float, str]] = []  # heap of (monotonic time, key)
        self._due: dict[str, float] = {}  # key -> earliest timer pending for it
        self.closed = False

    def add(self, key: str) -> None:
        with self._cond:
            if key in self._dirty:
                return
            self._dirty.add(key)
            if key not in self._busy:
                self._order.append(key)
                self._cond.notify()

    def add_after(self, key: str, seconds: float) -> None:
        """Add ``key`` in ``seconds``; a later timer is dropped if an earlier one is pending
        (the sync it triggers sets the later one again)."""
        when = time.monotonic() + max(seconds, 0)
        with self._cond:
            if self._due.get(key, float("inf")) <= when:
                return
            self._due[key] = when
            heapq.heappush(self._timers, (when, key))
            self._cond.notify_all()

    def get(self) -> str | None:
        with self._cond:
            while True:
                if self.closed:
                    return None
                self._fire_timers()
                if self._order:
                    key = self._order.pop(0)
                    self._dirty.discard(key)
                    self._busy.add(key)
                    return key
                wait = self._timers[0][0] - time.monotonic() if self._timers else None
                self._cond.wait(wait)

    def done(self, key: str) -> None:
        with self._cond:
            self._busy.discard(key)
            if key in self._dirty:  # changed while being worked on: once more
                self._order.append(key)
                self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def _fire_timers(self) -> None:
        now = time.monotonic()
        while self._timers and self._timers[0][0] <= now:
            when, key = heapq.heappop(self._timers)
            if self._due.get(key) == when:
                del self._due[key]
            if key not in self._dirty:
                self._dirty.add(key)
                if key not in self._busy:
                    self._order.append(key)


class JobController:
    """Reconciles every Job of the cluster; ``start()`` / ``stop()``."""

    def __init__(
        self, api_client: client.ApiClient, workers: int = 2, retry_backoff: float = 0.0
    ) -> None:
        self._rest = Rest(api_client)
        self._retry_backoff = retry_backoff
        self._queue = _Queue()
        # job uid -> {pod uid: "Succeeded" | "Failed"}: every pod that ended, kept after
        # the pod object is gone (a pod deleted before it finished counts as failed)
        self._ended: dict[str, dict[str, str]] = {}
        self._lock = threading.Lock()
        self.jobs = Informer("jobs", self._rest, path("jobs", group="batch"), self._on_job)
        self.pods = Informer("job-pods", self._rest, path("pods"), self._on_pod)
        self._threads = [
            threading.Thread(target=self._work, name=f"jobcontroller-{i}", daemon=True)
            for i in range(workers)
        ]

    def start(self) -> None:
        self.pods.start()
        self.pods.wait_synced()
        self.jobs.start()
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._queue.close()
        self.jobs.stop()
        self.pods.stop()
        for t in self._threads:
            t.join(timeout=5)

    # -- events ------------------------------------------------------------

    def _on_job(self, kind: str, job: dict) -> None:
        if kind == "DELETED":
            with self._lock:
                self._ended.pop(job["metadata"].get("uid"), None)
            return
        self._queue.add(_key(job))

    def _on_pod(self, kind: str, pod: dict) -> None:
        owner = _owner_job(pod)
        if owner is None:
            return
        key, job_uid = owner
        phase = (pod.get("status") or {}).get("phase")
        if phase not in _TERMINAL and kind == "DELETED":
            phase = "Failed"
        if phase in _TERMINAL:
            with self._lock:
                ended = self._ended.setdefault(job_uid, {})
                if ended.get(pod["metadata"]["uid"]) != _DISCARDED:
                    ended[pod["metadata"]["uid"]] = phase
        self._queue.add(key)

    # -- reconciling ---------------------------------------------------------

    def _work(self) -> None:
        while True:
            key = self._queue.get()
            if key is None:
                return
            try:
                self._sync(key)
            except ApiException as exc:
                if exc.status == 409:  # stale read: the watch brings the new version
                    self._queue.add_after(key, 0.05)
                elif exc.status != 404:
                    log.warning("job %s: %s", key, exc)
                    self._queue.add_after(key, 1.0)
            except Exception:
                log.exception("job %s: sync failed", key)
                self._queue.add_after(key, 1.0)
            finally:
                self._queue.done(key)

    def _pods_of(self, job: dict) -> list[dict]:
        ns, uid = job["metadata"].get("namespace") or "default", job["metadata"]["uid"]
        return [
            p for p in self.pods.items()
            if (p["metadata"].get("namespace") or "default") == ns
            and any(r.get("uid") == uid and r.get("controller")
                    for r in p["metadata"].get("ownerReferences") or [])
        ]

    def _sync(self, key: str) -> None:
        job = self.jobs.get(key)
        if job is None or job["metadata"].get("deletionTimestamp"):
            return
        spec, old = job.get("spec") or {}, job.get("status") or {}
        status = dict(old)
        conds = list(old.get("conditions") or [])
        pods = self._pods_of(job)
        running = [p for p in pods if (p.get("status") or {}).get("phase") not in _TERMINAL]
        active = [p for p in running if not p["metadata"].get("deletionTimestamp")]
        with self._lock:
            ended = list(self._ended.get(job["metadata"]["uid"], {}).values())
        # never below what was already reported (the controller may have restarted)
        succeeded = max(ended.count("Succeeded"), old.get("succeeded") or 0)
        failed = max(ended.count("Failed"), old.get("failed") or 0)

        if st.is_true(conds, "Complete") or st.is_true(conds, "Failed"):
            self._expire(key, job, conds)
            return

        completions = spec.get("completions", 1)
        parallelism = spec.get("parallelism", 1)
        backoff_limit = spec.get("backoffLimit", DEFAULT_BACKOFF_LIMIT)
        deadline = spec.get("activeDeadlineSeconds")
        finishing = st.is_true(conds, "FailureTarget") or st.is_true(conds, "SuccessCriteriaMet")

        if not finishing and spec.get("suspend"):
            self._delete_pods(active, discard=job["metadata"]["uid"])
            if not st.is_true(conds, "Suspended"):
                conds = st.set_condition(conds, "Suspended", True, "JobSuspended", "Job suspended")
            status.pop("startTime", None)
            active = []
        elif not finishing:
            if st.is_true(conds, "Suspended"):
                conds = st.set_condition(conds, "Suspended", False, "JobResumed", "Job resumed")
                status["startTime"] = st.now()
            status.setdefault("startTime", st.now())
            restarts = 0
            if (spec.get("template") or {}).get("spec", {}).get("restartPolicy") == "OnFailure":
                restarts = sum(_restarts(p) for p in active)
            elapsed = _seconds_since(status["startTime"])
            if failed + restarts > backoff_limit:
                conds = st.set_condition(conds, "FailureTarget", True, "BackoffLimitExceeded",
                                         "Job has reached the specified backoff limit")
            elif deadline is not None and elapsed >= deadline:
                conds = st.set_condition(conds, "FailureTarget", True, "DeadlineExceeded",
                                         "Job was active longer than specified deadline")
            elif _done(completions, succeeded, active):
                conds = st.set_condition(conds, "SuccessCriteriaMet", True, "CompletionsReached",
                                         "Reached expected number of succeeded pods")
            else:
                active += self._create_pods(
                    job, _wanted(completions, parallelism, succeeded) - len(active), failed,
                )
                if deadline is not None:
                    self._queue.add_after(key, deadline - elapsed)

        if st.is_true(conds, "FailureTarget") or st.is_true(conds, "SuccessCriteriaMet"):
            self._delete_pods(active)
            active = []
            if not running:  # every pod has stopped: the Job is finished
                conds = self._finish(conds, status)

        status.update(
            conditions=conds or None,
            active=len(active),
            ready=sum(1 for p in active if st.is_true((p.get("status") or {}).get("conditions"),
                                                      "Ready")),
            succeeded=succeeded,
            failed=failed,
        )
        # as the API serializes it: counters other than `ready` are omitted when zero
        status = {k: v for k, v in status.items()
                  if v is not None and not (v == 0 and k in ("active", "succeeded", "failed"))}
        if status != old:
            self._write_status(job, status, old)
        if st.is_true(conds, "Complete") or st.is_true(conds, "Failed"):
            self._expire(key, job, conds)

    def _finish(self, conds: list[dict], status: dict) -> list[dict]:
        target = st.find_condition(conds, "FailureTarget")
        if target and target.get("status") == "True":
            return st.set_condition(conds, "Failed", True, target.get("reason"),
                                    target.get("message"))
        status["completionTime"] = st.now()
        return st.set_condition(conds, "Complete", True, "CompletionsReached",
                                "Reached expected number of succeeded pods")

    def _write_status(self, job: dict, status: dict, old: dict) -> None:
        body = {"status": {**{k: None for k in old if k not in status}, **status}}
        meta = job["metadata"]
        new = self._rest.call("PATCH", path("jobs", meta.get("namespace") or "default",
                                            meta["name"], "status", group="batch"),
                              body, MERGE_PATCH)
        self.jobs.observe(new)

    def _create_pods(self, job: dict, count: int, failed: int) -> list[dict]:
        if count <= 0:
            return []
        if failed and self._retry_backoff > 0:
            wait = min(self._retry_backoff * 2 ** (failed - 1), MAX_RETRY_BACKOFF)
            since = self._last_failure(job)
            if since < wait:
                self._queue.add_after(_key(job), wait - since)
                return []
        created = []
        for _ in range(count):
            pod = self._new_pod(job)
            for _attempt in range(5):  # a name clash is retried with another suffix
                try:
                    obj = self._rest.call("POST", path("pods", pod["metadata"]["namespace"]), pod)
                    self.pods.observe(obj)
                    created.append(obj)
                    break
                except ApiException as exc:
                    if exc.status != 409:
                        raise
                    pod["metadata"]["name"] = f"{job['metadata']['name']}-{_suffix()}"
        return created

    def _new_pod(self, job: dict) -> dict:
        meta, template = job["metadata"], (job.get("spec") or {}).get("template") or {}
        tmeta = template.get("metadata") or {}
        name, uid = meta["name"], meta["uid"]
        labels = dict(tmeta.get("labels") or {})
        labels.update({
            "job-name": name,
            "controller-uid": uid,
            "batch.kubernetes.io/job-name": name,
            "batch.kubernetes.io/controller-uid": uid,
        })
        pod_meta = {
            "name": f"{name}-{_suffix()}",
            "namespace": meta.get("namespace") or "default",
            "labels": labels,
            "ownerReferences": [{
                "apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": uid,
                "controller": True, "blockOwnerDeletion": True,
            }],
        }
        if tmeta.get("annotations"):
            pod_meta["annotations"] = dict(tmeta["annotations"])
        return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta,
                "spec": template.get("spec") or {}}

    def _last_failure(self, job: dict) -> float:
        """Seconds since the Job's last pod failure (large when unknown)."""
        times = [
            (cs.get("state") or {}).get("terminated", {}).get("finishedAt")
            for p in self._pods_of(job) if (p.get("status") or {}).get("phase") == "Failed"
            for cs in (p.get("status") or {}).get("containerStatuses") or []
        ]
        times = [t for t in times if t]
        return _seconds_since(max(times)) if times else float("inf")

    def _delete_pods(self, pods: list[dict], discard: str | None = None) -> None:
        """Delete ``pods``; with ``discard`` (the Job's uid) they count neither as
        failed nor as succeeded (a suspended Job's pods)."""
        for p in pods:
            meta = p["metadata"]
            if discard is not None:
                with self._lock:
                    self._ended.setdefault(discard, {})[meta["uid"]] = _DISCARDED
            try:
                self._rest.call("DELETE", path("pods", meta.get("namespace") or "default",
                                               meta["name"]))
            except ApiException as exc:
                if exc.status != 404:
                    raise

    def _expire(self, key: str, job: dict, conds: list[dict]) -> None:
        """Delete a finished Job once ``ttlSecondsAfterFinished`` has passed."""
        ttl = (job.get("spec") or {}).get("ttlSecondsAfterFinished")
        if ttl is None:
            return
        finished = (job.get("status") or {}).get("completionTime")
        if finished is None:
            cond = st.find_condition(conds, "Complete") or st.find_condition(conds, "Failed")
            finished = (cond or {}).get("lastTransitionTime")
        left = ttl - _seconds_since(finished)
        if left > 0:
            self._queue.add_after(key, left)
            return
        meta = job["metadata"]
        body = {"propagationPolicy": "Background", "preconditions": {"uid": meta["uid"]}}
        try:
            self._rest.call("DELETE", path("jobs", meta.get("namespace") or "default",
                                           meta["name"], group="batch"), body)
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise


def _key(job: dict) -> str:
    return f"{job['metadata'].get('namespace') or 'default'}/{job['metadata']['name']}"


def _restarts(pod: dict) -> int:
    status = pod.get("status") or {}
    statuses = (status.get("containerStatuses") or []) + (status.get("initContainerStatuses") or [])
    return sum(int(cs.get("restartCount") or 0) for cs in statuses)


def _done(completions: int | None, succeeded: int, active: list[dict]) -> bool:
    if completions is None:  # work queue: one success and nothing running
        return succeeded > 0 and not active
    return succeeded >= completions


def _wanted(completions: int | None, parallelism: int, succeeded: int) -> int:
    if completions is None:
        return parallelism if succeeded == 0 else 0
    return min(parallelism, completions - succeeded)
