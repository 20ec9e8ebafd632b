"""shared.app.Stage against a real API server: the workflows oldest first; a running Job's
event costs no API call."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from devstack.apiserver import APIServer
from devstack.kubeconfig import write_kubeconfig
from shared import workflow as wf
from shared.app import Stage
from shared.connection import connect
from shared.kube import Kube, NotPermitted
from tests.functions.harness import resource_event

from .helpers import CRD_FILE, create_workflow, load_settings

NAMESPACE = "default"


@pytest.fixture(scope="module")
def stage(tmp_path_factory) -> Iterator[Stage]:
    """A configure Stage on a fresh API server."""
    folder = tmp_path_factory.mktemp("api")
    server = APIServer(crd_files=[CRD_FILE], log_dir=folder)
    url = server.start()
    try:
        config = write_kubeconfig(url, folder / "kubeconfig")
        settings = load_settings({"C2D_NAMESPACE": NAMESPACE})
        yield Stage("configure", settings, Kube(connect(str(config))), logging.getLogger("test"))
    finally:
        server.stop()


def test_workflows_oldest_first(stage: Stage):
    for name in ("b", "a", "c"):  # within a second, by name
        create_workflow(stage.kube, name, NAMESPACE)

    assert [wf.name(w) for w in stage.workflows()] == ["a", "b", "c"]


def test_a_running_jobs_event_is_dropped_without_calling_the_api(stage: Stage):
    no_calls = Stage("configure", stage.settings, Kube(stage.kube.connection, permissions=set()),
                     stage.log)
    job = {"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": "wf-1-configure", "namespace": NAMESPACE},
           "status": {"active": 1}}
    assert no_calls.job_event(resource_event("update", job)) is None

    job["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
    with pytest.raises(NotPermitted):  # a finished one does read its Workflow
        no_calls.job_event(resource_event("update", job))
