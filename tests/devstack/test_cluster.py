"""EmbeddedCluster as a whole: start, kubeconfig, mode, and nothing left after stop."""

from __future__ import annotations

import logging
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
import yaml
from kubernetes import client

from devstack.cluster import EmbeddedCluster
from devstack.kubelet.informer import Rest
from devstack.kubelet.sandbox import BWRAP, detect_mode
from devstack.testing import (  # noqa: F401
    container_processes,
    embedded_cluster,
    still_running,
    wait_until,
)


def test_kubeconfig_and_mode(embedded_cluster: EmbeddedCluster) -> None:  # noqa: F811
    cfg = yaml.safe_load(embedded_cluster.kubeconfig.read_text())
    assert cfg["clusters"][0]["cluster"]["server"] == embedded_cluster.url
    assert embedded_cluster.kubelet_mode in ("bwrap", "rewrite")
    version = client.VersionApi(embedded_cluster.api_client()).get_code()
    assert version.major


def test_no_container_process_survives_stop(tmp_path) -> None:
    cluster = EmbeddedCluster(tmp_path / "c").start()
    try:
        core = client.CoreV1Api(cluster.api_client())
        for i in range(2):
            core.create_namespaced_pod("default", client.V1Pod.model_validate({
                "metadata": {"name": f"sleeper-{i}"},
                "spec": {"restartPolicy": "Never", "terminationGracePeriodSeconds": 30,
                         "containers": [{"name": "c", "image": "x",
                                         "command": ["sh", "-c", "sleep 300 & sleep 300"]}]},
            }))
        procs = wait_until(
            lambda: [p for p in container_processes(cluster) if p.name() == "sleep"][3:] and
            container_processes(cluster), what="four sleeps in two running pods")
    finally:
        cluster.stop()
    assert still_running(procs) == []


def test_start_says_which_kubelet_mode_runs(tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="devstack.kubelet")
    with EmbeddedCluster(tmp_path / "c") as cluster:
        assert f"containers run in {cluster.kubelet_mode} mode" in caplog.text


def test_rewrite_mode_maps_mount_paths_to_volume_folders(tmp_path) -> None:
    assert not Path("/data").exists(), "this test needs a host without /data"
    with EmbeddedCluster(tmp_path / "c", kubelet_mode="rewrite") as cluster:
        assert cluster.kubelet_mode == "rewrite"
        core = client.CoreV1Api(cluster.api_client())
        core.create_namespaced_persistent_volume_claim("default", client.V1PersistentVolumeClaim(
            metadata=client.V1ObjectMeta(name="claim"),
            spec=client.V1PersistentVolumeClaimSpec(
                access_modes=["ReadWriteOnce"],
                resources=client.V1VolumeResourceRequirements(requests={"storage": "1Gi"})),
        ))
        core.create_namespaced_pod("default", client.V1Pod.model_validate({
            "metadata": {"name": "writer"},
            "spec": {"restartPolicy": "Never",
                     "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "claim"}}],
                     "containers": [{
                         "name": "c", "image": "x", "workingDir": "/data",
                         "command": ["sh", "-c",
                                     "mkdir -p /data/outputs && echo hi > $(OUT) && pwd"],
                         "env": [{"name": "OUT", "value": "/data/outputs/x"}],
                         "volumeMounts": [{"name": "d", "mountPath": "/data"}]}]},
        }))
        wait_until(lambda: core.read_namespaced_pod("writer", "default").status.phase
                   in ("Succeeded", "Failed"), what="the pod to finish")
        assert core.read_namespaced_pod("writer", "default").status.phase == "Succeeded"
        folder = cluster.volumes_dir / "default" / "claim"
        assert (folder / "outputs" / "x").read_text() == "hi\n"
        assert core.read_namespaced_pod_log("writer", "default").strip() == str(folder)
    assert not Path("/data").exists()


def test_persisted_cluster_keeps_objects_and_finished_work(tmp_path) -> None:
    job = client.V1Job.model_validate({
        "metadata": {"name": "once"},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "c", "image": "x", "command": ["true"]}]}}},
    })
    with EmbeddedCluster(tmp_path / "c", persist=True) as cluster:
        batch = client.BatchV1Api(cluster.api_client())
        batch.create_namespaced_job("default", job)
        wait_until(lambda: batch.read_namespaced_job("once", "default").status.succeeded,
                   what="the job to succeed")
    with EmbeddedCluster(tmp_path / "c", persist=True) as cluster:
        batch = client.BatchV1Api(cluster.api_client())
        core = client.CoreV1Api(cluster.api_client())
        status = batch.read_namespaced_job("once", "default").status
        assert [c.type for c in status.conditions] == ["SuccessCriteriaMet", "Complete"]
        assert len(core.list_namespaced_pod("default").items) == 1  # nothing re-run


_CRASHING_STACK = """
import sys, time
from pathlib import Path
from kubernetes import client
from devstack.cluster import EmbeddedCluster
from devstack.kubelet.sandbox import BWRAP, detect_mode
from devstack.testing import container_processes, wait_until
cluster = EmbeddedCluster(Path(sys.argv[1]), kubelet_mode="bwrap").start()
client.CoreV1Api(cluster.api_client()).create_namespaced_pod("default", client.V1Pod(
    metadata=client.V1ObjectMeta(name="p"),
    spec=client.V1PodSpec(restart_policy="Never", containers=[client.V1Container(
        name="c", image="x", command=["sh", "-c", "sleep 300 & sleep 300"])])))
procs = wait_until(lambda: [p for p in container_processes(cluster) if p.name() == "sleep"][1:]
                   and container_processes(cluster), timeout=20)
print(" ".join(str(p.pid) for p in procs), flush=True)
time.sleep(300)
"""


def test_no_container_process_survives_a_killed_stack(tmp_path) -> None:
    if detect_mode() != BWRAP:
        pytest.skip("needs bubblewrap: in rewrite mode a container's own children can outlive "
                    "a killed stack")
    stack = subprocess.Popen([sys.executable, "-c", _CRASHING_STACK, str(tmp_path / "c")],
                             stdout=subprocess.PIPE, text=True)
    try:
        line = stack.stdout.readline()
        procs = [psutil.Process(int(pid)) for pid in line.split()]
        assert len(procs) >= 3, line
    finally:
        stack.kill()
        stack.wait()
    wait_until(lambda: still_running(procs) == [], timeout=10, what="the containers to die")


def test_controllers_client_keeps_its_connections_under_a_burst(
        embedded_cluster: EmbeddedCluster, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    """As many calls at once as a pod burst makes: every connection goes back to the pool."""
    rest = Rest(embedded_cluster.api_client())
    caplog.set_level(logging.WARNING, logger="urllib3.connectionpool")
    with ThreadPoolExecutor(40) as pool:
        answers = list(pool.map(lambda _: rest.call("GET", "/api/v1/namespaces/default"),
                                range(400)))
    assert all(a["metadata"]["name"] == "default" for a in answers)
    assert "Connection pool is full" not in caplog.text
