"""The Workflow resource: validation, derived names, status codes and transitions.

A Workflow is kept as the plain dict the Kubernetes API returns; this module
reads it, never wraps it, so that what a handler sees is what the API has.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GROUP = "oceanprotocol.com"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "Workflow"
PLURAL = "workflows"

STAGES = ("configure", "algorithm", "filter", "publish")
# `<wf>-algorithm` must stay a valid label value (Jobs label their pods with it).
MAX_NAME_LENGTH = 63 - len("-algorithm")
NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
# A DID without `did:op:` names a folder (/data/inputs/<did>): nothing that can leave it.
DID_FOLDER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,254}$")
RAWCODE_MIN = 11  # the original uses rawcode only when longer than 10 characters

QUEUED = 1
STARTED = 10
CONFIGURING = 20
VOLUME_FAILED = 21
PROVISIONED = 30
DATA_FAILED = 31
ALGORITHM_PROVISIONING_FAILED = 32
RUNNING = 40
ALGORITHM_FAILED = 41
FILTERING = 50
PUBLISHING = 60
UPLOAD_FAILED = 62
FINISHED = 70

STATUS_TEXT = {
    QUEUED: "Warming up",
    STARTED: "Job started",
    CONFIGURING: "Configuring volumes",
    VOLUME_FAILED: "Volume creation failed",
    PROVISIONED: "Provisioning success",
    DATA_FAILED: "Data provisioning failed",
    ALGORITHM_PROVISIONING_FAILED: "Algorithm provisioning failed",
    RUNNING: "Running algorithm",
    ALGORITHM_FAILED: "Algorithm failed",
    FILTERING: "Filtering results",
    PUBLISHING: "Publishing results",
    UPLOAD_FAILED: "Results upload failed",
    FINISHED: "Job finished",
}

# Codes move forward only; failures still publish logs, so they lead to 50/60.
_AFTER_FAILURE = {FILTERING, PUBLISHING, FINISHED}
TRANSITIONS: dict[int, set[int]] = {
    0: {QUEUED, STARTED, CONFIGURING, VOLUME_FAILED, FINISHED},
    QUEUED: {STARTED, CONFIGURING, VOLUME_FAILED, FINISHED},
    STARTED: {CONFIGURING, VOLUME_FAILED, FINISHED},
    CONFIGURING: {VOLUME_FAILED, PROVISIONED, DATA_FAILED, ALGORITHM_PROVISIONING_FAILED,
                  FILTERING, PUBLISHING, FINISHED},
    VOLUME_FAILED: {FINISHED},
    PROVISIONED: {RUNNING} | _AFTER_FAILURE,
    DATA_FAILED: set(_AFTER_FAILURE),
    ALGORITHM_PROVISIONING_FAILED: set(_AFTER_FAILURE),
    RUNNING: {ALGORITHM_FAILED} | _AFTER_FAILURE,
    ALGORITHM_FAILED: set(_AFTER_FAILURE),
    FILTERING: {PUBLISHING, FINISHED},
    PUBLISHING: {UPLOAD_FAILED, FINISHED},
    UPLOAD_FAILED: set(),
    FINISHED: set(),
}
QUEUED_PHASE = "Queued"
FINAL_PHASES = ("Succeeded", "Failed", "Stopped")

# The algorithm stage's result, set once: True on success, else False with a reason.
ALGORITHM_CONDITION = "AlgorithmFinished"
ALGORITHM_OUTCOMES = {"Succeeded": "succeeded", "Failed": "failed", "Timeout": "timeout",
                      "StopRequested": "stopped", "Skipped": "stopped"}


class InvalidWorkflow(ValueError):
    """A Workflow that cannot run; `errors` lists `field: problem` lines."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("; ".join(errors))


class InvalidTransition(ValueError):
    """A status change that the status-code table does not allow."""


def now() -> str:
    """The current time in RFC 3339, as the status records it."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: str) -> datetime:
    """An RFC 3339 timestamp from a status or metadata field."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


# ---------------------------------------------------------------- reading


def name(workflow: dict) -> str:
    return workflow["metadata"]["name"]


def namespace(workflow: dict) -> str:
    return workflow["metadata"].get("namespace", "default")


