"""Write a kubeconfig pointing kubectl and the kubernetes client at the embedded server."""

from __future__ import annotations

from pathlib import Path

import yaml

CONTEXT = "c2d-embedded"


def write_kubeconfig(url: str, path: Path, namespace: str = "default") -> Path:
    """Write a kubeconfig with one context named ``c2d-embedded``; returns ``path``."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT, "cluster": {"server": url}}],
        "users": [{"name": CONTEXT, "user": {"token": "c2d-embedded"}}],
        "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": CONTEXT,
                                                   "namespace": namespace}}],
        "current-context": CONTEXT,
        "preferences": {},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    return path
