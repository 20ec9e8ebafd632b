"""Routing: every route of DESIGN section 5 has exactly one Trigger, and nothing else routes.

Events shaped as the real sources send them are matched against the Triggers
of knative/triggers.yaml with the embedded Broker's own filter evaluator
(devstack/eventing/filters.py), so production and the embedded stack agree.
"""

from __future__ import annotations

import pytest

from devstack.eventing.delivery import parse_duration
from devstack.eventing.filters import compile_trigger_filter

from .manifests import FUNCTIONS, KNATIVE, documents, find, load_yaml

DOCS = documents()
TRIGGERS = {d.name: d.obj for d in DOCS if d.kind == "Trigger"}
NAMESPACE = "c2d"
C2D = "com.oceanprotocol.c2d."
API = "dev.knative.apiserver.resource."


def resource_event(action: str, kind: str, name: str) -> dict[str, str]:
    """Attributes of an ApiServerSource event in Resource mode (FACTS: ApiServerSource)."""
    api_version, plural = {"Workflow": ("oceanprotocol.com/v1alpha1", "workflows"),
                           "Job": ("batch/v1", "jobs")}[kind]
    return {"specversion": "1.0", "id": "f5b0d0a2-1", "source": "https://10.96.0.1:443",
            "type": API + action, "datacontenttype": "application/json",
            "subject": f"/apis/{api_version}/namespaces/{NAMESPACE}/{plural}/{name}",
            "kind": kind, "name": name, "namespace": NAMESPACE, "apiversion": api_version}


def c2d_event(what: str, workflow: str = "wf-1") -> dict[str, str]:
    return {"specversion": "1.0", "id": "1", "source": "/c2d/test", "type": C2D + what,
            "subject": workflow, "c2dworkflow": f"{NAMESPACE}/{workflow}"}


PING = {"specversion": "1.0", "id": "2", "type": "dev.knative.sources.ping",
        "source": f"/apis/v1/namespaces/{NAMESPACE}/pingsources/c2d-resync"}

# (event, the functions it must reach): DESIGN section 5, plus what must reach nobody.
ROUTES = {
    "workflow added": (resource_event("add", "Workflow", "wf-1"), {"configure"}),
    "workflow updated": (resource_event("update", "Workflow", "wf-1"), {"algorithm"}),
    "configure job updated": (resource_event("update", "Job", "wf-1-configure"), {"configure"}),
    "algorithm job updated": (resource_event("update", "Job", "wf-1-algorithm"), {"algorithm"}),
    "filter job updated": (resource_event("update", "Job", "wf-1-filter"), {"publish"}),
    "publish job updated": (resource_event("update", "Job", "wf-1-publish"), {"publish"}),
    "workflow started": (c2d_event("workflow.started"), {"notify"}),
    "configure succeeded": (c2d_event("configure.succeeded"), {"algorithm"}),
    "configure failed": (c2d_event("configure.failed"), {"publish"}),
    "algorithm finished": (c2d_event("algorithm.finished"), {"publish"}),
    "workflow finished": (c2d_event("workflow.finished"), {"notify", "configure"}),
    "resync tick": (PING, set(FUNCTIONS)),
    # Names that look like another stage's: only the Job's last suffix counts.
    "workflow named like a job": (resource_event("update", "Workflow", "x-configure"),
                                  {"algorithm"}),
    "algorithm job of a workflow named x-configure":
        (resource_event("update", "Job", "x-configure-algorithm"), {"algorithm"}),
    # Nobody listens to these.
    "workflow deleted": (resource_event("delete", "Workflow", "wf-1"), set()),
    "job added": (resource_event("add", "Job", "wf-1-configure"), set()),
    "job deleted": (resource_event("delete", "Job", "wf-1-publish"), set()),
    "job of another stage": (resource_event("update", "Job", "wf-1-other"), set()),
    "unknown c2d event": (c2d_event("workflow.exploded"), set()),
}


def subscriber(trigger: dict) -> str:
    return trigger["spec"]["subscriber"]["ref"]["name"].removeprefix("c2d-")


def matching(attributes: dict[str, str]) -> list[str]:
    return sorted(name for name, trigger in TRIGGERS.items()
                  if compile_trigger_filter(trigger["spec"])(attributes))


