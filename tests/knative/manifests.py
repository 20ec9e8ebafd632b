"""Loading and checking the deployment manifests of knative/ (helpers for these tests).

- `documents()`: every object of every knative/*.yaml file (the kustomization
  itself excluded), with the file it came from.
- `kustomize(path)`: `kubectl kustomize` of a folder, as objects.
- `crd_schemas()`: the real Knative CRDs' openAPIV3Schema, by (apiVersion, kind).
- `schema_problems(schema, value)`: a strict structural check against such a
  schema: wrong types, missing required fields, values outside an enum, and
  unknown fields wherever the schema lists its properties. Stricter than the
  API server, which keeps unknown fields under `x-kubernetes-preserve-unknown-fields`
  (Trigger and ApiServerSource specs have it): here a misspelt field fails
  instead of being silently ignored.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
KNATIVE = REPO / "knative"
OVERLAYS = REPO / "deploy" / "overlays"
CRDS = REPO.parent / "shared" / "reference" / "knative-crds"
CRD_FILES = ("apiserversource.yaml", "pingsource.yaml", "broker.yaml", "trigger.yaml",
             "service.yaml")
FUNCTIONS = ("configure", "algorithm", "publish", "notify")
SECRET_KEYS = frozenset({"OPERATOR_PRIVATE_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                         "IPFS_API_KEY", "IPFS_API_CLIENT"})
# DESIGN section 7: the original operator-engine's variables, all honoured.
ORIGINAL = {
    "nCPU", "cpuType", "nGPU", "gpuRam", "gpuType", "ramGB", "diskGB", "priceMinute",
    "description", "maxJobs", "maxJobDuration", "STORAGE_EXPIRY", "OPERATOR_PRIVATE_KEY",
    "IPFS_TYPE", "IPFS_OUTPUT", "IPFS_ADMINLOGS", "IPFS_OUTPUT_PREFIX", "IPFS_ADMINLOGS_PREFIX",
    "IPFS_EXPIRY_TIME", "IPFS_API_KEY", "IPFS_API_CLIENT", "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "AWS_BUCKET_OUTPUT", "AWS_BUCKET_ADMINLOGS",
    "STORAGE_CLASS", "NOTIFY_START_URL", "NOTIFY_STOP_URL", "SERVICE_ACCOUNT", "NODE_SELECTOR",
    "PULL_SECRET", "PULL_POLICY", "FILTERING_CONTAINER", "LOG_CFG", "LOG_LEVEL",
    "DEBUG_NO_CLEANUP", "POD_CONFIGURATION_CONTAINER", "POD_PUBLISH_CONTAINER",
}
# Files of knative/ that are not Kubernetes objects to apply.
NOT_OBJECTS = {"kustomization.yaml"}


@dataclass(frozen=True)
class Doc:
    """One object and where it came from."""

    path: Path
    obj: dict[str, Any]

    @property
    def kind(self) -> str:
        return self.obj.get("kind", "")

    @property
    def name(self) -> str:
        return (self.obj.get("metadata") or {}).get("name", "")

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(REPO)}: {self.kind}/{self.name}"


def load_yaml(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def documents(folder: Path = KNATIVE) -> list[Doc]:
    """Every object in the folder's *.yaml files (the kustomization excluded)."""
    return [Doc(path, obj) for path in sorted(folder.glob("*.yaml"))
            if path.name not in NOT_OBJECTS for obj in load_yaml(path)]


def applied_documents() -> list[Doc]:
    """The objects kustomization.yaml applies (its `resources`), in its order."""
    kustomization = load_yaml(KNATIVE / "kustomization.yaml")[0]
    return [Doc(KNATIVE / name, obj) for name in kustomization["resources"]
            for obj in load_yaml(KNATIVE / name)]


def find(docs: list[Doc], kind: str, name: str) -> dict[str, Any]:
    found = [d.obj for d in docs if d.kind == kind and d.name == name]
    assert len(found) == 1, f"expected exactly one {kind}/{name}, found {len(found)}"
    return found[0]


def kubectl() -> str | None:
    return shutil.which("kubectl")


