"""EmbeddedCluster as a whole: start, kubeconfig, mode, and nothing left after stop."""

from __future__ import annotations

import yaml
from kubernetes import client

from devstack.cluster import EmbeddedCluster
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
