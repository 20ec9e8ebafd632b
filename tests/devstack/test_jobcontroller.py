"""The Job controller with the kubelet, against the embedded API server over HTTP."""

from __future__ import annotations

import re
import sys
import time
import uuid
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from devstack.cluster import EmbeddedCluster
from devstack.testing import (  # noqa: F401
    container_processes,
    embedded_cluster_module,
    still_running,
    wait_until,
)

NS = "default"


@pytest.fixture(scope="module")
def cluster(embedded_cluster_module: EmbeddedCluster) -> EmbeddedCluster:  # noqa: F811
    return embedded_cluster_module


@pytest.fixture(scope="module")
def core(cluster: EmbeddedCluster) -> client.CoreV1Api:
    return client.CoreV1Api(cluster.api_client())


@pytest.fixture(scope="module")
def batch(cluster: EmbeddedCluster) -> client.BatchV1Api:
    return client.BatchV1Api(cluster.api_client())


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def job_manifest(name: str, command: list[str], **spec) -> dict:
    pod_spec = {
        "restartPolicy": spec.pop("restartPolicy", "Never"),
        "containers": [{"name": "main", "image": "python:3.11-slim", "command": command}],
    }
    pod_spec.update(spec.pop("pod", {}))
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"template": {"metadata": {"labels": {"app": "t"}}, "spec": pod_spec}, **spec},
    }


def create_job(batch: client.BatchV1Api, manifest: dict) -> dict:
    body = client.V1Job.model_validate(manifest)
    return batch.api_client.sanitize_for_serialization(
        batch.create_namespaced_job(NS, body)
    )


def read_job(batch: client.BatchV1Api, name: str) -> dict:
    return batch.api_client.sanitize_for_serialization(batch.read_namespaced_job(name, NS))


def condition(job: dict, ctype: str) -> dict | None:
    return next((c for c in (job.get("status") or {}).get("conditions") or []
                 if c["type"] == ctype and c["status"] == "True"), None)


def wait_finished(batch: client.BatchV1Api, name: str, timeout: float = 20.0) -> dict:
    def finished():
        job = read_job(batch, name)
        return job if condition(job, "Complete") or condition(job, "Failed") else None
    return wait_until(finished, timeout, what=f"job {name} to finish")


def pods_of(core: client.CoreV1Api, job: str) -> list[dict]:
    pods = core.list_namespaced_pod(NS, label_selector=f"job-name={job}")
    return [core.api_client.sanitize_for_serialization(p) for p in pods.items]