def key(workflow: dict) -> str:
    """`<namespace>/<name>`, the value of the `c2dworkflow` event extension."""
    return f"{namespace(workflow)}/{name(workflow)}"


def stage(workflow: dict) -> dict:
    """The single Ocean stage of a (validated) workflow."""
    return workflow["spec"]["metadata"]["stages"][0]


def status(workflow: dict) -> dict:
    return workflow.get("status") or {}


def status_code(workflow: dict) -> int:
    return code_of(status(workflow))


def code_of(current_status: dict) -> int:
    """The status code of a status dict; 0 for a workflow nobody has looked at yet."""
    return int(current_status.get("statusCode") or 0)


def unlisted_results(current_status: dict) -> tuple[int, str]:
    """How many results the status leaves out (too many for it), and where all are listed."""
    unlisted = (current_status.get("resultsCount") or 0) - len(current_status.get("results") or [])
    return max(unlisted, 0), current_status.get("resultsManifest") or "the result manifest"


def is_final(workflow: dict) -> bool:
    return status(workflow).get("phase") in FINAL_PHASES


def stop_requested(workflow: dict) -> bool:
    return bool(workflow.get("spec", {}).get("stopRequested"))


def input_dids(workflow: dict) -> list[str]:
    return [item.get("id") for item in stage(workflow).get("input") or []]


def algorithm_did(workflow: dict) -> str | None:
    return stage(workflow).get("algorithm", {}).get("id")


def secret(workflow: dict) -> str | None:
    return workflow.get("spec", {}).get("secret")


def max_duration(workflow: dict, max_job_duration: int) -> int:
    """Seconds the algorithm may run: min(compute.maxtime, maxJobDuration)."""
    maxtime = stage(workflow).get("compute", {}).get("maxtime")
    return min(int(maxtime), max_job_duration) if maxtime else max_job_duration


def algorithm_image(workflow: dict) -> str:
    """`image@checksum` when the checksum is a sha256 digest, else `image:tag`."""
    container = stage(workflow)["algorithm"]["container"]
    checksum = container.get("checksum") or ""
    if re.fullmatch(r"sha256:[0-9a-f]{64}", checksum):
        return f"{container['image']}@{checksum}"
    return f"{container['image']}:{container.get('tag') or 'latest'}"


def pod_document(workflow: dict) -> dict:
    """What the pods read from /workflow.json: the Ocean body, no secret."""
    spec_metadata = workflow["spec"]["metadata"]
    return {"jobId": name(workflow), "namespace": namespace(workflow),
            "chainId": spec_metadata.get("chainId"), "stages": spec_metadata["stages"]}


@dataclass(frozen=True)
class ObjectNames:
    """Names of everything the engine creates for one workflow."""

    workflow: str

    @property
    def configmap(self) -> str:
        return self.workflow

    @property
    def secret(self) -> str:
        return self.workflow

    @property
    def data_volume(self) -> str:
        return f"{self.workflow}-data"

    @property
    def adminlogs_volume(self) -> str:
        return f"{self.workflow}-adminlogs"

    @property
    def network_policy(self) -> str:
        return f"{self.workflow}-algorithm"

    def job(self, stage_name: str) -> str:
        if stage_name not in STAGES:
            raise ValueError(f"unknown stage {stage_name!r}")
        return f"{self.workflow}-{stage_name}"


def names(workflow: dict) -> ObjectNames:
    return ObjectNames(name(workflow))


def job_stage(job_name: str) -> tuple[str, str] | None:
    """(workflow name, stage) for a Job name the engine created, else None."""
    for stage_name in STAGES:
        suffix = f"-{stage_name}"
        if job_name.endswith(suffix) and len(job_name) > len(suffix):
            return job_name[: -len(suffix)], stage_name
    return None


# ---------------------------------------------------------------- validation


