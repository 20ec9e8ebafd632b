"""Pod volumes as host folders, and the claim binder.

- ``persistentVolumeClaim``: one folder per claim, ``<claims_dir>/<namespace>/<claim>``,
  shared by every pod using the claim and kept until the claim is deleted
  (reclaim policy ``Delete``). :class:`ClaimBinder` marks each claim ``Bound``.
- ``emptyDir``: a folder of the pod, removed with the pod.
- ``configMap`` / ``secret``: files written when the pod starts (``items``,
  ``defaultMode``/``mode``, ``optional``); not refreshed afterwards.
- ``hostPath``: the host path itself.

:func:`container_mounts` turns a container's ``volumeMounts`` (with ``subPath``
/ ``subPathExpr``) into :class:`~devstack.kubelet.sandbox.Mount` entries.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from kubernetes.client.exceptions import ApiException

from devstack.kubelet.informer import MERGE_PATCH, Informer, Rest, path
from devstack.kubelet.podconfig import ConfigError, Getter, configmap_data, expand, secret_data
from devstack.kubelet.sandbox import Mount

log = logging.getLogger(__name__)

DEFAULT_MODE = 0o644  # Kubernetes' default for configMap and secret volumes


def claim_dir(claims_dir: Path, namespace: str, claim: str) -> Path:
    return claims_dir / namespace / claim


def _safe_relative(path: str, what: str) -> str:
    parts = Path(path).parts
    if not path or Path(path).is_absolute() or ".." in parts:
        raise ConfigError(f"{what}: {path!r} must be a relative path without '..'")
    return path


def _write_files(folder: Path, data: dict[str, bytes], source: dict, what: str) -> None:
    """Write a configMap/secret volume's keys (or its ``items``) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    default_mode = source.get("defaultMode", DEFAULT_MODE)
    items = source.get("items")
    if items is None:
        items = [{"key": k, "path": k} for k in data]
    for item in items:
        key = item.get("key", "")
        if key not in data:
            if source.get("optional"):
                continue
            raise ConfigError(f"{what}: couldn't find key {key}")
        target = folder / _safe_relative(item.get("path") or key, f"{what} items path")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data[key])
        os.chmod(target, item.get("mode", default_mode))


def prepare_volumes(
    pod: dict,
    pod_dir: Path,
    claims_dir: Path,
    get_secret: Getter,
    get_configmap: Getter,
    get_claim: Getter,
) -> dict[str, Path]:
    """Create every volume of ``pod`` on the host; volume name -> host path."""
    ns = pod["metadata"].get("namespace") or "default"
    paths: dict[str, Path] = {}
    for vol in (pod.get("spec") or {}).get("volumes") or []:
        name = vol["name"]
        what = f"volume {name}"
        if "persistentVolumeClaim" in vol:
            claim = vol["persistentVolumeClaim"].get("claimName", "")
            if get_claim(ns, claim) is None:
                raise ConfigError(f'persistentvolumeclaim "{claim}" not found')
            path = claim_dir(claims_dir, ns, claim)
            path.mkdir(parents=True, exist_ok=True)
        elif "emptyDir" in vol:
            path = pod_dir / "volumes" / name
            path.mkdir(parents=True, exist_ok=True)
        elif "configMap" in vol or "secret" in vol:
            src = vol.get("configMap") or vol.get("secret") or {}
            is_secret = "secret" in vol
            ref = src.get("secretName" if is_secret else "name", "")
            obj = (get_secret if is_secret else get_configmap)(ns, ref)
            path = pod_dir / "volumes" / name
            if obj is None and not src.get("optional"):
                kind = "secret" if is_secret else "configmap"
                raise ConfigError(f'{what}: {kind} "{ref}" not found')
            data = {} if obj is None else (secret_data(obj) if is_secret else configmap_data(obj))
            _write_files(path, data, src, what)
        elif "hostPath" in vol:
            path = Path(vol["hostPath"].get("path", ""))
            if vol["hostPath"].get("type") == "DirectoryOrCreate":
                path.mkdir(parents=True, exist_ok=True)
        else:
            kinds = sorted(k for k in vol if k != "name")
            raise ConfigError(f"{what}: type {kinds} is not supported by the embedded kubelet")
        paths[name] = path
    return paths


def container_mounts(
    container: dict, volumes: dict[str, Path], pod: dict, env: dict[str, str]
) -> list[Mount]:
    """The container's ``volumeMounts`` as host-path binds."""
    read_only_kinds = {
        v["name"] for v in (pod.get("spec") or {}).get("volumes") or []
        if "configMap" in v or "secret" in v
    }
    mounts = []
    for vm in container.get("volumeMounts") or []:
        name, path = vm.get("name", ""), vm.get("mountPath", "")
        if name not in volumes:
            raise ConfigError(f"volumeMount {path}: no volume named {name!r} in the pod")
        if not path.startswith("/"):
            raise ConfigError(f"volumeMount {name}: mountPath {path!r} must be absolute")
        host = volumes[name]
        sub = vm.get("subPath") or (expand(vm["subPathExpr"], env) if vm.get("subPathExpr") else "")
        if sub:
            host = host / _safe_relative(sub, f"volumeMount {path} subPath")
            if not host.exists():  # the kubelet creates a missing subPath as a folder
                host.mkdir(parents=True, exist_ok=True)
        read_only = bool(vm.get("readOnly")) or name in read_only_kinds
        mounts.append(Mount(host=host, path=os.path.normpath(path), read_only=read_only))
    return mounts


class ClaimBinder:
    """Binds every PersistentVolumeClaim to a folder: status ``Bound`` with its capacity."""

    def __init__(self, rest: Rest, claims_dir: Path) -> None:
        self._rest = rest
        self._claims_dir = claims_dir
        self.informer = Informer("pvcs", rest, path("persistentvolumeclaims"), self._on_event)

    def start(self) -> None:
        self.informer.start()

    def stop(self) -> None:
        self.informer.stop()

    def _on_event(self, kind: str, pvc: dict) -> None:
        meta = pvc["metadata"]
        ns, name = meta.get("namespace") or "default", meta["name"]
        folder = claim_dir(self._claims_dir, ns, name)
        if kind == "DELETED":
            shutil.rmtree(folder, ignore_errors=True)
            return
        if (pvc.get("status") or {}).get("phase") == "Bound" or meta.get("deletionTimestamp"):
            return
        folder.mkdir(parents=True, exist_ok=True)
        spec = pvc.get("spec") or {}
        status = {
            "phase": "Bound",
            "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
            "capacity": dict((spec.get("resources") or {}).get("requests") or {}),
        }
        try:
            self._rest.call("PATCH", path("persistentvolumeclaims", ns, name, "status"),
                            {"status": status}, MERGE_PATCH)
        except ApiException as exc:
            if exc.status != 404:
                log.warning("binding claim %s/%s failed: %s", ns, name, exc)
