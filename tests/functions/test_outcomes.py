"""Each way a workflow can end: codes, phase, stopReason, message, and logs still published."""

from __future__ import annotations

import json
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

from devstack.testing import wait_until
from shared import events
from shared import workflow as wf
from shared.kube import Kube
from tests.functions.harness import Relay, drive, finished_job, resource_event


def result_types(final: dict) -> set[str]:
    return {r["type"] for r in final["status"].get("results") or []}


def test_data_provisioning_failure(relay: Relay, kube: Kube, make_workflow):
    final = drive(relay, kube, make_workflow(url="http://127.0.0.1:9/unreachable.csv"))
    status = final["status"]
    assert status["phase"] == "Failed" and status["statusCode"] == 70
    assert "Data provisioning failed" in status["message"]
    assert "did:op:dataset1" in status["message"] or "input" in status["message"]
    assert "configurationLog" in result_types(final)  # logs are still published
    assert relay.replies(events.CONFIGURE_FAILED)
    assert not relay.replies(events.ALGORITHM_FINISHED)  # the algorithm never ran


def test_algorithm_provisioning_failure(relay: Relay, kube: Kube, make_workflow, datasets):
    stage_algorithm = {"id": "did:op:algo1", "url": f"{datasets}/missing-algorithm.py",
                       "container": {"image": "python", "tag": "3.11",
                                     "entrypoint": "python $ALGO"}}
    created = make_workflow(algorithm=stage_algorithm)
    final = drive(relay, kube, created)
    status = final["status"]
    assert status["phase"] == "Failed"
    assert "Algorithm provisioning failed" in status["message"], status["message"]
    assert wf.condition(status, "Configured")["status"] == "False"


def test_algorithm_crash(relay: Relay, kube: Kube, make_workflow):
    final = drive(relay, kube, make_workflow(rawcode="import sys\nprint('boom')\nsys.exit(3)\n"))
    status = final["status"]
    assert status["phase"] == "Failed" and status["statusCode"] == 70
    assert "exited with code 3" in status["message"], status["message"]
    assert wf.algorithm_outcome(status) == "failed"
    assert "algorithmLog" in result_types(final)
    log = next(r for r in status["results"] if r["type"] == "algorithmLog")
    assert "boom" in open(log["url"].removeprefix("file://")).read()


def test_deadline_stops_with_timeout(relay: Relay, kube: Kube, make_workflow):
    created = make_workflow(rawcode="import time\nprint('sleeping')\ntime.sleep(60)\n",
                            maxtime=2)
    started = time.monotonic()
    final = drive(relay, kube, created)
    assert time.monotonic() - started < 30
    status = final["status"]
    assert status["phase"] == "Stopped" and status["stopReason"] == "Timeout"
    assert status["statusCode"] == 70 and "maximum duration" in status["message"]
    assert "algorithmLog" in result_types(final)


def test_stop_request_while_running(relay: Relay, kube: Kube, make_workflow):
    created = make_workflow(rawcode="import time\nprint('working', flush=True)\n"
                                    "time.sleep(60)\n")
    name = wf.name(created)
    relay.send(resource_event("add", created))
    configure_job = finished_job(kube, "default", f"{name}-configure")
    relay.send(resource_event("update", configure_job))
    wait_until(lambda: kube.list("Pod", "default", f"job-name={name}-algorithm"), 30,
             what="algorithm pod")
    stopped = kube.update("Workflow", "default", name,
                          lambda w: {**w, "spec": {**w["spec"], "stopRequested": True}})
    started = time.monotonic()
    relay.send(resource_event("update", stopped))
    final = drive(relay, kube, stopped)  # the add is a duplicate now; publish follows
    assert time.monotonic() - started < 30
    status = final["status"]
    assert status["phase"] == "Stopped" and status["stopReason"] == "StopRequested"
    assert wf.algorithm_outcome(status) == "stopped"
    assert "configurationLog" in result_types(final)
    wait_until(lambda: kube.get("Job", "default", f"{name}-algorithm") is None, 30,
             what="the stopped algorithm Job to be gone")


def test_stop_before_the_algorithm_skips_it(relay: Relay, kube: Kube, make_workflow):
    created = make_workflow()
    name = wf.name(created)
    relay.send(resource_event("add", created))  # configuring now
    stopped = kube.update("Workflow", "default", name,
                          lambda w: {**w, "spec": {**w["spec"], "stopRequested": True}})
    relay.send(resource_event("update", stopped))
    final = drive(relay, kube, stopped)
    status = final["status"]
    assert status["phase"] == "Stopped" and status["stopReason"] == "StopRequested"
    assert kube.list("Pod", "default", f"job-name={name}-algorithm") == []
    [finished] = relay.replies(events.ALGORITHM_FINISHED)
    assert finished.get_data()["outcome"] == "stopped"


MANY_LONG_OUTPUTS = (
    "import os, pathlib\n"
    "folder = pathlib.Path(os.environ['OUTPUTS'], *['d' * 200] * 3)\n"
    "folder.mkdir(parents=True)\n"
    "for i in range(2500):\n"
    "    (folder / f'{i:04d}').write_text('x')\n"
)


def test_many_outputs_with_long_names_still_finish(relay: Relay, kube: Kube, make_workflow):
    """2,500 results of ~1.3 KB each would make a 3 MB status, which the API refuses: the
    status lists what fits, counts them all, and points at the manifest that lists them."""
    final = drive(relay, kube, make_workflow(rawcode=MANY_LONG_OUTPUTS), timeout=240)
    status = final["status"]
    assert status["statusCode"] == 70 and status["phase"] == "Succeeded"
    assert status["resultsCount"] == 2500 + 3  # the outputs, the algorithm, configure, publish logs
    assert {"algorithmLog", "configurationLog", "publishLog"} <= result_types(final)
    assert 50 < len(status["results"]) < 2500
    manifest = status["resultsManifest"]
    published = next(c for c in status["conditions"] if c["type"] == "Published")
    assert manifest in published["message"]
    assert manifest.startswith("file://") and manifest.endswith("/results.json")
    listed = json.loads(Path(unquote(urlsplit(manifest).path)).read_text())["results"]
    assert len(listed) == status["resultsCount"]
