"""Builders for every object the engine creates for a workflow (DESIGN section 6).

Each builder is pure: (workflow, settings) -> a Kubernetes object, rendered
from its template in shared/templates/. The values that vary per workflow are
computed here; the structure lives in the templates.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

from shared import workflow as wf
from shared.settings import Settings
from shared.templates import render

# libyaml's emitter where present: PyYAML's own was a tenth of an admission's CPU.
_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
MANAGED_BY = "app.kubernetes.io/managed-by"
WORKFLOW_LABEL = "c2d.oceanprotocol.com/workflow"
STAGE_LABEL = "c2d.oceanprotocol.com/stage"
VOLUME = "/data"
METADATA_SERVICES = {"0.0.0.0/0": "169.254.169.254/32", "::/0": "fd00:ec2::254/128"}
# Configure, filter and publish are our own programs: modest, fixed resources.
HELPER_RESOURCES = {"requests": {"cpu": "100m", "memory": "128Mi"},
                    "limits": {"cpu": "1", "memory": "512Mi"}}


def labels(workflow: dict, stage: str) -> dict[str, str]:
    return {MANAGED_BY: "c2d", WORKFLOW_LABEL: wf.name(workflow), STAGE_LABEL: stage}


def owner_references(workflow: dict) -> list[dict[str, Any]]:
    """Owned by the Workflow, so deleting it deletes everything."""
    return [{"apiVersion": wf.API_VERSION, "kind": wf.KIND, "name": wf.name(workflow),
             "uid": workflow["metadata"]["uid"], "controller": True,
             "blockOwnerDeletion": True}]


def _quantity(number: float, unit: str = "") -> str:
    """A Kubernetes quantity: integers stay integers, fractions keep 3 decimals."""
    text = str(int(number)) if float(number).is_integer() else f"{number:.3f}".rstrip("0")
    return text + unit


def _common(workflow: dict, settings: Settings, stage: str) -> dict[str, Any]:
    names = wf.names(workflow)
    affinity = None
    if settings.node_selector:
        key, value = settings.node_selector
        affinity = {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [
                {"key": key, "operator": "In", "values": [value]}]}]}}}
    return {
        "name": wf.name(workflow), "namespace": wf.namespace(workflow), "stage": stage,
        "names": {"configmap": names.configmap, "secret": names.secret,
                  "data_volume": names.data_volume,
                  "adminlogs_volume": names.adminlogs_volume,
                  "network_policy": names.network_policy,
                  "job": names.job(stage) if stage in wf.STAGES else None},
        "labels": labels(workflow, stage), "owner_references": owner_references(workflow),
        "service_account": settings.service_account, "pull_policy": settings.pull_policy,
        "pull_secrets": [{"name": settings.pull_secret}] if settings.pull_secret else [],
        "affinity": affinity, "volume": VOLUME,
    }


def configmap(workflow: dict, settings: Settings) -> dict:
    """`<wf>`: /workflow.json and /workflow.yaml for the pods (no secret inside)."""
    document = wf.pod_document(workflow)
    return render("configmap.yaml", {
        **_common(workflow, settings, "configure"),
        "workflow_json": json.dumps(document, indent=2),
        "workflow_yaml": yaml.dump(document, Dumper=_DUMPER, sort_keys=False),
    }, settings.templates_dir)


def secret(workflow: dict, settings: Settings) -> dict:
    """`<wf>`: the job secret, given to the algorithm pod as `secret`."""
    return render("secret.yaml", {**_common(workflow, settings, "configure"),
                                  "secret": wf.secret(workflow) or ""}, settings.templates_dir)


def volumes(workflow: dict, settings: Settings) -> list[dict]:
    """The data and admin-log claims, `diskGB` each."""
    context = _common(workflow, settings, "configure")
    return [render("pvc.yaml", {**context, "claim": claim,
                                "size": _quantity(settings.disk_gb, "Gi"),
                                "storage_class": settings.storage_class},
                   settings.templates_dir)
            for claim in (context["names"]["data_volume"], context["names"]["adminlogs_volume"])]


def _storage_env(settings: Settings) -> list[dict[str, Any]]:
    """What the configure and publish pods need to know about storage and sizes."""
    plain = {
        "diskGB": _quantity(settings.disk_gb), "STORAGE_EXPIRY": str(settings.storage_expiry),
        "C2D_STORAGE_DIR": settings.storage_dir, "LOG_LEVEL": settings.log_level,
        "IPFS_TYPE": settings.ipfs_type, "IPFS_OUTPUT": settings.ipfs_output,
        "IPFS_ADMINLOGS": settings.ipfs_adminlogs,
        "IPFS_OUTPUT_PREFIX": settings.ipfs_output_prefix,
        "IPFS_ADMINLOGS_PREFIX": settings.ipfs_adminlogs_prefix,
        "IPFS_EXPIRY_TIME": settings.ipfs_expiry_time, "AWS_REGION": settings.aws_region,
        "AWS_BUCKET_OUTPUT": settings.aws_bucket_output,
        "AWS_BUCKET_ADMINLOGS": settings.aws_bucket_adminlogs,
        # boto3 reads it: S3-compatible stores (MinIO, Ceph) besides AWS.
        "AWS_ENDPOINT_URL": settings.aws_endpoint_url,
    }
    env = [{"name": k, "value": v} for k, v in plain.items() if v is not None]
    for key in ("OPERATOR_PRIVATE_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                "IPFS_API_KEY", "IPFS_API_CLIENT"):
        env.append({"name": key, "valueFrom": {"secretKeyRef": {
            "name": settings.secrets_name, "key": key, "optional": True}}})
    return env


def uses_local_storage(settings: Settings) -> bool:
    """Results go to C2D_STORAGE_DIR: neither IPFS nor S3 is configured (embedded stack)."""
    return not settings.ipfs_output and not settings.aws_bucket_output


def _program_job(workflow: dict, settings: Settings, stage: str, image: str,
                 command: list[str]) -> dict:
    context = _common(workflow, settings, stage)
    # The publish pod writes local storage through a hostPath: single-node clusters only.
    local_storage = settings.storage_dir \
        if stage == "publish" and uses_local_storage(settings) else None
    env = [{"name": "VOLUME", "value": VOLUME}, {"name": "WORKFLOW", "value": "/workflow.json"},
           {"name": "JOB_ID", "value": wf.name(workflow)}, *_storage_env(settings)]
    return render("job.yaml", {
        **context, "image": image, "command": command, "env": env,
        "resources": HELPER_RESOURCES, "deadline": settings.job_deadline_seconds,
        "local_storage": local_storage,
    }, settings.templates_dir)


def configure_job(workflow: dict, settings: Settings) -> dict:
    """`<wf>-configure`: fetches the datasets and the algorithm into /data."""
    return _program_job(workflow, settings, "configure", settings.pod_configuration_container,
                        ["python", "-m", "functions.configure.pod"])


def publish_job(workflow: dict, settings: Settings) -> dict:
    """`<wf>-publish`: uploads outputs and logs, reports the result list."""
    return _program_job(workflow, settings, "publish", settings.pod_publish_container,
                        ["python", "-m", "functions.publish.pod"])


def filter_job(workflow: dict, settings: Settings) -> dict:
    """`<wf>-filter`: FILTERING_CONTAINER over /data/outputs, with its own entrypoint."""
    if not settings.filtering_container:
        raise ValueError("FILTERING_CONTAINER is not set")
    context = _common(workflow, settings, "filter")
    env = [{"name": "VOLUME", "value": VOLUME}, {"name": "WORKFLOW", "value": "/workflow.json"},
           {"name": "JOB_ID", "value": wf.name(workflow)},
           {"name": "OUTPUTS", "value": f"{VOLUME}/outputs"}]
    return render("job.yaml", {
        **context, "image": settings.filtering_container, "command": None, "env": env,
        "resources": HELPER_RESOURCES, "deadline": settings.job_deadline_seconds,
        "local_storage": None,
    }, settings.templates_dir)


def algorithm_resources(settings: Settings) -> dict[str, dict[str, str]]:
    """Requests equal limits: the environment's CPU, RAM and GPUs, nothing more."""
    amounts = {"cpu": _quantity(settings.n_cpu), "memory": _quantity(settings.ram_gb, "Gi")}
    if settings.n_gpu > 0:
        amounts["nvidia.com/gpu"] = str(settings.n_gpu)
    return {"requests": dict(amounts), "limits": dict(amounts)}


