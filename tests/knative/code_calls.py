"""The Kubernetes calls a function's code makes, read statically from its source.

Every call goes through `shared.kube.Kube` (get, list, delete, update,
update_status, create, create_or_get, pod_log). Starting from every function
and module body of `functions/<stage>/`, this follows calls by name through
that package and `shared/` (never another stage's package), and collects:

- `required`: what calls naming their kind literally need, e.g.
  `kube.update_status("Workflow", ...)` -> (workflows, get), (workflows/status,
  update). The code certainly makes these calls when it runs that path.
- `possible`: `required`, plus calls whose kind is in a variable (any kind the
  same function names), plus, when a create is reachable, create (and get, for
  create_or_get) of every kind the reachable code builds: a dict literal with
  `"kind": ...` or a template rendered with `render("<file>", ...)`. Creating
  from a built manifest hides the kind, so this side over-approximates.

A permission declared but not even `possible` is one no code path uses.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

Permission = tuple[str, str]  # (resource, verb), as shared.kube declares them

REPO = Path(__file__).resolve().parents[2]
LITERAL_KIND_CALLS = {  # Kube method -> permissions, for a call whose first argument is a kind
    "get": (("", "get"),),
    "list": (("", "list"),),
    "delete": (("", "delete"),),
    "update": (("", "get"), ("", "update")),
    "update_status": (("", "get"), ("/status", "update")),
}
CREATES = {"create": ("create",), "create_or_get": ("create", "get")}
TEMPLATE_KIND = re.compile(r"^kind:\s*(\w+)\s*$", re.MULTILINE)


@dataclass
class Body:
    """What one function (or module body) does, before following its calls."""

    where: str
    calls: set[str] = field(default_factory=set)  # names it calls (functions, methods)
    required: set[Permission] = field(default_factory=set)
    possible: set[Permission] = field(default_factory=set)  # calls with a kind in a variable
    create_verbs: set[str] = field(default_factory=set)
    built_kinds: set[str] = field(default_factory=set)


@dataclass
class Calls:
    required: set[Permission]
    possible: set[Permission]
    evidence: dict[Permission, str]  # where each required permission comes from


def _kind_of(node: ast.expr, kinds: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and node.value in kinds:
        return node.value
    return None


def _body(node: ast.AST, where: str, kinds: dict[str, str], templates: Path) -> Body:
    body = Body(where)
    # A kind in a variable (`for kind, name in (("Secret", ...), ...)`) may be any
    # kind this function names literally.
    named = {sub.value for sub in ast.walk(node) if _kind_of(sub, kinds)}
    for sub in ast.walk(node):
        if isinstance(sub, ast.Dict):
            for key, value in zip(sub.keys, sub.values, strict=True):
                if (isinstance(key, ast.Constant) and key.value == "kind"
                        and _kind_of(value, kinds)):
                    body.built_kinds.add(value.value)
        if not isinstance(sub, ast.Call):
            continue
        func = sub.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name is None:
            continue
        kind = _kind_of(sub.args[0], kinds) if sub.args else None
        if isinstance(func, ast.Attribute) and name in LITERAL_KIND_CALLS and kind:
            for suffix, verb in LITERAL_KIND_CALLS[name]:
                body.required.add((kinds[kind] + suffix, verb))
        elif isinstance(func, ast.Attribute) and name in LITERAL_KIND_CALLS and sub.args and (
                isinstance(sub.args[0], ast.Name)):
            body.possible.update((kinds[k] + suffix, verb) for k in named
                                 for suffix, verb in LITERAL_KIND_CALLS[name])
        elif isinstance(func, ast.Attribute) and name in CREATES:
            body.create_verbs.update(CREATES[name])
        elif name == "pod_log":
            body.required.add(("pods/log", "get"))
        elif name == "render" and sub.args and isinstance(sub.args[0], ast.Constant):
            template = templates / str(sub.args[0].value)
            if template.is_file():
                body.built_kinds.update(
                    k for k in TEMPLATE_KIND.findall(template.read_text()) if k in kinds)
        body.calls.add(name)
    return body


def _bodies(path: Path, kinds: dict[str, str], templates: Path) -> dict[str, list[Body]]:
    """Function name -> bodies (methods too), and "<module>" for the module's own code."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: dict[str, list[Body]] = {}
    top_level = []
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found.setdefault(node.name, []).append(_body(node, f"{path.name}:{node.name}",
                                                          kinds, templates))
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    found.setdefault(item.name, []).append(
                        _body(item, f"{path.name}:{node.name}.{item.name}", kinds, templates))
        else:
            top_level.append(node)
    module = ast.Module(body=top_level, type_ignores=[])
    found.setdefault("<module>", []).append(_body(module, path.name, kinds, templates))
    return found


def kube_calls(stage: str, kinds: dict[str, str]) -> Calls:
    """What `functions/<stage>/` does to Kubernetes; `kinds`: Kind -> RBAC resource."""
    templates = REPO / "shared" / "templates"
    shared = [p for p in sorted((REPO / "shared").glob("*.py")) if p.name != "kube.py"]
    own = sorted((REPO / "functions" / stage).glob("*.py"))
    index: dict[str, list[Body]] = {}
    roots: list[Body] = []
    for path in shared + own:
        for name, bodies in _bodies(path, kinds, templates).items():
            if name != "<module>":
                index.setdefault(name, []).extend(bodies)
            if path in own:
                roots.extend(bodies)
    seen: dict[str, Body] = {}
    todo = list(roots)
    while todo:
        body = todo.pop()
        if body.where in seen:
            continue
        seen[body.where] = body
        for name in body.calls:
            todo.extend(index.get(name, []))
    required: set[Permission] = set()
    evidence: dict[Permission, str] = {}
    for body in seen.values():
        for permission in body.required:
            required.add(permission)
            evidence.setdefault(permission, body.where)
    possible = required | {p for body in seen.values() for p in body.possible}
    verbs = {verb for body in seen.values() for verb in body.create_verbs}
    built = {kind for body in seen.values() for kind in body.built_kinds}
    possible |= {(kinds[kind], verb) for kind in built for verb in verbs}
    return Calls(required, possible, evidence)
