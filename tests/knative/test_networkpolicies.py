"""NetworkPolicies, evaluated against the pods the engine really creates.

Each stage's Job is built with the engine's own builders (shared/manifests.py);
the static policies of knative/networkpolicies.yaml and, for the algorithm, the
per-workflow policy the algorithm function creates, are matched against the
Job's pod labels as Kubernetes would.
"""

from __future__ import annotations

from typing import Any

import pytest

from shared import manifests, settings
from shared import workflow as wf
from tests.unit.helpers import make_workflow

from .manifests import FUNCTIONS, KNATIVE, documents, load_yaml

POLICIES = [d.obj for d in documents() if d.kind == "NetworkPolicy"]
METADATA = "169.254.169.254/32"
KNATIVE_NAMESPACES = {"knative-eventing", "knative-serving"}


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A LabelSelector as the API server evaluates it."""
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get(
            "values", [])
        present = key in labels
        ok = {"In": present and labels.get(key) in values,
              "NotIn": not present or labels[key] not in values,
              "Exists": present, "DoesNotExist": not present}[operator]
        if not ok:
            return False
    return True


def governing(labels: dict[str, str], policies: list[dict], kind: str) -> list[dict]:
    return [p for p in policies if kind in p["spec"]["policyTypes"]
            and selects(p["spec"]["podSelector"], labels)]


def egress_allowed(labels: dict[str, str], policies: list[dict]) -> list[dict] | None:
    """The egress rules that apply (None: not isolated, anything goes)."""
    chosen = governing(labels, policies, "Egress")
    if not chosen:
        return None
    return [rule for p in chosen for rule in p["spec"].get("egress") or []]


def stage_pods(allow_network: bool) -> dict[str, tuple[dict[str, str], list[dict]]]:
    """stage -> (its Job's pod labels, the NetworkPolicies the engine creates with it)."""
    config = load_yaml(KNATIVE / "config.yaml")[0]["data"]
    current = settings.load({**config, "FILTERING_CONTAINER": "example.org/filter:1",
                             "ALGORITHM_ALLOW_NETWORK": str(allow_network).lower()})
    workflow = make_workflow()
    pods = {}
    for stage in wf.STAGES:
        objects = manifests.for_stage(workflow, current, stage)
        [job] = [o for o in objects if o["kind"] == "Job"]
        created = [o for o in objects if o["kind"] == "NetworkPolicy"]
        pods[stage] = (job["spec"]["template"]["metadata"]["labels"], created)
    return pods


@pytest.mark.parametrize("stage", ["algorithm", "filter"])
def test_algorithm_and_filter_pods_reach_nothing_by_default(stage: str):
    labels, created = stage_pods(allow_network=False)[stage]
    assert egress_allowed(labels, POLICIES) == [], "the static policy denies all egress"
    assert egress_allowed(labels, POLICIES + created) == []


def test_allowed_network_never_reaches_the_metadata_service():
    labels, created = stage_pods(allow_network=True)["algorithm"]
    rules = egress_allowed(labels, POLICIES + created)
    assert rules, "ALGORITHM_ALLOW_NETWORK=true opens egress for the algorithm pod"
    blocks = [b["ipBlock"] for rule in rules for b in rule["to"]]
    assert blocks and all(METADATA in b.get("except", []) for b in blocks if "." in b["cidr"])


@pytest.mark.parametrize("stage", ["configure", "publish"])
def test_transfer_pods_have_egress_but_not_to_the_metadata_service(stage: str):
    labels, _ = stage_pods(allow_network=False)[stage]
    rules = egress_allowed(labels, POLICIES)
    assert rules, f"{stage} pods download or upload: they need egress"
    blocks = [b["ipBlock"] for rule in rules for b in rule["to"]]
    assert {b["cidr"] for b in blocks} == {"0.0.0.0/0", "::/0"}
    assert all(b["except"] for b in blocks)
    assert [b for b in blocks if b["cidr"] == "0.0.0.0/0"][0]["except"] == [METADATA]


@pytest.mark.parametrize("stage", wf.STAGES)
def test_nothing_connects_to_a_job_pod(stage: str):
    labels, created = stage_pods(allow_network=True)[stage]
    chosen = governing(labels, POLICIES + created, "Ingress")
    assert chosen and not [rule for p in chosen for rule in p["spec"].get("ingress") or []]


@pytest.mark.parametrize("fn", FUNCTIONS)
def test_functions_are_reachable_by_knative_only(fn: str):
    service = next(d.obj for d in documents() if d.kind == "Service"
                   and d.name == f"c2d-{fn}")
    labels = service["spec"]["template"]["metadata"]["labels"]
    assert egress_allowed(labels, POLICIES) is None, "functions call the API and notify URLs"
    [policy] = governing(labels, POLICIES, "Ingress")
    [rule] = policy["spec"]["ingress"]
    namespaces = {v for peer in rule["from"]
                  for e in peer["namespaceSelector"]["matchExpressions"] for v in e["values"]}
    assert KNATIVE_NAMESPACES <= namespaces


def test_label_selector_evaluator_can_refuse():
    selector = {"matchExpressions": [{"key": "a", "operator": "In", "values": ["x"]}],
                "matchLabels": {"b": "y"}}
    assert selects(selector, {"a": "x", "b": "y"})
    assert not selects(selector, {"a": "z", "b": "y"})
    assert not selects(selector, {"a": "x"})
