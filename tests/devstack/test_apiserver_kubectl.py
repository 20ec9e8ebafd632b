"""The machine's kubectl against the embedded server: apply, get (tables), describe,
logs, delete."""

from __future__ import annotations

import subprocess
from pathlib import Path

import yaml
from kubernetes import client

from devstack.apiserver import APIServer
from devstack.testing import wait_until

from .conftest import KUBECTL, job_manifest, workflow_manifest


def _write(tmp_path: Path, name: str, manifest: dict) -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(manifest))
    return str(path)


def _header(table: str) -> list[str]:
    return table.splitlines()[0].split()


def test_apply_get_delete_workflow_and_job(kubectl, tmp_path: Path, core) -> None:
    wf = _write(tmp_path, "wf.yaml", workflow_manifest("wf1"))
    job = _write(tmp_path, "job.yaml", job_manifest("job1"))
    assert "workflow.oceanprotocol.com/wf1 created" in kubectl("apply", "-f", wf).stdout
    assert "job.batch/job1 created" in kubectl("apply", "-f", job).stdout
    assert "unchanged" in kubectl("apply", "-f", wf).stdout

    table = kubectl("get", "workflows").stdout
    assert _header(table) == ["NAME", "CODE", "STATUS", "PHASE", "AGE"]
    assert table.splitlines()[1].split()[0] == "wf1"
    table = kubectl("get", "jobs").stdout
    assert _header(table) == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    assert table.splitlines()[1].split()[:3] == ["job1", "Running", "0/1"]
    assert "SELECTOR" in kubectl("get", "job", "job1", "-o", "wide").stdout
    assert "wf1" in kubectl("get", "wf").stdout                 # short name

    changed = workflow_manifest("wf1", stopRequested=True)
    wf = _write(tmp_path, "wf.yaml", changed)
    assert "configured" in kubectl("apply", "-f", wf).stdout
    assert kubectl("get", "wf", "wf1", "-o", "jsonpath={.spec.stopRequested}").stdout == "true"

    assert "Backoff Limit:    6" in kubectl("describe", "job", "job1").stdout
    kubectl("delete", "-f", wf)
    kubectl("delete", "job", "job1")
    assert "No resources found" in kubectl("get", "workflows,jobs").stderr


def test_apply_rejects_invalid_objects_naming_the_field(kubectl, tmp_path: Path) -> None:
    job = _write(tmp_path, "job.yaml", job_manifest("bad", restart_policy="Always"))
    done = kubectl("apply", "-f", job, check=False)
    assert done.returncode != 0
    assert "spec.template.spec.restartPolicy" in done.stderr and "Unsupported value" in \
        done.stderr
    typo = job_manifest("typo")
    typo["spec"]["template"]["spec"]["containers"][0]["comand"] = ["x"]
    done = kubectl("apply", "-f", _write(tmp_path, "typo.yaml", typo), check=False)
    assert done.returncode != 0 and 'unknown field "spec.template.spec.containers[0].comand"' \
        in done.stderr
    wf = workflow_manifest("badwf")
    wf["spec"]["stopRequested"] = "please"
    done = kubectl("apply", "-f", _write(tmp_path, "wf.yaml", wf), check=False)
    assert done.returncode != 0 and "spec.stopRequested" in done.stderr


def test_logs(kubectl, apiserver: APIServer, core) -> None:
    core.create_namespaced_pod("default", {"metadata": {"name": "talker"}, "spec": {
        "containers": [{"name": "main", "image": "busybox"}]}})
    log_file = apiserver.log_dir / "default" / "talker" / "main.log"
    log_file.parent.mkdir(parents=True)
    log_file.write_text("one\ntwo\nthree\n")
    assert kubectl("logs", "talker").stdout == "one\ntwo\nthree\n"
    assert kubectl("logs", "talker", "--tail=2").stdout == "two\nthree\n"
    assert kubectl("logs", "pod/talker", "-c", "main", "--tail=1").stdout == "three\n"
    missing = kubectl("logs", "talker", "-c", "nope", check=False)
    assert missing.returncode != 0 and "container nope is not valid" in missing.stderr


