"""Read the Knative manifests (multi-document YAML) that drive the embedded eventing.

The manifests folder (by default `<repo>/knative/`) is the single source of truth
for routing: the Broker reads its Triggers here, the sources their specs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

DEFAULT_MANIFESTS_DIR = Path(__file__).resolve().parents[2] / "knative"


class ManifestError(ValueError):
    """A manifest is missing, unreadable or has a bad field (the message names it)."""


@dataclass(frozen=True)
class Manifest:
    """One YAML document and the file it came from."""

    path: Path
    doc: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.doc.get("kind", ""))

    @property
    def api_group(self) -> str:
        return str(self.doc.get("apiVersion", "")).rpartition("/")[0]

    @property
    def name(self) -> str:
        return str((self.doc.get("metadata") or {}).get("name", ""))

    @property
    def namespace(self) -> str | None:
        return (self.doc.get("metadata") or {}).get("namespace")

    @property
    def spec(self) -> dict[str, Any]:
        spec = self.doc.get("spec")
        if spec is None:
            return {}
        if not isinstance(spec, dict):
            raise ManifestError(f"{self.where}: spec must be a mapping")
        return spec

    @property
    def where(self) -> str:
        """How error messages name this object: `file: Kind/name`."""
        return f"{self.path.name}: {self.kind}/{self.name}"


def yaml_files(folder: Path | str) -> list[Path]:
    """The `*.yaml` files of a folder (not recursive), sorted for a stable order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ManifestError(f"manifests folder {folder} does not exist")
    return sorted(p for p in folder.glob("*.yaml") if p.is_file())


def folder_signature(folder: Path | str) -> tuple[tuple[str, int, int], ...]:
    """Name, mtime and size of every manifest file: changes when any file changes."""
    signature = []
    for path in yaml_files(folder):
        try:
            st = path.stat()
        except FileNotFoundError:  # removed between glob and stat
            continue
        signature.append((path.name, st.st_mtime_ns, st.st_size))
    return tuple(signature)


def load_manifests(folder: Path | str) -> list[Manifest]:
    """Every YAML document (a mapping with a `kind`) of every `*.yaml` file in `folder`."""
    manifests = []
    for path in yaml_files(folder):
        try:
            docs = list(yaml.safe_load_all(path.read_text(encoding="utf-8")))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ManifestError(f"{path}: not valid YAML: {exc}") from exc
        for index, doc in enumerate(docs):
            if doc is None:
                continue
            if not isinstance(doc, dict) or "kind" not in doc:
                raise ManifestError(f"{path}: document {index} is not a Kubernetes object")
            manifests.append(Manifest(path, doc))
    return manifests


def select(manifests: list[Manifest], kind: str, api_group: str) -> list[Manifest]:
    """The manifests of one kind in one API group (e.g. `Trigger`, `eventing.knative.dev`)."""
    return [m for m in manifests if m.kind == kind and m.api_group == api_group]


def find_one(manifests: list[Manifest], kind: str, api_group: str, name: str) -> Manifest:
    """The single manifest of that kind and name; a clear error when absent or duplicated."""
    found = [m for m in select(manifests, kind, api_group) if m.name == name]
    if not found:
        names = sorted(m.name for m in select(manifests, kind, api_group))
        raise ManifestError(f"no {kind} named {name!r} in the manifests (found: {names})")
    if len(found) > 1:
        raise ManifestError(f"{kind} {name!r} is defined {len(found)} times")
    return found[0]
