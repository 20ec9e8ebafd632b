"""The kubelet running bare pods, against the embedded API server over HTTP."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from devstack.cluster import EmbeddedCluster
from devstack.kubelet.sandbox import BWRAP, REWRITE, detect_mode
from devstack.testing import container_processes, still_running, wait_until

NS = "default"


@pytest.fixture(scope="module", params=[BWRAP, REWRITE])
def cluster(request, tmp_path_factory) -> Iterator[EmbeddedCluster]:
    """Every test runs in both kubelet modes (bwrap only where it works)."""
    if request.param == BWRAP and detect_mode() != BWRAP:
        pytest.skip("bubblewrap cannot run on this machine")
    with EmbeddedCluster(tmp_path_factory.mktemp("cluster"), kubelet_mode=request.param) as c:
        yield c


@pytest.fixture(scope="module")
def core(cluster: EmbeddedCluster) -> client.CoreV1Api:
    return client.CoreV1Api(cluster.api_client())


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def create_pod(core: client.CoreV1Api, name: str, containers: list[dict], **spec) -> None:
    spec.setdefault("restartPolicy", "Never")
    body = {"metadata": {"name": name}, "spec": {"containers": containers, **spec}}
    core.create_namespaced_pod(NS, client.V1Pod.model_validate(body))


def read_pod(core: client.CoreV1Api, name: str) -> dict:
    return core.api_client.sanitize_for_serialization(core.read_namespaced_pod(name, NS))


def wait_phase(core: client.CoreV1Api, name: str, *phases: str, timeout: float = 15) -> dict:
    def reached():
        pod = read_pod(core, name)
        return pod if (pod.get("status") or {}).get("phase") in phases else None
    return wait_until(reached, timeout, what=f"pod {name} in {phases}")


def container(command: list[str], name: str = "main", **extra) -> dict:
    return {"name": name, "image": "busybox", "command": command, **extra}


def test_env_from_secret_configmap_fields_and_expansion(core):
    secret, cm, name = unique("sec"), unique("cm"), unique("env")
    core.create_namespaced_secret(NS, client.V1Secret.model_validate(
        {"metadata": {"name": secret}, "stringData": {"token": "s3cr3t"}}))
    core.create_namespaced_config_map(NS, client.V1ConfigMap.model_validate(
        {"metadata": {"name": cm}, "data": {"MODE": "fast", "LEVEL": "3"}}))
    env = [
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": secret, "key": "token"}}},
        {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k",
                                                       "optional": True}}},
        {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": cm, "key": "MODE"}}},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "COMBINED", "value": "$(MODE)-$(POD)-$$(MODE)"},
    ]
    script = ("import json, os; print(json.dumps({k: os.environ.get(k) for k in "
              "['TOKEN', 'OPT', 'MODE', 'POD', 'POD_NS', 'COMBINED', 'CM_LEVEL', 'ARG']}))")
    create_pod(core, name, [container(
        ["python", "-c", script], env=env + [{"name": "ARG", "value": "$(1)"}],
        envFrom=[{"configMapRef": {"name": cm}, "prefix": "CM_"}],
    )])
    wait_phase(core, name, "Succeeded")
    seen = json.loads(core.read_namespaced_pod_log(name, NS))
    assert seen == {"TOKEN": "s3cr3t", "OPT": None, "MODE": "fast", "POD": name, "POD_NS": NS,
                    "COMBINED": f"fast-{name}-$(MODE)", "CM_LEVEL": "3", "ARG": "$(1)"}


def test_args_are_expanded_with_the_environment(core):
    name = unique("args")
    create_pod(core, name, [container(["sh", "-c"], args=["echo $(GREETING) '$$(GREETING)'"],
                                      env=[{"name": "GREETING", "value": "hi"}])])
    wait_phase(core, name, "Succeeded")
    assert core.read_namespaced_pod_log(name, NS).strip() == "hi $(GREETING)"


def test_configmap_and_secret_volumes_with_items_subpath_and_mode(cluster, core):
    cm, secret, name = unique("wf"), unique("key"), unique("vols")
    workflow = {"stages": [{"index": 0}]}
    core.create_namespaced_config_map(NS, client.V1ConfigMap.model_validate({
        "metadata": {"name": cm},
        "data": {"workflow.json": json.dumps(workflow), "workflow.yaml": "stages: []\n"}}))
    core.create_namespaced_secret(NS, client.V1Secret.model_validate(
        {"metadata": {"name": secret}, "stringData": {"key": "k3y"}}))
    script = (
        "import json, os, stat\n"
        "wf = json.load(open('/workflow.json'))\n"
        "mode = oct(stat.S_IMODE(os.stat('/secrets/renamed').st_mode))\n"
        "key, yml = open('/secrets/renamed').read(), open('/cfg/workflow.yaml').read()\n"
        "print(json.dumps({'wf': wf, 'key': key, 'mode': mode,\n"
        "  'listing': sorted(os.listdir('/secrets')), 'yaml': yml}))\n"
    )
    create_pod(core, name, [container(["python", "-c", script], volumeMounts=[
        {"name": "wf", "mountPath": "/workflow.json", "subPath": "workflow.json"},
        {"name": "wf", "mountPath": "/cfg"},
        {"name": "sec", "mountPath": "/secrets"},
    ])], volumes=[
        {"name": "wf", "configMap": {"name": cm}},
        {"name": "sec", "secret": {"secretName": secret, "defaultMode": 0o400,
                                   "items": [{"key": "key", "path": "renamed"}]}},
    ])
    pod = wait_phase(core, name, "Succeeded", "Failed")
    logs = core.read_namespaced_pod_log(name, NS)
    assert pod["status"]["phase"] == "Succeeded", logs
    seen = json.loads(logs)
    assert seen == {"wf": workflow, "key": "k3y", "mode": "0o400", "listing": ["renamed"],
                    "yaml": "stages: []\n"}


def test_missing_secret_waits_then_runs_once_created(core):
    secret, name = unique("late"), unique("waiter")
    create_pod(core, name, [container(["sh", "-c", "echo $TOKEN"], env=[
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": secret, "key": "t"}}}])])

    def waiting():
        pod = read_pod(core, name)
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            if (cs["state"].get("waiting") or {}).get("reason") == "CreateContainerConfigError":
                return cs["state"]["waiting"]
        return None
    state = wait_until(waiting, what="CreateContainerConfigError")
    assert state["message"] == f'secret "{secret}" not found'
    assert read_pod(core, name)["status"]["phase"] == "Pending"
    core.create_namespaced_secret(NS, client.V1Secret.model_validate(
        {"metadata": {"name": secret}, "stringData": {"t": "now"}}))
    wait_phase(core, name, "Succeeded")
    assert core.read_namespaced_pod_log(name, NS).strip() == "now"


def test_unknown_command_is_a_start_error(core):
    name = unique("nocmd")
    create_pod(core, name, [container(["no-such-tool-c2d"])])
    pod = wait_phase(core, name, "Failed")
    term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (128, "StartError")
    assert "no-such-tool-c2d" in term["message"]


def test_fallback_to_logs_on_error(core):
    name = unique("fallback")
    create_pod(core, name, [container(["sh", "-c", "echo first; echo last words; exit 2"],
                                      terminationMessagePolicy="FallbackToLogsOnError")])
    pod = wait_phase(core, name, "Failed")
    term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (2, "Error")
    assert term["message"].rstrip().endswith("last words")


def test_init_containers_run_first_in_order(core):
    name = unique("init")
    create_pod(
        core, name,
        [container(["sh", "-c", "cat /w/order"], volumeMounts=[{"name": "w", "mountPath": "/w"}])],
        initContainers=[
            container(["sh", "-c", "echo one >> /w/order"], name="first",
                      volumeMounts=[{"name": "w", "mountPath": "/w"}]),
            container(["sh", "-c", "echo two >> /w/order"], name="second",
                      volumeMounts=[{"name": "w", "mountPath": "/w"}]),
        ],
        volumes=[{"name": "w", "emptyDir": {}}],
    )
    pod = wait_phase(core, name, "Succeeded")
    assert core.read_namespaced_pod_log(name, NS).split() == ["one", "two"]
    inits = pod["status"]["initContainerStatuses"]
    assert [s["state"]["terminated"]["reason"] for s in inits] == ["Completed", "Completed"]
    conds = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert conds["Initialized"] == "True" and conds["PodScheduled"] == "True"


def test_deleting_a_running_pod_kills_its_process_group(cluster, core):
    name = unique("victim")
    script = "trap 'echo terminating; exit 0' TERM; sleep 300 & while true; do sleep 0.1; done"
    create_pod(core, name, [container(["sh", "-c", script])], terminationGracePeriodSeconds=5)
    uid = wait_phase(core, name, "Running")["metadata"]["uid"]

    def this_pods_processes():
        procs = container_processes(cluster, uid)
        mine = [p for p in procs if p.name() == "sleep" and "300" in p.cmdline()]
        return procs if mine else []
    procs = wait_until(this_pods_processes, what="the container's sleep 300")
    core.delete_namespaced_pod(name, NS)

    def gone() -> bool:
        try:
            core.read_namespaced_pod(name, NS)
            return False
        except ApiException as exc:
            return exc.status == 404
    wait_until(gone, timeout=15, what="the pod object to be removed")
    assert still_running(procs) == []
    log = cluster.log_dir / NS / name / "main.log"
    assert "terminating" in log.read_text()


def test_pod_active_deadline(core):
    name = unique("pdl")
    create_pod(core, name, [container(["sleep", "60"])], activeDeadlineSeconds=1)
    pod = wait_phase(core, name, "Failed", timeout=15)
    assert pod["status"]["reason"] == "DeadlineExceeded"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] == (
        "DeadlineExceeded")


def test_termination_message_is_cut_at_4096_bytes(core):
    name = unique("longmsg")
    create_pod(core, name, [container(
        ["python", "-c", "open('/dev/termination-log', 'w').write('x' * 10000)"])])
    pod = wait_phase(core, name, "Succeeded")
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["message"] == "x" * 4096


def test_unsupported_volume_type_is_a_clear_config_error(core):
    name = unique("nfs")
    create_pod(core, name, [container(["true"])],
               volumes=[{"name": "share", "nfs": {"server": "10.0.0.1", "path": "/x"}}])

    def waiting():
        statuses = (read_pod(core, name).get("status") or {}).get("containerStatuses") or []
        return statuses and statuses[0]["state"].get("waiting", {}).get("message")
    message = wait_until(waiting, what="a waiting reason")
    assert "volume share" in message and "nfs" in message and "not supported" in message
    core.delete_namespaced_pod(name, NS)