def test_logs_follow_ends_when_the_pod_terminates(kubectl, apiserver: APIServer, core,
                                                  tmp_path: Path) -> None:
    core.create_namespaced_pod("default", {"metadata": {"name": "follow"}, "spec": {
        "containers": [{"name": "main", "image": "busybox"}]}})
    log_file = apiserver.log_dir / "default" / "follow" / "main.log"
    log_file.parent.mkdir(parents=True)
    log_file.write_text("start\n")
    env_cfg = tmp_path / "kubeconfig"              # written by the kubectl fixture
    proc = subprocess.Popen([KUBECTL, "--kubeconfig", str(env_cfg), "logs", "-f", "follow"],
                            stdout=subprocess.PIPE, text=True, env={"HOME": str(tmp_path)})
    try:
        assert proc.stdout.readline() == "start\n"
        with open(log_file, "a") as f:
            f.write("more\n")
        assert proc.stdout.readline() == "more\n"
        core.patch_namespaced_pod_status("follow", "default", {"status": {
            "phase": "Succeeded"}})
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_get_all_and_api_resources(kubectl, core, batch) -> None:
    core.create_namespaced_pod("default", {"metadata": {"name": "p"}, "spec": {
        "containers": [{"name": "main", "image": "busybox"}]}})
    out = kubectl("get", "all").stdout
    assert "pod/p" in out
    resources = kubectl("api-resources").stdout
    for name in ("configmaps", "jobs", "leases", "networkpolicies", "workflows",
                 "customresourcedefinitions", "persistentvolumeclaims", "events"):
        assert name in resources
    assert "c2d-embedded" in kubectl("config", "current-context").stdout
    kubectl("delete", "pod", "p", "--wait=true")
    wait_until(lambda: not core.list_namespaced_pod("default").items, what="pod gone")


def test_the_python_client_reads_the_kubeconfig(apiserver: APIServer, tmp_path: Path) -> None:
    from kubernetes import config

    from devstack.kubeconfig import write_kubeconfig
    path = write_kubeconfig(apiserver.url, tmp_path / "kc", namespace="team")
    api = config.new_client_from_config(str(path))
    assert client.VersionApi(api).get_code().git_version.startswith("v1.")
    assert yaml.safe_load(path.read_text())["contexts"][0]["context"]["namespace"] == "team"


def test_server_side_dry_run_stores_nothing(kubectl, tmp_path: Path, core) -> None:
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "dry"},
          "data": {"a": "1"}}
    path = _write(tmp_path, "cm.yaml", cm)
    assert "(server dry run)" in kubectl("apply", "--dry-run=server", "-f", path).stdout
    assert "dry" not in [c.metadata.name for c in core.list_namespaced_config_map(
        "default").items]
    kubectl("apply", "-f", path)
    cm["data"]["a"] = "2"
    kubectl("apply", "--dry-run=server", "-f", _write(tmp_path, "cm.yaml", cm))
    kubectl("delete", "configmap", "dry", "--dry-run=server")
    assert core.read_namespaced_config_map("dry", "default").data == {"a": "1"}


def test_get_watch_prints_table_rows(kubectl, tmp_path: Path, core) -> None:
    core.create_namespaced_config_map("default", {"metadata": {"name": "first"},
                                                  "data": {"a": "1"}})
    proc = subprocess.Popen([KUBECTL, "--kubeconfig", str(tmp_path / "kubeconfig"), "get",
                             "configmaps", "-w", "--output-watch-events"],
                            stdout=subprocess.PIPE, text=True, env={"HOME": str(tmp_path)})
    try:
        assert proc.stdout.readline().split() == ["EVENT", "NAME", "DATA", "AGE"]
        assert proc.stdout.readline().split()[:3] == ["ADDED", "first", "1"]
        core.create_namespaced_config_map("default", {"metadata": {"name": "second"},
                                                      "data": {"a": "1", "b": "2"}})
        assert proc.stdout.readline().split()[:3] == ["ADDED", "second", "2"]
        core.delete_namespaced_config_map("first", "default")
        assert proc.stdout.readline().split()[:2] == ["DELETED", "first"]
    finally:
        proc.kill()
        proc.wait()


def test_kubectl_create_with_protobuf_bodies(kubectl, core) -> None:
    kubectl("create", "namespace", "team-b")
    kubectl("create", "configmap", "settings", "-n", "team-b", "--from-literal=a=b")
    kubectl("create", "secret", "generic", "creds", "-n", "team-b",
            "--from-literal=password=hunter2")
    assert core.read_namespace("team-b").status.phase == "Active"
    assert core.read_namespaced_config_map("settings", "team-b").data == {"a": "b"}
    secret = core.read_namespaced_secret("creds", "team-b")
    assert secret.type == "Opaque" and secret.data == {"password": "aHVudGVyMg=="}
    done = kubectl("create", "job", "j", "--image=busybox", "--", "true", check=False)
    assert done.returncode != 0 and "send JSON" in done.stderr
