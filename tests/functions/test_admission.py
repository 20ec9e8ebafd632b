"""maxJobs holds with two configure instances admitting concurrently; all finish."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from devstack.cluster import EmbeddedCluster
from functions.configure import admission
from shared import settings
from shared import workflow as wf
from shared.kube import Kube
from tests.functions.conftest import environment
from tests.functions.harness import Functions, Relay, finished, resource_event

ADMITTED = range(wf.CONFIGURING, wf.FINISHED)  # 20..62: holding a slot


def test_max_jobs_two_instances(cluster: EmbeddedCluster, kube: Kube, make_workflow, receiver,
                                tmp_path):
    config = settings.load(environment(tmp_path, receiver, maxJobs="2",
                                       C2D_NAMESPACE="default"))
    first = Functions(str(cluster.kubeconfig), config)
    second = Functions(str(cluster.kubeconfig), config, stages=["configure"])
    relays = [Relay(first.urls), Relay({**first.urls, "configure": second.urls["configure"]})]
    peak, stop = [0], threading.Event()
    names: list[str] = []

    def watch_peak() -> None:  # sample the cluster: never more than 2 running
        while not stop.is_set():
            running = [w for w in kube.list("Workflow", "default")
                       if wf.name(w) in names and wf.status_code(w) in ADMITTED
                       and not wf.is_final(w)]
            slots = admission.admitted(kube.get("ConfigMap", "default", admission.NAME) or {})
            peak[0] = max(peak[0], len(running), len(slots))
            time.sleep(0.01)

    sampler = threading.Thread(target=watch_peak, daemon=True)
    try:
        created = [make_workflow() for _ in range(10)]
        names.extend(wf.name(w) for w in created)
        sampler.start()
        with ThreadPoolExecutor(10) as pool:  # all ten adds at once, split over both
            list(pool.map(lambda i: relays[i % 2].send(resource_event("add", created[i])),
                          range(10)))
        deadline = time.monotonic() + 240
        delivered: set[str] = set()
        while not all(wf.is_final(kube.get("Workflow", "default", n)) for n in names):
            assert time.monotonic() < deadline, "not all ten finished"
            for i, name in enumerate(names):
                for stage in wf.STAGES:
                    job = kube.get("Job", "default", f"{name}-{stage}")
                    if job and finished(job) and job["metadata"]["uid"] not in delivered:
                        delivered.add(job["metadata"]["uid"])
                        relays[i % 2].send(resource_event("update", job))
            time.sleep(0.05)
    finally:
        stop.set()
        first.close()
        second.close()
    assert peak[0] <= 2, f"{peak[0]} workflows were admitted at once"
    assert peak[0] == 2, "never ran two at once: admission is too strict"
    statuses = [kube.get("Workflow", "default", n)["status"] for n in names]
    assert all(s["phase"] == "Succeeded" for s in statuses), statuses
    assert any(s.get("dateCreated") != s.get("dateStarted") for s in statuses)