def test_job_with_pvc_completes_with_logs_and_termination_message(cluster, core, batch):
    claim, name = unique("data"), unique("writer")
    pvc = client.V1PersistentVolumeClaim.model_validate({
        "metadata": {"name": claim},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    })
    core.create_namespaced_persistent_volume_claim(NS, pvc)
    script = (
        "import os, sys\n"
        "os.makedirs('/data/outputs', exist_ok=True)\n"
        "open('/data/outputs/x', 'w').write('result')\n"
        "open('/dev/termination-log', 'w').write('all good')\n"
        "print('hello from', sys.executable, flush=True)\n"
        "print('to stderr', file=sys.stderr)\n"
    )
    manifest = job_manifest(name, ["python", "-c", script], pod={
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
    })
    manifest["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "data", "mountPath": "/data"}]
    created = create_job(batch, manifest)
    job = wait_finished(batch, name)

    assert condition(job, "Complete"), job["status"]
    types = [c["type"] for c in job["status"]["conditions"]]
    assert types.index("SuccessCriteriaMet") < types.index("Complete")
    assert job["status"]["succeeded"] == 1 and job["status"].get("active", 0) == 0
    assert job["status"]["startTime"] <= job["status"]["completionTime"]
    assert (cluster.volumes_dir / NS / claim / "outputs" / "x").read_text() == "result"
    if cluster.kubelet_mode == "bwrap":
        assert not Path("/data/outputs/x").exists()

    [pod] = pods_of(core, name)
    meta = pod["metadata"]
    assert re.fullmatch(rf"{name}-[bcdfghjklmnpqrstvwxz2456789]{{5}}", meta["name"])
    uid = created["metadata"]["uid"]
    assert meta["labels"] == {"app": "t", "job-name": name, "controller-uid": uid,
                              "batch.kubernetes.io/job-name": name,
                              "batch.kubernetes.io/controller-uid": uid}
    [owner] = meta["ownerReferences"]
    assert (owner["kind"], owner["uid"], owner["controller"], owner["blockOwnerDeletion"]) == (
        "Job", uid, True, True)
    assert pod["spec"]["nodeName"] == "c2d-embedded"
    assert pod["status"]["phase"] == "Succeeded"
    assert pod["status"]["podIP"] == "127.0.0.1"
    term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (term["exitCode"], term["reason"], term["message"]) == (0, "Completed", "all good")
    assert term["startedAt"] <= term["finishedAt"]

    logs = core.read_namespaced_pod_log(meta["name"], NS)
    assert f"hello from {sys.executable}" in logs and "to stderr" in logs
    pvc = core.read_namespaced_persistent_volume_claim(claim, NS)
    assert pvc.status.phase == "Bound" and pvc.status.capacity == {"storage": "1Gi"}


def test_active_deadline_kills_the_pod_and_fails_the_job(cluster, core, batch):
    name = unique("slow")
    create_job(batch, job_manifest(name, ["sleep", "60"], activeDeadlineSeconds=2))
    wait_until(lambda: [p for p in pods_of(core, name)
                        if (p.get("status") or {}).get("phase") == "Running"],
               what="the pod to run")
    procs = wait_until(lambda: [p for p in container_processes(cluster) if p.name() == "sleep"
                                and "60" in p.cmdline()], what="the sleep process")
    started = time.monotonic()
    job = wait_finished(batch, name, timeout=15)
    assert time.monotonic() - started < 8
    failed = condition(job, "Failed")
    assert failed and failed["reason"] == "DeadlineExceeded", job["status"]
    assert condition(job, "FailureTarget")["reason"] == "DeadlineExceeded"
    assert "completionTime" not in job["status"]
    assert job["status"].get("active", 0) == 0
    assert still_running(procs) == []


def test_failing_pod_is_retried_backoff_limit_times(cluster, core, batch):
    name = unique("flaky")
    create_job(batch, job_manifest(name, ["sh", "-c", "echo boom >&2; exit 3"], backoffLimit=2))
    job = wait_finished(batch, name)
    failed = condition(job, "Failed")
    assert failed and failed["reason"] == "BackoffLimitExceeded", job["status"]
    assert job["status"]["failed"] == 3
    pods = pods_of(core, name)
    assert len(pods) == 3 and len({p["metadata"]["name"] for p in pods}) == 3
    for pod in pods:
        term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
        assert (pod["status"]["phase"], term["exitCode"], term["reason"]) == ("Failed", 3, "Error")


def test_on_failure_restarts_the_container_in_the_same_pod(cluster, core, batch):
    name = unique("retry")
    script = "test -e /scratch/ran && exit 0; touch /scratch/ran; exit 1"
    manifest = job_manifest(name, ["sh", "-c", script], restartPolicy="OnFailure",
                            backoffLimit=3, pod={"volumes": [{"name": "s", "emptyDir": {}}]})
    manifest["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "s", "mountPath": "/scratch"}]
    create_job(batch, manifest)
    job = wait_finished(batch, name)
    assert condition(job, "Complete"), job["status"]
    [pod] = pods_of(core, name)
    cs = pod["status"]["containerStatuses"][0]
    assert cs["restartCount"] == 1
    assert cs["lastState"]["terminated"]["exitCode"] == 1
    assert cs["state"]["terminated"]["exitCode"] == 0


def test_on_failure_over_backoff_limit_fails(cluster, core, batch):
    name = unique("crash")
    create_job(batch, job_manifest(name, ["sh", "-c", "exit 1"], restartPolicy="OnFailure",
                                   backoffLimit=1))
    job = wait_finished(batch, name)
    assert condition(job, "Failed")["reason"] == "BackoffLimitExceeded"
    wait_until(lambda: not [p for p in pods_of(core, name)
                            if p["status"].get("phase") not in ("Succeeded", "Failed")],
               what="the crashing pod to stop")


def test_suspended_job_starts_when_resumed(cluster, core, batch):
    name = unique("later")
    create_job(batch, job_manifest(name, ["true"], suspend=True))
    job = wait_until(lambda: (j := read_job(batch, name)) and condition(j, "Suspended") and j,
                     what="the Suspended condition")
    assert job["status"]["conditions"][0]["reason"] == "JobSuspended"
    assert "startTime" not in job["status"]
    assert pods_of(core, name) == []
    batch.patch_namespaced_job(name, NS, {"spec": {"suspend": False}},
                               _content_type="application/merge-patch+json")
    job = wait_finished(batch, name)
    assert condition(job, "Complete") and job["status"]["startTime"]
    suspended = next(c for c in job["status"]["conditions"] if c["type"] == "Suspended")
    assert (suspended["status"], suspended["reason"]) == ("False", "JobResumed")


def test_suspending_a_running_job_deletes_its_pod(cluster, core, batch):
    name = unique("pause")
    create_job(batch, job_manifest(name, ["sleep", "60"]))
    wait_until(lambda: read_job(batch, name).get("status", {}).get("active") == 1,
               what="an active pod")
    batch.patch_namespaced_job(name, NS, {"spec": {"suspend": True}},
                               _content_type="application/merge-patch+json")
    wait_until(lambda: pods_of(core, name) == [], timeout=15, what="the pod to go")
    job = read_job(batch, name)
    assert condition(job, "Suspended") and job["status"].get("active", 0) == 0
    assert job["status"].get("failed", 0) == 0  # a suspended Job's pods are not failures


def test_ttl_after_finished_deletes_the_job(cluster, core, batch):
    name = unique("short")
    create_job(batch, job_manifest(name, ["true"], ttlSecondsAfterFinished=1))

    def gone() -> bool:
        try:
            batch.read_namespaced_job(name, NS)
            return False
        except ApiException as exc:
            return exc.status == 404
    wait_until(gone, timeout=15, what="the job to be deleted")
    wait_until(lambda: pods_of(core, name) == [], timeout=15, what="its pods to be collected")


def test_completions_with_parallelism(cluster, core, batch):
    name = unique("many")
    create_job(batch, job_manifest(name, ["sh", "-c", "sleep 0.3"], completions=3, parallelism=2))
    most_active = 0

    def finished():
        nonlocal most_active
        job = read_job(batch, name)
        most_active = max(most_active, job["status"].get("active", 0))
        return job if condition(job, "Complete") else None
    job = wait_until(finished, timeout=20, what="three completions")
    assert job["status"]["succeeded"] == 3
    assert most_active == 2
    assert len(pods_of(core, name)) == 3


def test_deleting_a_running_job_in_background_stops_its_pod(cluster, core, batch):
    name = unique("cancel")
    create_job(batch, job_manifest(name, ["sleep", "300"]))
    [pod] = wait_until(lambda: [p for p in pods_of(core, name)
                                if (p.get("status") or {}).get("phase") == "Running"],
                       what="the pod to run")
    procs = wait_until(lambda: container_processes(cluster, pod["metadata"]["uid"]),
                       what="the container process")
    batch.delete_namespaced_job(name, NS, propagation_policy="Background")
    wait_until(lambda: pods_of(core, name) == [], timeout=15, what="the pod to be collected")
    assert still_running(procs) == []
