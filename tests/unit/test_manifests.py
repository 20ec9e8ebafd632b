"""shared.manifests: every object the engine creates, checked against the official schema,
the design's labels/ownership/security/limits, and hostile workflow values."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from decimal import Decimal
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from kubernetes.utils import parse_quantity

from shared import manifests
from shared import workflow as wf

from .helpers import HOSTILE, load_settings, make_workflow

K8S_VERSION = "1.32"
FULL_ENV = {"FILTERING_CONTAINER": "example/filter:1.0", "PULL_SECRET": "regcred",
            "PULL_POLICY": "IfNotPresent", "NODE_SELECTOR": "gpu-nodes", "nGPU": "2",
            "SERVICE_ACCOUNT": "c2d-pods", "ALGORITHM_ALLOW_NETWORK": "true",
            "OPERATOR_PRIVATE_KEY": "0x" + "11" * 32, "AWS_SECRET_ACCESS_KEY": "aws-secret-xyz",
            "AWS_ACCESS_KEY_ID": "AKIA-id-xyz", "IPFS_API_KEY": "ipfs-key-xyz"}
SECRET_VALUES = ["11" * 32, "aws-secret-xyz", "AKIA-id-xyz", "ipfs-key-xyz"]


def everything(workflow: dict, settings) -> list[dict]:
    return [obj for stage in wf.STAGES for obj in manifests.for_stage(workflow, settings, stage)]


def jobs(objects: list[dict]) -> dict[str, dict]:
    return {o["metadata"]["labels"][manifests.STAGE_LABEL]: o for o in objects
            if o["kind"] == "Job"}


def pod_spec(job: dict) -> dict:
    return job["spec"]["template"]["spec"]


def container(job: dict) -> dict:
    (only,) = pod_spec(job)["containers"]
    return only


def env_of(job: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container(job)["env"]}


@pytest.fixture(scope="module")
def full() -> list[dict]:
    return everything(make_workflow(), load_settings(FULL_ENV))


@pytest.fixture(scope="module")
def plain() -> list[dict]:
    return everything(make_workflow(), load_settings())


def test_validator_supports_the_version_and_refuses_unknown_fields():
    assert any(v.startswith(K8S_VERSION + ".") for v in kubernetes_validate.utils.all_versions())
    bad = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "dta": {}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def test_every_kind_is_rendered(full):
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in full)
    assert kinds == sorted([
        ("ConfigMap", "wf-1"), ("Secret", "wf-1"), ("PersistentVolumeClaim", "wf-1-data"),
        ("PersistentVolumeClaim", "wf-1-adminlogs"), ("Job", "wf-1-configure"),
        ("NetworkPolicy", "wf-1-algorithm"), ("Job", "wf-1-algorithm"), ("Job", "wf-1-filter"),
        ("Job", "wf-1-publish")])


@pytest.mark.parametrize("env", [{}, FULL_ENV, {"nCPU": "0.25", "ramGB": "1.5", "diskGB": "0.5"}],
                         ids=["defaults", "everything-set", "fractions"])
def test_every_object_validates_strictly(env):
    for obj in everything(make_workflow(), load_settings(env)):
        assert kubernetes_validate.validate(obj, K8S_VERSION, strict=True) == K8S_VERSION


def test_labels_namespace_and_owner(full):
    workflow = make_workflow()
    for obj in full:
        metadata = obj["metadata"]
        labels = metadata["labels"]
        assert labels[manifests.MANAGED_BY] == "c2d"
        assert labels[manifests.WORKFLOW_LABEL] == "wf-1"
        assert labels[manifests.STAGE_LABEL] in wf.STAGES
        assert metadata["namespace"] == "c2d"
        assert metadata["ownerReferences"] == [{
            "apiVersion": "oceanprotocol.com/v1alpha1", "kind": "Workflow", "name": "wf-1",
            "uid": workflow["metadata"]["uid"], "controller": True, "blockOwnerDeletion": True}]
    for stage, job in jobs(full).items():
        assert job["metadata"]["labels"][manifests.STAGE_LABEL] == stage
        assert job["spec"]["template"]["metadata"]["labels"] == job["metadata"]["labels"]


def test_pods_are_locked_down(full):
    for stage, job in jobs(full).items():
        spec = pod_spec(job)
        assert spec["automountServiceAccountToken"] is False, stage
        assert spec["restartPolicy"] == "Never"
        assert spec["enableServiceLinks"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        security = container(job)["securityContext"]
        assert security["allowPrivilegeEscalation"] is False
        assert security["privileged"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert job["spec"]["backoffLimit"] == 0


def test_service_account_pull_secret_policy_and_affinity(full, plain):
    expected_affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "scope", "operator": "In", "values": ["gpu-nodes"]}]}]}}}
    for job in jobs(full).values():
        spec = pod_spec(job)
        assert spec["serviceAccountName"] == "c2d-pods"
        assert spec["imagePullSecrets"] == [{"name": "regcred"}]
        assert spec["affinity"] == expected_affinity
        assert container(job)["imagePullPolicy"] == "IfNotPresent"
    for job in jobs(plain).values():
        spec = pod_spec(job)
        assert spec["serviceAccountName"] == "default"
        assert "imagePullSecrets" not in spec and "affinity" not in spec
        assert container(job)["imagePullPolicy"] == "Always"


def test_node_selector_with_a_key():
    settings = load_settings({"NODE_SELECTOR": "kubernetes.io/arch=arm64"})
    job = manifests.configure_job(make_workflow(), settings)
    terms = pod_spec(job)["affinity"]["nodeAffinity"][
        "requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert terms == [{"matchExpressions": [
        {"key": "kubernetes.io/arch", "operator": "In", "values": ["arm64"]}]}]


@pytest.mark.parametrize("maxtime, limit, expected", [(30, 60, 30), (600, 60, 60), (None, 90, 90)])
def test_algorithm_deadline_is_min_of_maxtime_and_max_job_duration(maxtime, limit, expected):
    workflow = make_workflow()
    compute = wf.stage(workflow)["compute"]
    if maxtime is None:
        del compute["maxtime"]
    else:
        compute["maxtime"] = maxtime
    job = manifests.algorithm_job(workflow, load_settings({"maxJobDuration": str(limit)}))
    assert job["spec"]["activeDeadlineSeconds"] == expected


def test_every_other_job_has_the_job_deadline():
    objects = everything(make_workflow(), load_settings({**FULL_ENV,
                                                         "JOB_DEADLINE_SECONDS": "900"}))
    for stage, job in jobs(objects).items():
        if stage != "algorithm":
            assert job["spec"]["activeDeadlineSeconds"] == 900, stage


@pytest.mark.parametrize("env, cpu, memory_gib, gpus", [
    ({}, "1", "1", None), ({"nCPU": "0.25", "ramGB": "1.5"}, "0.25", "1.5", None),
    ({"nCPU": "4", "ramGB": "16", "nGPU": "2"}, "4", "16", "2"),
    ({"nCPU": "0.001", "ramGB": "0.5", "nGPU": "0"}, "0.001", "0.5", None)])
def test_algorithm_resources(env, cpu, memory_gib, gpus):
    job = manifests.algorithm_job(make_workflow(), load_settings(env))
    resources = container(job)["resources"]
    assert resources["requests"] == resources["limits"]
    limits = resources["limits"]
    assert parse_quantity(limits["cpu"]) == Decimal(cpu)
    assert parse_quantity(limits["memory"]) == Decimal(memory_gib) * 2**30
    if gpus is None:
        assert "nvidia.com/gpu" not in limits
    else:
        assert limits["nvidia.com/gpu"] == gpus
    assert set(limits) <= {"cpu", "memory", "nvidia.com/gpu"}


def test_helper_jobs_never_request_gpus(full):
    for stage, job in jobs(full).items():
        if stage != "algorithm":
            resources = container(job)["resources"]
            assert "nvidia.com/gpu" not in resources.get("limits", {}), stage
            for amount in (*resources["limits"].values(), *resources["requests"].values()):
                parse_quantity(amount)


@pytest.mark.parametrize("disk, expected_gib", [("1", "1"), ("0.5", "0.5"), ("250", "250")])
def test_volumes_have_disk_gb_on_the_storage_class(disk, expected_gib):
    settings = load_settings({"diskGB": disk, "STORAGE_CLASS": "fast-ssd"})
    claims = manifests.volumes(make_workflow(), settings)
    assert [c["metadata"]["name"] for c in claims] == ["wf-1-data", "wf-1-adminlogs"]
    for claim in claims:
        assert claim["spec"]["storageClassName"] == "fast-ssd"
        assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
        size = claim["spec"]["resources"]["requests"]["storage"]
        assert parse_quantity(size) == Decimal(expected_gib) * 2**30


def test_jobs_refer_to_objects_that_exist(full):
    by_kind: dict[str, set[str]] = {}
    for obj in full:
        by_kind.setdefault(obj["kind"], set()).add(obj["metadata"]["name"])
    secret = next(o for o in full if o["kind"] == "Secret")
    for stage, job in jobs(full).items():
        for volume in pod_spec(job)["volumes"]:
            if "persistentVolumeClaim" in volume:
                assert volume["persistentVolumeClaim"]["claimName"] in \
                    by_kind["PersistentVolumeClaim"], stage
            if "configMap" in volume:
                assert volume["configMap"]["name"] in by_kind["ConfigMap"], stage
        mounted = {v["name"] for v in pod_spec(job)["volumes"]}
        assert {m["name"] for m in container(job)["volumeMounts"]} <= mounted
        for entry in container(job)["env"]:
            ref = entry.get("valueFrom", {}).get("secretKeyRef")
            if ref and ref["name"] == secret["metadata"]["name"]:
                assert ref["key"] in secret["stringData"]


def test_algorithm_pod_sees_only_its_data(full):
    job = jobs(full)["algorithm"]
    assert [v["name"] for v in pod_spec(job)["volumes"]] == ["data"]
    assert [(m["name"], m["mountPath"]) for m in container(job)["volumeMounts"]] == \
        [("data", "/data")]
    env = env_of(job)
    for name in ("OPERATOR_PRIVATE_KEY", "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID",
                 "IPFS_API_KEY", "IPFS_API_CLIENT"):
        assert name not in env
    assert env["secret"]["valueFrom"] == {"secretKeyRef": {"name": "wf-1", "key": "secret"}}


def test_algorithm_environment_as_ocean_algorithms_expect():
    workflow = make_workflow()
    wf.stage(workflow)["algorithm"]["container"]["checksum"] = "sha256:" + "ab" * 32
    job = manifests.algorithm_job(workflow, load_settings())
    env = {k: v.get("value") for k, v in env_of(job).items()}
    assert json.loads(env["DIDS"]) == ["aaa111", "bbb222"]
    assert env["TRANSFORMATION_DID"] == "algo333"
    assert (env["VOLUME"], env["INPUTS"], env["OUTPUTS"], env["LOGS"]) == (
        "/data", "/data/inputs", "/data/outputs", "/data/logs")
    assert env["ALGO"] == "/data/transformations/algorithm"
    assert env["C2D_ENTRYPOINT"] == "python $ALGO"
    assert container(job)["image"] == "python@sha256:" + "ab" * 32


def test_operator_secrets_come_from_the_secret_never_as_values(full):
    text = json.dumps(full)
    for value in SECRET_VALUES:
        assert value not in text
    for stage in ("configure", "publish"):
        env = env_of(jobs(full)[stage])
        assert env["OPERATOR_PRIVATE_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "c2d-secrets"


def test_job_secret_is_only_in_the_secret(full):
    holders = [o["kind"] for o in full if "s3cr3t-value" in json.dumps(o)]
    assert holders == ["Secret"]
    secret = next(o for o in full if o["kind"] == "Secret")
    assert secret["stringData"] == {"secret": "s3cr3t-value"} and secret["type"] == "Opaque"


def test_configmap_holds_the_pod_document(full):
    workflow = make_workflow()
    configmap = next(o for o in full if o["kind"] == "ConfigMap")
    assert set(configmap["data"]) == {"workflow.json", "workflow.yaml"}
    assert json.loads(configmap["data"]["workflow.json"]) == wf.pod_document(workflow)
    assert yaml.safe_load(configmap["data"]["workflow.yaml"]) == wf.pod_document(workflow)


def test_programs_and_images(full):
    by_stage = jobs(full)
    settings = load_settings(FULL_ENV)
    assert container(by_stage["configure"])["image"] == settings.pod_configuration_container
    assert container(by_stage["configure"])["command"] == ["python", "-m",
                                                           "functions.configure.pod"]
    assert container(by_stage["publish"])["image"] == settings.pod_publish_container
    assert container(by_stage["publish"])["command"] == ["python", "-m", "functions.publish.pod"]
    assert container(by_stage["filter"])["image"] == "example/filter:1.0"
    assert "command" not in container(by_stage["filter"])  # the filter image's own entrypoint
    for stage in ("configure", "filter", "publish"):
        mounts = {m["mountPath"] for m in container(by_stage[stage])["volumeMounts"]}
        assert {"/data", "/data/adminlogs", "/workflow.json", "/workflow.yaml"} <= mounts


def test_no_filter_without_filtering_container(plain):
    assert "filter" not in jobs(plain)
    with pytest.raises(ValueError, match="FILTERING_CONTAINER"):
        manifests.filter_job(make_workflow(), load_settings())


def test_unknown_stage_is_refused():
    with pytest.raises(ValueError, match="unknown stage"):
        manifests.for_stage(make_workflow(), load_settings(), "cleanup")


def test_network_policy_denies_algorithm_egress(plain, full):
    algorithm_labels = jobs(plain)["algorithm"]["spec"]["template"]["metadata"]["labels"]
    denied = next(o for o in plain if o["kind"] == "NetworkPolicy")
    selector = denied["spec"]["podSelector"]["matchLabels"]
    assert selector.items() <= algorithm_labels.items()
    for stage in ("configure", "publish"):  # they need the network
        labels = jobs(plain)[stage]["spec"]["template"]["metadata"]["labels"]
        assert not selector.items() <= labels.items()
    assert denied["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert denied["spec"]["egress"] == [] and denied["spec"]["ingress"] == []
    allowed = next(o for o in full if o["kind"] == "NetworkPolicy")
    assert allowed["spec"]["egress"] == [{"to": [
        {"ipBlock": {"cidr": "0.0.0.0/0", "except": ["169.254.169.254/32"]}},
        {"ipBlock": {"cidr": "::/0", "except": ["fd00:ec2::254/128"]}}]}]


# ---------------------------------------------------------------- the algorithm's shell wrapper


def run_algorithm_wrapper(tmp_path: Path, entrypoint: str) -> tuple[int, str]:
    """Run the rendered algorithm command with /bin/sh, as the pod would."""
    job = manifests.algorithm_job(make_workflow(), load_settings())
    command = container(job)["command"] + container(job)["args"]
    env = {"PATH": os.environ["PATH"], "OUTPUTS": str(tmp_path / "outputs"),
           "LOGS": str(tmp_path / "logs"), "ALGO": str(tmp_path / "algo.py"),
           "C2D_ENTRYPOINT": entrypoint}
    done = subprocess.run(command, env=env, capture_output=True, timeout=30)
    return done.returncode, (tmp_path / "logs" / "algorithm.log").read_text()


needs_sh = pytest.mark.skipif(shutil.which("sh") is None, reason="no /bin/sh on this machine")


@needs_sh
@pytest.mark.parametrize("entrypoint, code, log", [
    ('echo "running $ALGO"', 0, "running {algo}\n"),
    ("echo out; echo err >&2; false", 1, "out\nerr\n"),
    ("(exit 7)", 7, ""),
    ("echo 'quoted; $(not run)'", 0, "quoted; $(not run)\n"),
])
def test_algorithm_wrapper_tees_output_and_keeps_the_exit_code(tmp_path, entrypoint, code, log):
    returncode, written = run_algorithm_wrapper(tmp_path, entrypoint)
    assert returncode == code
    assert written == log.format(algo=tmp_path / "algo.py")
    assert (tmp_path / "outputs").is_dir()


@needs_sh
@pytest.mark.parametrize("entrypoint, code", [("exec true", 0), ("echo done; exit 0", 0),
                                              ("exit 3", 3)])
def test_algorithm_wrapper_with_exec_or_exit(tmp_path, entrypoint, code):
    assert run_algorithm_wrapper(tmp_path, entrypoint)[0] == code


# ---------------------------------------------------------------- hostile values


def shape(value):
    """The structure of a rendered object: keys, list lengths and scalar types, no values."""
    if isinstance(value, dict):
        return {k: shape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [shape(v) for v in value]
    return type(value).__name__


def hostile_workflow(text: str, name: str = "wf-1") -> dict:
    workflow = make_workflow(name=name)
    stage = wf.stage(workflow)
    workflow["spec"]["secret"] = text
    stage["input"][0]["id"] = "did:op:" + text
    stage["input"][0]["url"] = ["https://example.org/" + text, text]
    stage["input"][1]["url"] = text
    stage["algorithm"]["id"] = text
    stage["algorithm"]["rawcode"] = text
    stage["algorithm"]["container"]["entrypoint"] = text
    stage["algorithm"]["container"]["tag"] = text
    stage["algorithm"]["algocustomdata"] = {text: text, "list": [text, {"k": text}]}
    stage["output"]["metadataUri"] = text
    stage[text] = text  # an unknown field inside the stage
    return workflow


def benign_workflow(name: str = "wf-1") -> dict:
    return hostile_workflow("benign", name)


@pytest.mark.parametrize("text", HOSTILE, ids=repr)
def test_hostile_values_come_out_as_the_same_data(text):
    settings = load_settings(FULL_ENV)
    workflow = hostile_workflow(text)
    objects = everything(workflow, settings)
    reference = everything(benign_workflow(), settings)
    # No key, item or document appears or disappears, and no string turns into another type.
    for got, expected in zip(objects, reference, strict=True):
        if got["kind"] == "ConfigMap":
            got, expected = dict(got, data=None), dict(expected, data=None)
        assert shape(got) == shape(expected), got["kind"]
    for obj in objects:
        assert kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    # And each value is exactly what the workflow said.
    secret = next(o for o in objects if o["kind"] == "Secret")
    assert secret["stringData"] == {"secret": text}
    algorithm = jobs(objects)["algorithm"]
    env = {k: v.get("value") for k, v in env_of(algorithm).items()}
    assert env["C2D_ENTRYPOINT"] == text
    assert env["TRANSFORMATION_DID"] == text.replace("did:op:", "")
    assert json.loads(env["DIDS"]) == [text.replace("did:op:", ""), "bbb222"]
    assert container(algorithm)["image"] == f"python:{text}"
    configmap = next(o for o in objects if o["kind"] == "ConfigMap")
    document = wf.pod_document(workflow)
    assert json.loads(configmap["data"]["workflow.json"]) == document
    assert yaml.safe_load(configmap["data"]["workflow.yaml"]) == document


@pytest.mark.parametrize("text", HOSTILE, ids=repr)
def test_hostile_names_stay_names(text):
    """Names are validated first; even so, a hostile one cannot change a manifest's shape."""
    settings = load_settings(FULL_ENV)
    workflow = benign_workflow(name=text)
    workflow["metadata"]["namespace"] = text
    objects = everything(workflow, settings)
    reference = everything(benign_workflow(name="wf-1"), settings)
    for got, expected in zip(objects, reference, strict=True):
        if got["kind"] == "ConfigMap":
            got, expected = dict(got, data=None), dict(expected, data=None)
        assert shape(got) == shape(expected), got["kind"]
        assert got["metadata"]["namespace"] == text
        assert got["metadata"]["labels"][manifests.WORKFLOW_LABEL] == text
        assert got["metadata"]["ownerReferences"][0]["name"] == text
        assert got["metadata"]["name"] in {text, f"{text}-data", f"{text}-adminlogs",
                                           *(f"{text}-{s}" for s in wf.STAGES)}


@pytest.mark.parametrize("variable", ["IPFS_OUTPUT_PREFIX", "IPFS_ADMINLOGS_PREFIX",
                                      "AWS_BUCKET_OUTPUT", "C2D_STORAGE_DIR"])
@pytest.mark.parametrize("text", ["a\nb: c", "{{ x }}", '"q"', "--- \nkind: Pod"], ids=repr)
def test_hostile_settings_come_out_as_the_same_data(variable, text):
    settings = load_settings({variable: text})
    for stage in ("configure", "publish"):
        job = manifests.for_stage(make_workflow(), settings, stage)[-1]
        assert env_of(job)[variable]["value"] == text.strip()
        assert kubernetes_validate.validate(job, K8S_VERSION, strict=True)
