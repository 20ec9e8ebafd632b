"""The API server's audit log: one audit.k8s.io/v1 Event per completed write, none for
reads, with microsecond instants from the request's arrival to its answer."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from kubernetes import client

from devstack.apiserver import audit
from devstack.apiserver.process import APIServerProcess

from .conftest import WORKFLOW_CRD


def events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_writes_are_audited_with_their_object_and_instants(tmp_path: Path) -> None:
    log = tmp_path / "audit.log"
    server = APIServerProcess(crd_files=[WORKFLOW_CRD], audit_log=log)
    url = server.start()
    try:
        configuration = client.Configuration(host=url)
        core = client.CoreV1Api(client.ApiClient(configuration))
        body = {"metadata": {"generateName": "cm-", "namespace": "default"}, "data": {"a": "1"}}
        before = time.time()
        made = core.create_namespaced_config_map("default", body)
        after = time.time()
        name = made.metadata.name
        core.read_namespaced_config_map(name, "default")
        core.list_namespaced_config_map("default")
        core.patch_namespaced_config_map(name, "default", {"data": {"a": "2"}})
        core.delete_namespaced_config_map(name, "default")
        with pytest.raises(client.ApiException) as missing:
            core.read_namespaced_config_map(name, "default")
        assert missing.value.status == 404
        with pytest.raises(client.ApiException) as invalid:
            core.create_namespaced_config_map("default", {"metadata": {"name": "bad name"}})
        assert invalid.value.status == 422
    finally:
        server.stop()

    written = events(log)
    assert [(e["verb"], e["responseStatus"]["code"]) for e in written] == [
        ("create", 201), ("patch", 200), ("delete", 200), ("create", 422)]
    first = written[0]
    assert first["kind"] == "Event" and first["apiVersion"] == "audit.k8s.io/v1"
    assert first["stage"] == "ResponseComplete" and first["level"] == "Metadata"
    assert first["objectRef"] == {"resource": "configmaps", "namespace": "default",
                                  "name": name, "apiVersion": "v1"}
    received = audit.parse_micro_time(first["requestReceivedTimestamp"])
    completed = audit.parse_micro_time(first["stageTimestamp"])
    # Stamped once the answer is written: the client may read it a moment before that.
    assert before <= received <= completed < after + 1.0
    assert audit.created(log, "configmaps", "default") == {name: completed}


def test_micro_time_round_trips() -> None:
    instant = 1764572400.123456
    assert audit.micro_time(instant) == "2025-12-01T07:00:00.123456Z"
    assert abs(audit.parse_micro_time(audit.micro_time(instant)) - instant) < 1e-6