@pytest.mark.parametrize("route", ROUTES, ids=list(ROUTES))
def test_event_reaches_exactly_its_functions_once(route: str):
    attributes, functions = ROUTES[route]
    names = matching(attributes)
    reached = [subscriber(TRIGGERS[name]) for name in names]
    assert sorted(reached) == sorted(functions), f"{route}: matched by {names}"


def test_every_trigger_serves_a_route():
    used = {name for attributes, _ in ROUTES.values() for name in matching(attributes)}
    assert set(TRIGGERS) - used == set(), "a Trigger no route of DESIGN section 5 needs"


def test_trigger_names_are_the_agreed_ones():
    assert set(TRIGGERS) == {
        "c2d-configure-workflow-add", "c2d-configure-job", "c2d-configure-workflow-finished",
        "c2d-algorithm-configure-succeeded", "c2d-algorithm-workflow-update", "c2d-algorithm-job",
        "c2d-publish-algorithm-finished", "c2d-publish-configure-failed", "c2d-publish-job",
        "c2d-notify-workflow-started", "c2d-notify-workflow-finished",
        *(f"c2d-{fn}-resync" for fn in FUNCTIONS)}
    for name, trigger in TRIGGERS.items():
        assert name.startswith(f"c2d-{subscriber(trigger)}-"), name


@pytest.mark.parametrize("name", sorted(TRIGGERS))
def test_trigger_uses_filters_dialect_and_our_broker(name: str):
    spec = TRIGGERS[name]["spec"]
    assert spec["broker"] == "c2d"
    assert "filter" not in spec, "use `filters` (Knative >= 1.15), not `filter.attributes`"
    assert spec["filters"], "an empty filter would send every event"
    ref = spec["subscriber"]["ref"]
    assert (ref["apiVersion"], ref["kind"]) == ("serving.knative.dev/v1", "Service")
    find(DOCS, "Service", ref["name"])


@pytest.mark.parametrize("name", sorted(TRIGGERS))
def test_trigger_delivery_retries_with_backoff_then_dead_letters(name: str):
    delivery = TRIGGERS[name]["spec"]["delivery"]
    assert isinstance(delivery["retry"], int) and delivery["retry"] >= 3
    assert delivery["backoffPolicy"] == "exponential"
    delay = parse_duration(delivery["backoffDelay"], f"{name}: backoffDelay")
    # The whole retry schedule stays under a minute: the resync tick covers the rest.
    assert 0 < sum(delay * 2**n for n in range(delivery["retry"])) < 60
    sink = delivery["deadLetterSink"]
    find(DOCS, sink["ref"]["kind"], sink["ref"]["name"])
    assert sink["uri"].startswith("/")


def test_broker_exists_with_default_delivery():
    broker = find(DOCS, "Broker", "c2d")
    assert broker["spec"]["delivery"]["deadLetterSink"]


def test_sources_watch_exactly_our_objects_and_feed_the_broker():
    crd = load_yaml(KNATIVE / "crd.yaml")[0]
    served = {f"{crd['spec']['group']}/{v['name']}" for v in crd["spec"]["versions"]
              if v["served"]}
    workflows = find(DOCS, "ApiServerSource", "c2d-workflows")["spec"]
    jobs = find(DOCS, "ApiServerSource", "c2d-jobs")["spec"]
    for spec in (workflows, jobs):
        assert spec["mode"] == "Resource", "handlers need the whole object in `data`"
        assert spec["sink"]["ref"] == {"apiVersion": "eventing.knative.dev/v1",
                                       "kind": "Broker", "name": "c2d"}
        find(DOCS, "ServiceAccount", spec["serviceAccountName"])
    [watched] = workflows["resources"]
    assert watched["kind"] == crd["spec"]["names"]["kind"] and watched["apiVersion"] in served
    assert jobs["resources"] == [{"apiVersion": "batch/v1", "kind": "Job", "selector": {
        "matchLabels": {"app.kubernetes.io/managed-by": "c2d"}}}]
    ping = find(DOCS, "PingSource", "c2d-resync")["spec"]
    assert ping["sink"]["ref"]["name"] == "c2d"
    assert len(ping["schedule"].split()) == 5