def validate(workflow: Any) -> None:
    """Raise InvalidWorkflow listing every problem, each naming its field."""
    errors: list[str] = []
    if not isinstance(workflow, dict):
        raise InvalidWorkflow(["workflow: must be an object"])
    metadata = workflow.get("metadata")
    if not isinstance(metadata, dict) or not isinstance(metadata.get("name"), str):
        errors.append("metadata.name: required")
    else:
        wf_name = metadata["name"]
        if not NAME.match(wf_name) or len(wf_name) > MAX_NAME_LENGTH:
            errors.append(f"metadata.name: must be a DNS-1123 label of at most "
                          f"{MAX_NAME_LENGTH} characters, got {wf_name!r}")
    spec = workflow.get("spec")
    if not isinstance(spec, dict):
        raise InvalidWorkflow([*errors, "spec: required"])
    _check_type(errors, spec, "secret", str, "spec")
    _check_type(errors, spec, "stopRequested", bool, "spec")
    stages = spec.get("metadata", {}).get("stages") if isinstance(spec.get("metadata"), dict) \
        else None
    if not isinstance(stages, list) or not stages:
        errors.append("spec.metadata.stages: required (a list with one stage)")
    elif len(stages) > 1:
        errors.append(f"spec.metadata.stages: only one stage is supported, got {len(stages)}")
    else:
        _validate_stage(errors, stages[0], "spec.metadata.stages[0]")
    if errors:
        raise InvalidWorkflow(errors)


def _check_type(errors: list[str], parent: dict, field: str, kind: type, path: str) -> None:
    if field in parent and parent[field] is not None and not isinstance(parent[field], kind):
        errors.append(f"{path}.{field}: must be {_TYPE_NAMES[kind]}")


_UNSAFE_DID = ("must be a DID usable as a folder name (after did:op:, letters, digits, "
               "'.', '_', ':', '-', starting with a letter or digit)")
_TYPE_NAMES = {str: "a string", bool: "true or false", dict: "an object", list: "a list",
               int: "an integer"}


def did_folder(did: Any) -> str | None:
    """The folder name of a DID (`did:op:` removed), None when it is unsafe as one."""
    name = did.removeprefix("did:op:") if isinstance(did, str) else ""
    return name if DID_FOLDER.match(name) else None


def _is_url(value: Any) -> bool:
    return isinstance(value, str) and re.match(r"^https?://[^\s/?#]+", value) is not None


def _validate_stage(errors: list[str], stage_body: Any, path: str) -> None:
    if not isinstance(stage_body, dict):
        errors.append(f"{path}: must be an object")
        return
    inputs = stage_body.get("input", [])
    if not isinstance(inputs, list):
        errors.append(f"{path}.input: must be a list")
        inputs = []
    for i, item in enumerate(inputs):
        _validate_input(errors, item, f"{path}.input[{i}]")
    algorithm = stage_body.get("algorithm")
    if not isinstance(algorithm, dict):
        errors.append(f"{path}.algorithm: required")
    else:
        _validate_algorithm(errors, algorithm, f"{path}.algorithm")
    compute = stage_body.get("compute", {})
    if not isinstance(compute, dict):
        errors.append(f"{path}.compute: must be an object")
    elif "maxtime" in compute and not (isinstance(compute["maxtime"], int)
                                       and not isinstance(compute["maxtime"], bool)
                                       and compute["maxtime"] >= 1):
        errors.append(f"{path}.compute.maxtime: must be a positive integer (seconds)")
    output = stage_body.get("output", {})
    if not isinstance(output, dict):
        errors.append(f"{path}.output: must be an object")
    elif output.get("metadataUri") is not None and not _is_url(output["metadataUri"]):
        errors.append(f"{path}.output.metadataUri: must be an http(s) URL")


def _validate_input(errors: list[str], item: Any, path: str) -> None:
    if not isinstance(item, dict):
        errors.append(f"{path}: must be an object")
        return
    if not isinstance(item.get("id"), str) or not item["id"]:
        errors.append(f"{path}.id: required (the dataset DID)")
    elif did_folder(item["id"]) is None:
        errors.append(f"{path}.id: {_UNSAFE_DID}")
    if "index" in item and not (isinstance(item["index"], int) and item["index"] >= 0):
        errors.append(f"{path}.index: must be a non-negative integer")
    has_url, has_remote = "url" in item, "remote" in item
    if has_url == has_remote:
        errors.append(f"{path}: exactly one of url or remote is required")
    elif has_url:
        urls = item["url"] if isinstance(item["url"], list) else [item["url"]]
        if not urls:
            errors.append(f"{path}.url: must not be empty")
        for j, url in enumerate(urls):
            if not _is_url(url):
                where = f"{path}.url[{j}]" if isinstance(item["url"], list) else f"{path}.url"
                errors.append(f"{where}: must be an http(s) URL")
    else:
        _validate_remote(errors, item["remote"], f"{path}.remote")


