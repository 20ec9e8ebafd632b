"""shared.app.Stage against a real API server: queued workflows listed by phase on clusters
with and without the CRD's selectableFields; a running Job's event costs no API call."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from devstack.apiserver import APIServer
from devstack.kubeconfig import write_kubeconfig
from shared import workflow as wf
from shared.app import Stage
from shared.connection import connect
from shared.kube import Kube, KubeError, NotPermitted
from tests.functions.harness import resource_event

from .helpers import CRD_FILE, create_workflow, load_settings

NAMESPACE = "default"


def crd_without_selectable_fields(folder: Path) -> Path:
    """The CRD as a cluster older than 1.31 keeps it (the field dropped)."""
    crd = yaml.safe_load(CRD_FILE.read_text())
    for version in crd["spec"]["versions"]:
        version.pop("selectableFields")
    path = folder / "crd-1.30.yaml"
    path.write_text(yaml.safe_dump(crd))
    return path


@pytest.fixture(scope="module", params=["selectable", "older cluster"])
def cluster(request, tmp_path_factory) -> Iterator[tuple[Stage, bool]]:
    """A configure Stage on a fresh API server, and whether its CRD has selectableFields."""
    folder = tmp_path_factory.mktemp("api")
    crd = CRD_FILE if request.param == "selectable" else crd_without_selectable_fields(folder)
    server = APIServer(crd_files=[crd], log_dir=folder)
    url = server.start()
    try:
        config = write_kubeconfig(url, folder / "kubeconfig")
        settings = load_settings({"C2D_NAMESPACE": NAMESPACE})
        yield (Stage("configure", settings, Kube(connect(str(config))),
                     logging.getLogger("test")), request.param == "selectable")
    finally:
        server.stop()


def test_workflows_in_a_phase_oldest_first(cluster: tuple[Stage, bool]):
    stage, selectable = cluster
    for name, code in (("b-queued", wf.QUEUED), ("a-running", wf.STARTED),
                       ("c-queued", wf.QUEUED), ("d-new", None)):
        created = create_workflow(stage.kube, name, NAMESPACE)
        if code is not None:
            stage.update_status(created, lambda w, c=code: wf.transition(wf.status(w), c))

    assert [wf.name(w) for w in stage.workflows(wf.QUEUED_PHASE)] == ["b-queued", "c-queued"]
    assert len(stage.workflows()) == 4
    if not selectable:
        with pytest.raises(KubeError) as refused:  # what made workflows() filter by itself
            stage.kube.list("Workflow", NAMESPACE, field_selector="status.phase=Queued")
        assert refused.value.status == 400


def test_a_running_jobs_event_is_dropped_without_calling_the_api(cluster: tuple[Stage, bool]):
    stage = cluster[0]
    no_calls = Stage("configure", stage.settings, Kube(stage.kube.connection, permissions=set()),
                     stage.log)
    job = {"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": "wf-1-configure", "namespace": NAMESPACE},
           "status": {"active": 1}}
    assert no_calls.job_event(resource_event("update", job)) is None

    job["status"] = {"conditions": [{"type": "Complete", "status": "True"}]}
    with pytest.raises(NotPermitted):  # a finished one does read its Workflow
        no_calls.job_event(resource_event("update", job))
