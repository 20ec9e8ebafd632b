"""A workflow through the four real functions, event by event, binary and structured."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
import urllib3
from kubernetes import client, watch

from devstack.cluster import EmbeddedCluster
from devstack.testing import wait_until
from shared import events, signing
from shared import workflow as wf
from shared.kube import Kube
from tests.functions.conftest import OPERATOR_KEY
from tests.functions.harness import Relay, drive

OPERATOR_ADDRESS = "0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"


class StatusRecorder:
    """Every status code a Workflow passes through, from a watch on the API."""

    def __init__(self, cluster: EmbeddedCluster, created: dict):
        """Watches from `created`'s resourceVersion: however late the watch connects,
        it misses no later change."""
        self.codes: list[int] = []
        self._stop = threading.Event()
        self._watch = watch.Watch()
        api = client.CustomObjectsApi(cluster.api_client())

        def run() -> None:
            stream = self._watch.stream(api.list_namespaced_custom_object, wf.GROUP, wf.VERSION,
                                        "default", wf.PLURAL, timeout_seconds=120,
                                        field_selector=f"metadata.name={wf.name(created)}",
                                        resource_version=created["metadata"]["resourceVersion"])
            try:
                for item in stream:
                    code = (item["object"].get("status") or {}).get("statusCode")
                    if code and (not self.codes or self.codes[-1] != code):
                        self.codes.append(code)
            except urllib3.exceptions.ProtocolError:
                if not self._stop.is_set():
                    raise

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self) -> list[int]:
        self._stop.set()
        self._watch.stop()
        return self.codes


@pytest.mark.parametrize("structured", [False, True], ids=["binary", "structured"])
def test_happy_path(structured, relay: Relay, kube: Kube, cluster: EmbeddedCluster,
                    make_workflow, receiver):
    relay.structured = structured
    created = make_workflow()
    name = wf.name(created)
    recorder = StatusRecorder(cluster, created)

    final = drive(relay, kube, created)
    # drive() read the final status; the watch may deliver it a moment later.
    wait_until(lambda: recorder.codes[-1:] == [70], 10, what="the watch to see status 70")
    codes = recorder.stop()

    status = final["status"]
    assert status["phase"] == "Succeeded", status
    assert status["statusCode"] == 70 and status["statusText"] == "Job finished"
    assert [c for c in codes if c in (20, 30, 40, 60, 70)] == [20, 30, 40, 60, 70], codes
    assert status["dateStarted"] <= status["dateFinished"]

    # the Jobs ran in order: each stage's event came from the previous Job's end
    order = [d.reply.get_type() for d in relay.log if d.reply]
    assert order.index(events.WORKFLOW_STARTED) < order.index(events.CONFIGURE_SUCCEEDED) \
        < order.index(events.ALGORITHM_FINISHED) < order.index(events.WORKFLOW_FINISHED)

    # results: the output, the algorithm log and the admin logs, with readable files
    by_type = {r["type"]: r for r in status["results"]}
    assert {"output", "algorithmLog", "configurationLog", "publishLog"} <= set(by_type)
    output = next(r for r in status["results"] if r["filename"].endswith("count.txt"))
    assert Path(output["url"].removeprefix("file://")).read_text() == "3"

    # one start and one stop notification, signed by the operator
    for path in ("/start", "/stop"):
        sent = receiver.for_job(name, path)
        assert len(sent) == 1, (path, sent)
        payload = sent[0]
        assert payload["DID"] == ["did:op:dataset1"] and payload["algoDID"] == "did:op:algo1"
        assert payload["secret"] == "job-secret"
        message = signing.notification_message(payload)
        assert signing.recover_signer(message, payload["signature"]) == OPERATOR_ADDRESS
    assert set(final["status"]["notifications"]) == {"start", "stop"}

    # cleanup: nothing but the Workflow is left
    for kind in ("Job", "PersistentVolumeClaim", "ConfigMap", "Secret"):
        assert not kube.list(kind, "default", f"c2d.oceanprotocol.com/workflow={name}"), kind


def test_operator_address_matches_key():
    from eth_account import Account

    assert Account.from_key(OPERATOR_KEY).address == OPERATOR_ADDRESS