def algorithm_job(workflow: dict, settings: Settings) -> dict:
    """`<wf>-algorithm`: the consumer's container, bounded in time, resources and network."""
    context = _common(workflow, settings, "algorithm")
    stage = wf.stage(workflow)
    dids = [did.replace("did:op:", "") for did in wf.input_dids(workflow)]
    env = [
        {"name": "DIDS", "value": json.dumps(dids)},
        {"name": "TRANSFORMATION_DID",
         "value": (wf.algorithm_did(workflow) or "").replace("did:op:", "")},
        {"name": "VOLUME", "value": VOLUME}, {"name": "LOGS", "value": f"{VOLUME}/logs"},
        {"name": "INPUTS", "value": f"{VOLUME}/inputs"},
        {"name": "OUTPUTS", "value": f"{VOLUME}/outputs"},
        {"name": "ALGO", "value": f"{VOLUME}/transformations/algorithm"},
        {"name": "C2D_ENTRYPOINT", "value": stage["algorithm"]["container"]["entrypoint"]},
        {"name": "secret", "valueFrom": {"secretKeyRef": {
            "name": context["names"]["secret"], "key": "secret"}}},
    ]
    return render("job-algorithm.yaml", {
        **context, "image": wf.algorithm_image(workflow), "env": env,
        "resources": algorithm_resources(settings),
        "deadline": wf.max_duration(workflow, settings.max_job_duration),
    }, settings.templates_dir)


def algorithm_network_policy(workflow: dict, settings: Settings) -> dict:
    """No egress for the algorithm pod, or egress except the cloud metadata address."""
    return render("networkpolicy-algorithm.yaml", {
        **_common(workflow, settings, "algorithm"),
        "allow_egress": settings.algorithm_allow_network, "egress_blocks": METADATA_SERVICES,
    }, settings.templates_dir)


def for_stage(workflow: dict, settings: Settings, stage: str) -> list[dict]:
    """Everything a stage creates, in creation order (for `c2d render` and tests)."""
    if stage == "configure":
        return [configmap(workflow, settings), secret(workflow, settings),
                *volumes(workflow, settings), configure_job(workflow, settings)]
    if stage == "algorithm":
        return [algorithm_network_policy(workflow, settings), algorithm_job(workflow, settings)]
    if stage == "filter":
        return [filter_job(workflow, settings)] if settings.filtering_container else []
    if stage == "publish":
        return [publish_job(workflow, settings)]
    raise ValueError(f"unknown stage {stage!r}")
