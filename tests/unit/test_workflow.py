"""shared.workflow: validation naming the field, names, status table, transitions, helpers."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from shared import workflow as wf
from shared.workflow import InvalidTransition, InvalidWorkflow, ObjectNames

from .helpers import make_workflow

S0 = "spec.metadata.stages[0]"


def errors_of(workflow) -> list[str]:
    with pytest.raises(InvalidWorkflow) as caught:
        wf.validate(workflow)
    assert str(caught.value) == "; ".join(caught.value.errors)
    return caught.value.errors


def stage_of(workflow: dict) -> dict:
    return workflow["spec"]["metadata"]["stages"][0]


def test_valid_workflow_passes(workflow):
    assert wf.validate(workflow) is None


def test_unknown_fields_inside_the_stage_are_accepted(workflow):
    stage_of(workflow)["somethingNew"] = {"nested": [1, 2]}
    stage_of(workflow)["algorithm"]["algocustomdata"] = {"epochs": 3}
    stage_of(workflow)["output"]["whitelist"] = []
    wf.validate(workflow)


# (what to change, the exact error line)
def _set(path: str, value):
    def change(workflow: dict) -> None:
        target = workflow
        keys = path.split(".")
        for key in keys[:-1]:
            target = target[int(key)] if isinstance(target, list) else target[key]
        last = keys[-1]
        if value is _DELETE:
            del target[int(last) if isinstance(target, list) else last]
        elif isinstance(target, list):
            target[int(last)] = value
        else:
            target[last] = value
    return change


_DELETE = object()
ST = "spec.metadata.stages.0"

FIELD_ERRORS = [
    (_set(f"{ST}.algorithm.container.image", _DELETE),
     f"{S0}.algorithm.container.image: required"),
    (_set(f"{ST}.algorithm.container.image", ""), f"{S0}.algorithm.container.image: required"),
    (_set(f"{ST}.algorithm.container.image", 42), f"{S0}.algorithm.container.image: required"),
    (_set(f"{ST}.algorithm.container.image", "python\nevil: 1"),
     f"{S0}.algorithm.container.image: must not contain spaces or quotes"),
    (_set(f"{ST}.algorithm.container.image", 'py"thon'),
     f"{S0}.algorithm.container.image: must not contain spaces or quotes"),
    (_set(f"{ST}.algorithm.container.entrypoint", _DELETE),
     f"{S0}.algorithm.container.entrypoint: required"),
    (_set(f"{ST}.algorithm.container.entrypoint", ["python"]),
     f"{S0}.algorithm.container.entrypoint: required"),
    (_set(f"{ST}.algorithm.container.tag", 3), f"{S0}.algorithm.container.tag: must be a string"),
    (_set(f"{ST}.algorithm.container.checksum", ["sha256:x"]),
     f"{S0}.algorithm.container.checksum: must be a string"),
    (_set(f"{ST}.algorithm.container", _DELETE), f"{S0}.algorithm.container: required"),
    (_set(f"{ST}.algorithm.container", "python:3"), f"{S0}.algorithm.container: required"),
    (_set(f"{ST}.algorithm", _DELETE), f"{S0}.algorithm: required"),
    (_set(f"{ST}.algorithm", ["x"]), f"{S0}.algorithm: required"),
    (_set(f"{ST}.algorithm.rawcode", 12), f"{S0}.algorithm.rawcode: must be a string"),
    (_set(f"{ST}.algorithm.url", "ftp://example.org/algo.py"),
     f"{S0}.algorithm.url: must be an http(s) URL"),
    (_set(f"{ST}.algorithm.remote", "0xabc"), f"{S0}.algorithm.remote: must be an object"),
    (_set(f"{ST}.algorithm.remote", {"serviceId": "s"}), f"{S0}.algorithm.remote.txId: required"),
    (_set(f"{ST}.algorithm.remote", {"txId": "0x1", "serviceId": ""}),
     f"{S0}.algorithm.remote.serviceId: required"),
    (_set(f"{ST}.input", {"id": "did:op:1"}), f"{S0}.input: must be a list"),
    (_set(f"{ST}.input.0", "did:op:1"), f"{S0}.input[0]: must be an object"),
    (_set(f"{ST}.input.0.id", _DELETE), f"{S0}.input[0].id: required (the dataset DID)"),
    (_set(f"{ST}.input.0.id", 7), f"{S0}.input[0].id: required (the dataset DID)"),
    (_set(f"{ST}.input.1.index", -1), f"{S0}.input[1].index: must be a non-negative integer"),
    (_set(f"{ST}.input.1.index", "1"), f"{S0}.input[1].index: must be a non-negative integer"),
    (_set(f"{ST}.input.0.url", []), f"{S0}.input[0].url: must not be empty"),
    (_set(f"{ST}.input.0.url", ["https://ok.example/a", "file:///etc/passwd"]),
     f"{S0}.input[0].url[1]: must be an http(s) URL"),
    (_set(f"{ST}.input.0.url", [None]), f"{S0}.input[0].url[0]: must be an http(s) URL"),
    (_set(f"{ST}.input.1.url", "http://"), f"{S0}.input[1].url: must be an http(s) URL"),
    (_set(f"{ST}.input.1.url", {"u": "http://x"}), f"{S0}.input[1].url: must be an http(s) URL"),
    (_set(f"{ST}.input.1.url", _DELETE),
     f"{S0}.input[1]: exactly one of url or remote is required"),
    (_set(f"{ST}.input.1.remote", {"txId": "0x1", "serviceId": "s"}),
     f"{S0}.input[1]: exactly one of url or remote is required"),
    (_set(f"{ST}.compute.maxtime", 0),
     f"{S0}.compute.maxtime: must be a positive integer (seconds)"),
    (_set(f"{ST}.compute.maxtime", "30"),
     f"{S0}.compute.maxtime: must be a positive integer (seconds)"),
    (_set(f"{ST}.compute.maxtime", True),
     f"{S0}.compute.maxtime: must be a positive integer (seconds)"),
    (_set(f"{ST}.compute.maxtime", 2.5),
     f"{S0}.compute.maxtime: must be a positive integer (seconds)"),
    (_set(f"{ST}.compute", 30), f"{S0}.compute: must be an object"),
    (_set(f"{ST}.output", "ipfs"), f"{S0}.output: must be an object"),
    (_set(f"{ST}.output.metadataUri", "javascript:alert(1)"),
     f"{S0}.output.metadataUri: must be an http(s) URL"),
    (_set("spec.secret", 1234), "spec.secret: must be a string"),
    (_set("spec.stopRequested", "yes"), "spec.stopRequested: must be true or false"),
    (_set("metadata.name", _DELETE), "metadata.name: required"),
    (_set("metadata", "wf-1"), "metadata.name: required"),
]


@pytest.mark.parametrize("change, expected", FIELD_ERRORS, ids=[e for _, e in FIELD_ERRORS])
def test_error_names_the_field(change, expected):
    workflow = make_workflow()
    change(workflow)
    assert errors_of(workflow) == [expected]


def test_every_problem_is_listed_at_once():
    workflow = make_workflow()
    del stage_of(workflow)["algorithm"]["container"]["image"]
    stage_of(workflow)["input"][1]["url"] = "gopher://x"
    workflow["spec"]["secret"] = 5
    assert sorted(errors_of(workflow)) == sorted([
        "spec.secret: must be a string",
        f"{S0}.input[1].url: must be an http(s) URL",
        f"{S0}.algorithm.container.image: required",
    ])


def test_more_than_one_stage_is_refused(workflow):
    stages = workflow["spec"]["metadata"]["stages"]
    stages.append({**stages[0], "index": 1})
    assert errors_of(workflow) == ["spec.metadata.stages: only one stage is supported, got 2"]


@pytest.mark.parametrize("stages", [None, [], {}, "stage", 0])
def test_missing_or_empty_stages_are_refused(workflow, stages):
    workflow["spec"]["metadata"]["stages"] = stages
    assert errors_of(workflow) == ["spec.metadata.stages: required (a list with one stage)"]


@pytest.mark.parametrize("metadata", [None, [], "x"])
def test_spec_metadata_must_be_an_object(workflow, metadata):
    workflow["spec"]["metadata"] = metadata
    assert errors_of(workflow) == ["spec.metadata.stages: required (a list with one stage)"]


def test_stage_must_be_an_object(workflow):
    workflow["spec"]["metadata"]["stages"] = ["run it"]
    assert errors_of(workflow) == [f"{S0}: must be an object"]


@pytest.mark.parametrize("body", [None, [], "workflow", 5, b"{}", ["metadata", "spec"]])
def test_non_object_body_is_refused(body):
    assert errors_of(body) == ["workflow: must be an object"]


@pytest.mark.parametrize("spec", [None, [], "spec"])
def test_spec_is_required(workflow, spec):
    workflow["spec"] = spec
    assert errors_of(workflow) == ["spec: required"]


def test_missing_spec_and_name_are_both_reported():
    assert errors_of({"metadata": {}}) == ["metadata.name: required", "spec: required"]


@pytest.mark.parametrize("hostile_id", ["../x", "..", ".", "a/b", "/etc/passwd", "",
                                        "did:op:../../root", "did:op:x/.."])
def test_input_id_that_could_name_another_folder_is_refused(workflow, hostile_id):
    stage_of(workflow)["input"][0]["id"] = hostile_id
    (error,) = errors_of(workflow)
    assert error.startswith(f"{S0}.input[0].id: ")


@pytest.mark.parametrize("hostile_id", ["a\x00b", "did:op:..\\..\\x", "did op", "did:op:a\nb"])
def test_input_id_the_configure_pod_refuses_is_refused_by_validate(workflow, hostile_id):
    stage_of(workflow)["input"][0]["id"] = hostile_id
    (error,) = errors_of(workflow)
    assert error.startswith(f"{S0}.input[0].id: ")


def test_algorithm_id_that_could_name_another_folder_is_refused(workflow):
    stage_of(workflow)["algorithm"]["id"] = "../../etc"
    (error,) = errors_of(workflow)
    assert error.startswith(f"{S0}.algorithm.id: ")


def test_algorithm_without_any_source_is_refused(workflow):
    del stage_of(workflow)["algorithm"]["rawcode"]
    (error,) = errors_of(workflow)
    assert error.startswith(f"{S0}.algorithm")


def test_tag_with_whitespace_is_refused(workflow):
    stage_of(workflow)["algorithm"]["container"]["tag"] = "3.12\nimagePullPolicy: Never"
    assert errors_of(workflow) == [f"{S0}.algorithm.container.tag: must not contain spaces "
                                   "or quotes"]


# ---------------------------------------------------------------- names


@pytest.mark.parametrize("name", ["Upper", "-lead", "trail-", "has_underscore", "dot.ted",
                                  "sp ace", "", "a" * (wf.MAX_NAME_LENGTH + 1), "ünï"])
def test_invalid_workflow_name_is_refused(workflow, name):
    workflow["metadata"]["name"] = name
    (error,) = errors_of(workflow)
    assert error.startswith("metadata.name: must be a DNS-1123 label of at most "
                            f"{wf.MAX_NAME_LENGTH} characters")


def test_name_of_maximal_length_gives_valid_names_for_everything():
    name = "w" + "0" * (wf.MAX_NAME_LENGTH - 1)
    wf.validate(make_workflow(name=name))
    names = ObjectNames(name)
    derived = [names.configmap, names.secret, names.data_volume, names.adminlogs_volume,
               names.network_policy, *(names.job(stage) for stage in wf.STAGES)]
    label = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
    for value in derived:
        assert len(value) <= 63 and label.match(value), value


def test_object_names_follow_the_design():
    names = wf.names(make_workflow(name="job-42"))
    assert (names.configmap, names.secret) == ("job-42", "job-42")
    assert (names.data_volume, names.adminlogs_volume) == ("job-42-data", "job-42-adminlogs")
    assert names.network_policy == "job-42-algorithm"
    assert [names.job(s) for s in ("configure", "algorithm", "filter", "publish")] == [
        "job-42-configure", "job-42-algorithm", "job-42-filter", "job-42-publish"]


def test_unknown_stage_has_no_job_name():
    with pytest.raises(ValueError, match="unknown stage"):
        ObjectNames("wf").job("cleanup")


@pytest.mark.parametrize("name", ["wf", "a-configure", "x-algorithm", "y-filter-publish",
                                  "configure", "publish-algorithm"])
@pytest.mark.parametrize("stage", wf.STAGES)
def test_job_stage_inverts_job_names(name, stage):
    assert wf.job_stage(ObjectNames(name).job(stage)) == (name, stage)


@pytest.mark.parametrize("job_name", ["-configure", "-algorithm", "wf", "wf-configurex",
                                      "wf-Algorithm", "", "wf-cleanup", "wf_publish"])
def test_job_stage_ignores_foreign_names(job_name):
    assert wf.job_stage(job_name) is None


# ---------------------------------------------------------------- reading


def test_readers(workflow):
    assert wf.name(workflow) == "wf-1"
    assert wf.namespace(workflow) == "c2d"
    assert wf.key(workflow) == "c2d/wf-1"
    assert wf.input_dids(workflow) == ["did:op:aaa111", "did:op:bbb222"]
    assert wf.algorithm_did(workflow) == "did:op:algo333"
    assert wf.secret(workflow) == "s3cr3t-value"
    assert wf.stop_requested(workflow) is False
    workflow["spec"]["stopRequested"] = True
    assert wf.stop_requested(workflow) is True


def test_namespace_defaults(workflow):
    del workflow["metadata"]["namespace"]
    assert wf.key(workflow) == "default/wf-1"


def test_pod_document_carries_the_stage_but_not_the_secret(workflow):
    document = wf.pod_document(workflow)
    assert document == {"jobId": "wf-1", "namespace": "c2d", "chainId": 8996,
                        "stages": workflow["spec"]["metadata"]["stages"]}
    assert "s3cr3t-value" not in repr(document)


@pytest.mark.parametrize("maxtime, limit, expected", [
    (30, 60, 30), (120, 60, 60), (60, 60, 60), (None, 45, 45), (1, 3600, 1)])
def test_max_duration_is_the_smaller_of_maxtime_and_max_job_duration(maxtime, limit, expected):
    workflow = make_workflow()
    if maxtime is None:
        del stage_of(workflow)["compute"]["maxtime"]
    else:
        stage_of(workflow)["compute"]["maxtime"] = maxtime
    assert wf.max_duration(workflow, limit) == expected


def test_max_duration_without_compute():
    workflow = make_workflow()
    del stage_of(workflow)["compute"]
    assert wf.max_duration(workflow, 77) == 77


DIGEST = "sha256:" + "0123456789abcdef" * 4


@pytest.mark.parametrize("container, expected", [
    ({"image": "python", "tag": "3.12", "checksum": DIGEST}, f"python@{DIGEST}"),
    ({"image": "ghcr.io/org/algo", "checksum": DIGEST}, f"ghcr.io/org/algo@{DIGEST}"),
    ({"image": "python", "tag": "3.12", "checksum": ""}, "python:3.12"),
    ({"image": "python", "tag": "3.12"}, "python:3.12"),
    ({"image": "python", "tag": "3.12", "checksum": "md5:abcdef"}, "python:3.12"),
    ({"image": "python", "tag": "3.12", "checksum": DIGEST[:-1]}, "python:3.12"),
    ({"image": "python", "tag": "3.12", "checksum": DIGEST + "\n"}, "python:3.12"),
    ({"image": "python", "tag": "3.12", "checksum": "sha256:" + "Z" * 64}, "python:3.12"),
    ({"image": "python", "tag": ""}, "python:latest"),
    ({"image": "python"}, "python:latest"),
])
def test_algorithm_image_pins_sha256_digests(container, expected):
    workflow = make_workflow()
    stage_of(workflow)["algorithm"]["container"] = {**container, "entrypoint": "run"}
    assert wf.algorithm_image(workflow) == expected


# ---------------------------------------------------------------- status table and transitions

DESIGN_TABLE = {
    1: "Warming up", 10: "Job started", 20: "Configuring volumes", 21: "Volume creation failed",
    30: "Provisioning success", 31: "Data provisioning failed",
    32: "Algorithm provisioning failed", 40: "Running algorithm", 41: "Algorithm failed",
    50: "Filtering results", 60: "Publishing results", 62: "Results upload failed",
    70: "Job finished",
}


def test_status_table_is_the_designs():
    assert wf.STATUS_TEXT == DESIGN_TABLE
    assert set(wf.TRANSITIONS) == {0, *DESIGN_TABLE}


# The happy path, the failure paths that still publish logs, and stops.
ALLOWED = [
    (0, 1), (1, 10), (10, 20), (20, 30), (30, 40), (40, 50), (50, 60), (60, 70),
    (40, 60), (0, 10), (1, 20), (1, 70), (10, 21), (21, 70),
    (20, 31), (20, 32), (31, 60), (32, 60), (31, 70), (40, 41), (41, 60), (41, 50), (60, 62),
    (30, 60), (40, 70),
]
FORBIDDEN = [
    (70, 1), (70, 10), (70, 40), (70, 60), (62, 70), (62, 60), (40, 30), (40, 20), (30, 20),
    (60, 40), (60, 50), (50, 40), (21, 30), (21, 40), (0, 40), (0, 30), (1, 40), (10, 40),
    (20, 40), (31, 40), (32, 40), (41, 40), (0, 99), (40, 99),
]


@pytest.mark.parametrize("old, new", ALLOWED)
def test_allowed_transition(old, new):
    current = {"statusCode": old} if old else {}
    moved = wf.transition(current, new)
    assert moved["statusCode"] == new
    assert moved["statusText"] == DESIGN_TABLE[new]


@pytest.mark.parametrize("old, new", FORBIDDEN)
def test_forbidden_transition(old, new):
    current = {"statusCode": old, "statusText": DESIGN_TABLE.get(old, "")}
    with pytest.raises(InvalidTransition) as caught:
        wf.transition(current, new)
    assert f"status {old}" in str(caught.value) and f"to {new}" in str(caught.value)


def test_codes_only_move_forward():
    for old, targets in wf.TRANSITIONS.items():
        assert all(new > old for new in targets), old


def test_same_code_again_is_an_idempotent_retry():
    current = {"statusCode": 40, "statusText": "Running algorithm", "phase": "Running",
               "dateStarted": "2025-01-01T00:00:00Z"}
    assert wf.transition(current, 40) == current


def test_transition_merges_fields_and_does_not_touch_the_input():
    current = {"statusCode": 20, "statusText": "Configuring volumes", "phase": "Running",
               "message": "old"}
    snapshot = dict(current)
    moved = wf.transition(current, 31, message="input 0: 404", dateFinished=None)
    assert current == snapshot
    assert moved == {"statusCode": 31, "statusText": "Data provisioning failed",
                     "phase": "Running", "message": "input 0: 404"}


def test_phase_follows_the_code_unless_given():
    assert wf.transition({}, 1)["phase"] == "Queued"
    assert wf.transition({"statusCode": 1, "phase": "Queued"}, 10)["phase"] == "Running"
    done = wf.transition({"statusCode": 60, "phase": "Running"}, 70, phase="Succeeded")
    assert done["phase"] == "Succeeded"


def test_final_phase_is_kept():
    stopped = {"statusCode": 40, "phase": "Stopped", "stopReason": "StopRequested"}
    moved = wf.transition(stopped, 60)
    assert moved["phase"] == "Stopped" and moved["stopReason"] == "StopRequested"


def test_is_final():
    for phase in ("Succeeded", "Failed", "Stopped"):
        assert wf.is_final({"status": {"phase": phase}})
    for status in ({"phase": "Running"}, {"phase": "Queued"}, {}, None):
        assert not wf.is_final({"status": status})
    assert wf.status_code({"status": None}) == 0
    assert wf.status_code({"status": {"statusCode": 40}}) == 40


def test_set_condition_keeps_its_time_while_the_status_holds():
    first = wf.set_condition({}, "Configured", False, "Running", "pod started")
    (condition,) = first["conditions"]
    assert condition["status"] == "False" and condition["reason"] == "Running"
    aged = {"conditions": [{**condition, "lastTransitionTime": "2020-01-01T00:00:00Z"}]}
    same = wf.set_condition(aged, "Configured", False, "StillRunning")
    assert same["conditions"][0]["lastTransitionTime"] == "2020-01-01T00:00:00Z"
    assert same["conditions"][0]["reason"] == "StillRunning"
    flipped = wf.set_condition(aged, "Configured", True, "Succeeded")
    assert flipped["conditions"][0]["lastTransitionTime"] != "2020-01-01T00:00:00Z"
    assert aged["conditions"][0]["status"] == "False"  # input untouched
    both = wf.set_condition(flipped, "AlgorithmRan", True, "Succeeded")
    assert [c["type"] for c in both["conditions"]] == ["Configured", "AlgorithmRan"]


def test_now_is_rfc3339_and_parses_back():
    stamp = wf.now()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", stamp)
    assert abs(wf.parse_time(stamp) - datetime.now(UTC)) < timedelta(seconds=5)