def _validate_remote(errors: list[str], remote: Any, path: str) -> None:
    if not isinstance(remote, dict):
        errors.append(f"{path}: must be an object")
        return
    for field in ("txId", "serviceId"):
        if not isinstance(remote.get(field), str) or not remote[field]:
            errors.append(f"{path}.{field}: required")


def _validate_algorithm(errors: list[str], algorithm: dict, path: str) -> None:
    container = algorithm.get("container")
    if not isinstance(container, dict):
        errors.append(f"{path}.container: required")
    else:
        for field in ("image", "entrypoint"):
            if not isinstance(container.get(field), str) or not container[field].strip():
                errors.append(f"{path}.container.{field}: required")
        for field in ("tag", "checksum"):
            _check_type(errors, container, field, str, f"{path}.container")
        for field in ("image", "tag"):
            value = container.get(field)
            if isinstance(value, str) and value.strip() and re.search(r"[\s\"'\\]", value):
                errors.append(f"{path}.container.{field}: must not contain spaces or quotes")
    _check_type(errors, algorithm, "rawcode", str, path)
    if "id" in algorithm and algorithm["id"] is not None and did_folder(algorithm["id"]) is None:
        errors.append(f"{path}.id: {_UNSAFE_DID}")
    rawcode = algorithm.get("rawcode")
    has_code = isinstance(rawcode, str) and len(rawcode) >= RAWCODE_MIN
    if not has_code and (rawcode is None or isinstance(rawcode, str)) \
            and algorithm.get("url") is None and algorithm.get("remote") is None:
        errors.append(f"{path}: one of rawcode (over 10 characters), url or remote is required")
    if algorithm.get("url") is not None and not _is_url(algorithm["url"]):
        errors.append(f"{path}.url: must be an http(s) URL")
    if algorithm.get("remote") is not None:
        _validate_remote(errors, algorithm["remote"], f"{path}.remote")


# ---------------------------------------------------------------- status


def phase_for(code: int) -> str:
    """The phase a non-final code implies."""
    return QUEUED_PHASE if code == QUEUED else "Running"


def transition(current: dict, code: int, **fields: Any) -> dict:
    """A new status moving to `code`, with `fields` merged; raises if not allowed.

    `phase` defaults to what the code implies unless given; statusText follows
    the code. Moving to the current code again is allowed (an idempotent retry).
    """
    old = code_of(current)
    if code != old and code not in TRANSITIONS.get(old, set()):
        raise InvalidTransition(f"status {old} ({STATUS_TEXT.get(old, 'new')}) cannot move to "
                                f"{code} ({STATUS_TEXT.get(code, 'unknown')})")
    new = {**current, "statusCode": code, "statusText": STATUS_TEXT[code]}
    if current.get("phase") not in FINAL_PHASES:
        new["phase"] = phase_for(code)
    new.update({k: v for k, v in fields.items() if v is not None})
    return new


def condition(current_status: dict, kind: str) -> dict | None:
    for found in current_status.get("conditions") or []:
        if found.get("type") == kind:
            return found
    return None


def algorithm_outcome(current_status: dict) -> str:
    """`succeeded`, `failed`, `timeout`, `stopped`, or "" while the algorithm has not finished."""
    found = condition(current_status, ALGORITHM_CONDITION)
    return ALGORITHM_OUTCOMES.get(found.get("reason"), "failed") if found else ""


def set_condition(current: dict, kind: str, ok: bool, reason: str, message: str = "") -> dict:
    """The status with condition `kind` set (its time kept when unchanged)."""
    new = dict(current)
    conditions = [dict(c) for c in current.get("conditions") or []]
    wanted = {"type": kind, "status": "True" if ok else "False", "reason": reason,
              "message": message}
    for condition in conditions:
        if condition["type"] == kind:
            if condition.get("status") != wanted["status"]:
                condition["lastTransitionTime"] = now()
            condition.update(wanted)
            break
    else:
        conditions.append({**wanted, "lastTransitionTime": now()})
    new["conditions"] = conditions
    return new