@cache
def _kustomize_output(folder: Path, signature: tuple[tuple[str, int], ...]) -> str:
    done = subprocess.run([kubectl() or "kubectl", "kustomize", str(folder)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0, f"kubectl kustomize {folder} failed:\n{done.stderr}"
    return done.stdout


def kustomize(folder: Path) -> list[dict[str, Any]]:
    """`kubectl kustomize folder` as fresh objects (built once per state of the files)."""
    files = sorted(p for root in (folder, KNATIVE) for p in root.rglob("*.yaml"))
    signature = tuple((str(p), p.stat().st_mtime_ns) for p in files)
    return [d for d in yaml.safe_load_all(_kustomize_output(folder, signature)) if d is not None]


@cache
def crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema of every served version of the Knative CRDs."""
    schemas = {}
    for name in CRD_FILES:
        crd = load_yaml(CRDS / name)[0]
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served"):
                schemas[(f"{group}/{version['name']}", kind)] = (
                    version["schema"]["openAPIV3Schema"])
    return schemas


_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool}


def _type_ok(schema: dict[str, Any], value: Any) -> bool:
    if schema.get("x-kubernetes-int-or-string"):
        return isinstance(value, (int, str)) and not isinstance(value, bool)
    wanted = schema.get("type")
    if wanted is None:
        return True
    if wanted == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if wanted == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _TYPES[wanted])


def schema_problems(schema: dict[str, Any], value: Any, path: str = "") -> list[str]:
    """Every way `value` breaks the structural `schema`, each naming its field."""
    where = path or "<root>"
    if value is None and schema.get("nullable"):
        return []
    if not _type_ok(schema, value):
        return [f"{where}: expected {schema.get('type', 'int-or-string')}, "
                f"got {type(value).__name__} {value!r}"]
    problems = []
    if "enum" in schema and value not in schema["enum"]:
        problems.append(f"{where}: {value!r} is not one of {schema['enum']}")
    if isinstance(value, dict):
        problems += _object_problems(schema, value, path)
    elif isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            problems += schema_problems(schema["items"], item, f"{path}[{index}]")
    return problems


def _object_problems(schema: dict[str, Any], value: dict[str, Any], path: str) -> list[str]:
    problems = [f"{path or '<root>'}: missing required field {name!r}"
                for name in schema.get("required", []) if name not in value]
    properties = schema.get("properties")
    additional = schema.get("additionalProperties")
    for key, item in value.items():
        child = f"{path}.{key}" if path else key
        if properties is not None and key in properties:
            problems += schema_problems(properties[key], item, child)
        elif isinstance(additional, dict):
            problems += schema_problems(additional, item, child)
        elif properties is not None:
            problems.append(f"{child}: unknown field (known: {', '.join(sorted(properties))})")
    return problems


def metadata_problems(metadata: Any) -> list[str]:
    """The CRDs leave metadata to the API server: check what our manifests use of it."""
    if not isinstance(metadata, dict):
        return ["metadata: must be a mapping"]
    problems = [f"metadata.{key}: unknown field" for key in metadata
                if key not in ("name", "namespace", "labels", "annotations")]
    if not isinstance(metadata.get("name"), str) or not metadata["name"]:
        problems.append("metadata.name: required")
    for field in ("labels", "annotations"):
        for key, item in (metadata.get(field) or {}).items():
            if not isinstance(item, str):
                problems.append(f"metadata.{field}.{key}: must be a string, got {item!r}")
    return problems


def knative_problems(obj: dict[str, Any]) -> list[str]:
    """How a Knative object breaks its CRD's schema ([] when it conforms)."""
    schema = crd_schemas().get((obj.get("apiVersion"), obj.get("kind")))
    if schema is None:
        return [f"no served CRD version for {obj.get('apiVersion')} {obj.get('kind')}"]
    # apiVersion and kind chose the schema; metadata is the API server's to check.
    envelope = ("apiVersion", "kind", "metadata")
    body = {key: item for key, item in obj.items() if key not in envelope}
    rest = {**schema, "properties": {k: v for k, v in schema["properties"].items()
                                     if k not in envelope}}
    return metadata_problems(obj.get("metadata")) + schema_problems(rest, body)


def is_knative(obj: dict[str, Any]) -> bool:
    return str(obj.get("apiVersion", "")).split("/")[0].endswith(".knative.dev")
