"""Least privilege: each function's Role grants exactly the verbs its code uses.

Three sources must agree, for each of configure, algorithm, publish, notify:
1. the Role `c2d-<stage>` in knative/rbac.yaml;
2. the permissions the function declares, `PERMISSIONS` in
   functions/<stage>/app.py: a set of `(resource, verb)` (shared.kube.Permission),
   which `shared.kube.Kube` enforces at run time (a call outside it raises
   NotPermitted, so the function's own tests fail on an undeclared call);
3. the calls its code makes, read statically (tests/knative/code_calls.py).

A verb the code uses and the Role lacks fails (the function would get 403 in
production); a verb the Role grants and no code uses fails (least privilege).
The embedded API server does not authorise requests, so the rules are checked
against the code rather than by impersonating each ServiceAccount.
"""

from __future__ import annotations

import importlib

import pytest

from .code_calls import kube_calls
from .manifests import FUNCTIONS, KNATIVE, REPO, find, load_yaml
from .manifests import Doc as _Doc

RBAC = [_Doc(KNATIVE / "rbac.yaml", o) for o in load_yaml(KNATIVE / "rbac.yaml")]
Rule = tuple[str, str, str]  # (apiGroup, resource, verb)


def role_rules(name: str) -> dict[Rule, frozenset[str] | None]:
    """(group, resource, verb) -> the resourceNames it is limited to (None: any)."""
    granted: dict[Rule, frozenset[str] | None] = {}
    for rule in find(RBAC, "Role", name)["rules"]:
        names = frozenset(rule["resourceNames"]) if rule.get("resourceNames") else None
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                for verb in rule["verbs"]:
                    assert "*" not in (group, resource, verb), f"{name}: wildcard in {rule}"
                    key = (group, resource, verb)
                    before = granted.get(key, frozenset())
                    granted[key] = None if names is None or before is None else before | names
    return granted


def kube():
    if not (REPO / "shared" / "kube.py").is_file():
        pytest.skip("shared/kube.py is not written yet: no Kubernetes access to compare with")
    return importlib.import_module("shared.kube")


def resource_kinds() -> dict[str, str]:
    """Kind -> RBAC resource, from shared.kube.KINDS (the kinds the code can reach)."""
    return {kind: spec.resource for kind, spec in kube().KINDS.items()}


def groups() -> dict[str, str]:
    return {spec.resource: spec.group for spec in kube().KINDS.values()}


def declared(stage: str) -> set[tuple[str, str]]:
    """The stage's PERMISSIONS, or a skip when its app is not written yet."""
    kube()
    if not (REPO / "functions" / stage / "app.py").is_file():
        pytest.skip(f"functions/{stage}/app.py is not written yet: nothing to hold "
                    f"Role c2d-{stage} against")
    module = importlib.import_module(f"functions.{stage}.app")
    assert hasattr(module, "PERMISSIONS"), (
        f"functions/{stage}/app.py must declare PERMISSIONS = {{(resource, verb), ...}}, "
        "the set it gives shared.kube.Kube")
    return set(module.PERMISSIONS)


def as_rules(permissions: set[tuple[str, str]]) -> set[Rule]:
    known = groups()
    rules = set()
    for resource, verb in permissions:
        base = resource.split("/")[0]
        assert base in known, f"{resource}: not a kind shared.kube.KINDS knows"
        rules.add((known[base], resource, verb))
    return rules


def show(rules: set[Rule]) -> str:
    return ", ".join(f"{verb} {resource}" + (f" ({group})" if group else "")
                     for group, resource, verb in sorted(rules, key=lambda r: r[1:]))


@pytest.mark.parametrize("stage", FUNCTIONS)
def test_role_grants_exactly_what_the_function_declares(stage: str):
    wanted = as_rules(declared(stage))
    granted = set(role_rules(f"c2d-{stage}"))
    assert not wanted - granted, (
        f"functions/{stage} uses {show(wanted - granted)}; Role c2d-{stage} lacks it")
    assert not granted - wanted, (
        f"Role c2d-{stage} grants {show(granted - wanted)}; functions/{stage} never uses it")


@pytest.mark.parametrize("stage", FUNCTIONS)
def test_declared_permissions_match_the_calls_in_the_code(stage: str):
    permissions = declared(stage)
    calls = kube_calls(stage, resource_kinds())
    missing = calls.required - permissions
    assert not missing, "; ".join(
        f"{calls.evidence[p]} needs {p[1]} {p[0]}, not in functions/{stage} PERMISSIONS"
        for p in sorted(missing))
    unused = permissions - calls.possible
    assert not unused, (f"functions/{stage} declares {sorted(unused)} but no code path of "
                        "the function uses them")


def test_static_reading_finds_a_call_that_is_not_declared(tmp_path, monkeypatch):
    """The code reader must be able to fail: a stray delete shows up as required."""
    from . import code_calls

    package = tmp_path / "functions" / "probe"
    package.mkdir(parents=True)
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "helpers.py").write_text(
        "def cleanup(kube, ns, name):\n    kube.delete('Job', ns, name + '-x')\n")
    (package / "app.py").write_text(
        "from shared import helpers\n\n"
        "def handle(stage):\n"
        "    stage.kube.update_status('Workflow', 'ns', 'wf', lambda w: None)\n"
        "    helpers.cleanup(stage.kube, 'ns', 'wf')\n")
    monkeypatch.setattr(code_calls, "REPO", tmp_path)
    calls = code_calls.kube_calls("probe", {"Job": "jobs", "Workflow": "workflows"})
    assert calls.required == {("jobs", "delete"), ("workflows", "get"),
                              ("workflows/status", "update")}
    assert calls.evidence[("jobs", "delete")] == "helpers.py:cleanup"


def test_configure_may_only_rewrite_its_own_configmaps():
    """Admission and the environment announcement (one object): update limited to it."""
    limits = role_rules("c2d-configure")
    assert limits[("", "configmaps", "update")] is not None, "update on any ConfigMap"
    if not (REPO / "functions" / "configure" / "admission.py").is_file():
        pytest.skip("functions/configure/admission.py is not written yet")
    admission = importlib.import_module("functions.configure.admission")
    environment = importlib.import_module("functions.configure.environment")
    assert limits[("", "configmaps", "update")] == {environment.CONFIGMAP} == {admission.NAME}


def bindings() -> dict[str, dict]:
    return {d.name: d.obj for d in RBAC if d.kind == "RoleBinding"}


@pytest.mark.parametrize("account", [f"c2d-{fn}" for fn in FUNCTIONS]
                         + ["c2d-workflows-source", "c2d-jobs-source"])
def test_each_account_is_bound_to_its_own_role_only(account: str):
    find(RBAC, "ServiceAccount", account)
    bound = [b for b in bindings().values()
             if any(s["name"] == account for s in b["subjects"])]
    assert len(bound) == 1, f"{account} is bound {len(bound)} times"
    assert bound[0]["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                   "name": account}
    assert [s["kind"] for s in bound[0]["subjects"]] == ["ServiceAccount"]


@pytest.mark.parametrize("account, group, resource", [
    ("c2d-workflows-source", "oceanprotocol.com", "workflows"),
    ("c2d-jobs-source", "batch", "jobs"),
])
def test_sources_only_watch_what_they_emit(account: str, group: str, resource: str):
    assert set(role_rules(account)) == {(group, resource, v) for v in ("get", "list", "watch")}


def test_service_accounts_are_the_ones_the_services_and_sources_run_as():
    docs = [_Doc(p, o) for p in KNATIVE.glob("*.yaml") for o in load_yaml(p)
            if p.name != "kustomization.yaml"]
    for fn in FUNCTIONS:
        service = find(docs, "Service", f"c2d-{fn}")
        assert service["spec"]["template"]["spec"]["serviceAccountName"] == f"c2d-{fn}"
    for source in ("c2d-workflows", "c2d-jobs"):
        spec = find(docs, "ApiServerSource", source)["spec"]
        assert spec["serviceAccountName"] == f"{source}-source"


def test_job_pods_account_has_no_token_and_no_permission():
    account = find(RBAC, "ServiceAccount", "c2d-jobs")
    assert account["automountServiceAccountToken"] is False
    assert not [b for b in bindings().values()
                if any(s["name"] == "c2d-jobs" for s in b["subjects"])]


def test_nothing_cluster_wide():
    every = [o for p in KNATIVE.glob("*.yaml") for o in load_yaml(p)]
    assert not [o for o in every if o.get("kind") in ("ClusterRole", "ClusterRoleBinding")]
