"""A container's environment and command line, resolved as a kubelet does.

``envFrom`` first, then ``env`` in order (later wins); ``$(VAR)`` in an ``env``
value refers to variables defined before it; ``$(VAR)`` in ``command`` and
``args`` refers to the final environment. ``$$`` escapes a ``$``, and a
reference to an undefined variable stays as written. A missing Secret,
ConfigMap or key that is not ``optional`` is a :class:`ConfigError` (the pod
waits in ``CreateContainerConfigError``, as on a node).
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Callable, Mapping

Getter = Callable[[str, str], "dict | None"]  # (namespace, name) -> object or None

_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
_FIELD = re.compile(r"^metadata\.(labels|annotations)\['([^']*)'\]$")


class ConfigError(Exception):
    """The container cannot be configured yet; the message says why."""


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion of ``text`` with ``env``."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c != "$" or i + 1 == n:
            out.append(c)
            i += 1
            continue
        nxt = text[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            close = text.find(")", i + 2)
            if close < 0:
                out.append(text[i:])
                break
            name = text[i + 2 : close]
            out.append(env[name] if name in env else f"$({name})")
            i = close + 1
        else:
            out.append(c + nxt)
            i += 2
    return "".join(out)


def secret_data(secret: dict) -> dict[str, bytes]:
    """A Secret's keys with their decoded bytes (``stringData`` included)."""
    data = {k: base64.b64decode(v or "") for k, v in (secret.get("data") or {}).items()}
    data.update({k: (v or "").encode() for k, v in (secret.get("stringData") or {}).items()})
    return data


def configmap_data(cm: dict) -> dict[str, bytes]:
    """A ConfigMap's keys with their bytes (``binaryData`` decoded)."""
    data = {k: (v or "").encode() for k, v in (cm.get("data") or {}).items()}
    data.update({k: base64.b64decode(v or "") for k, v in (cm.get("binaryData") or {}).items()})
    return data


class EnvResolver:
    """Reads Secrets and ConfigMaps through the given getters to build environments.

    Each Secret or ConfigMap is read once per environment, however many variables
    refer to it: a kubelet serves them from its object cache, not one API call
    per key (c2d's pods name the same Secret for several variables).
    """

    def __init__(self, get_secret: Getter, get_configmap: Getter) -> None:
        self._get = {"Secret": get_secret, "ConfigMap": get_configmap}

    def environment(self, pod: dict, container: dict, base: Mapping[str, str]) -> dict[str, str]:
        """``base`` (the runtime's defaults) overlaid with the container's env."""
        return _Resolution(self._get, pod).environment(container, base)


class _Resolution:
    """One container's environment being built; remembers the objects it read."""

    def __init__(self, getters: Mapping[str, Getter], pod: dict) -> None:
        self._get = getters
        self.pod = pod
        self.ns = pod["metadata"].get("namespace") or "default"
        self._read: dict[tuple[str, str], dict | None] = {}

    def _source(self, kind: str, name: str, optional: bool) -> dict[str, bytes] | None:
        if (kind, name) not in self._read:
            self._read[kind, name] = self._get[kind](self.ns, name)
        obj = self._read[kind, name]
        if obj is None:
            if optional:
                return None
            raise ConfigError(f'{kind.lower()} "{name}" not found')
        return secret_data(obj) if kind == "Secret" else configmap_data(obj)

    def _key(self, kind: str, ref: dict) -> str | None:
        name, key, optional = ref.get("name", ""), ref.get("key", ""), bool(ref.get("optional"))
        data = self._source(kind, name, optional)
        if data is None:
            return None
        if key not in data:
            if optional:
                return None
            raise ConfigError(f"couldn't find key {key} in {kind} {self.ns}/{name}")
        return data[key].decode(errors="replace")

    def environment(self, container: dict, base: Mapping[str, str]) -> dict[str, str]:
        env = dict(base)
        for src in container.get("envFrom") or []:
            prefix = src.get("prefix") or ""
            for kind, field in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
                ref = src.get(field)
                if ref is None:
                    continue
                data = self._source(kind, ref.get("name", ""), bool(ref.get("optional")))
                for key, value in (data or {}).items():
                    if _ENV_NAME.match(prefix + key):  # invalid names are skipped, as on a node
                        env[prefix + key] = value.decode(errors="replace")
        for var in container.get("env") or []:
            name = var["name"]
            source = var.get("valueFrom")
            if source is None:
                env[name] = expand(var.get("value") or "", env)
                continue
            value = self._value_from(container, source, name)
            if value is not None:
                env[name] = value
        return env

    def _value_from(self, container: dict, source: dict, name: str) -> str | None:
        if "secretKeyRef" in source:
            return self._key("Secret", source["secretKeyRef"])
        if "configMapKeyRef" in source:
            return self._key("ConfigMap", source["configMapKeyRef"])
        if "fieldRef" in source:
            return field_value(self.pod, source["fieldRef"].get("fieldPath", ""), name)
        if "resourceFieldRef" in source:
            return resource_value(container, source["resourceFieldRef"], name)
        raise ConfigError(f"env {name}: valueFrom has no supported source")


def field_value(pod: dict, path: str, env_name: str) -> str:
    """The value of a ``fieldRef`` (downward API) for ``pod``."""
    meta, spec = pod["metadata"], pod.get("spec") or {}
    simple = {
        "metadata.name": meta.get("name"),
        "metadata.namespace": meta.get("namespace") or "default",
        "metadata.uid": meta.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName") or "default",
        "status.hostIP": "127.0.0.1",
        "status.hostIPs": "127.0.0.1",
        "status.podIP": "127.0.0.1",
        "status.podIPs": "127.0.0.1",
    }
    if path in simple:
        return str(simple[path] or "")
    m = _FIELD.match(path)
    if m:
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    raise ConfigError(f"env {env_name}: unsupported fieldRef.fieldPath {path!r}")


def resource_value(container: dict, ref: dict, env_name: str) -> str:
    """A ``resourceFieldRef``: the container's quantity, or the host's capacity."""
    resource = ref.get("resource", "")
    kind, _, what = resource.partition(".")
    value = ((container.get("resources") or {}).get(kind) or {}).get(what)
    if value is not None:
        return str(value)
    if what == "cpu":
        return str(os.cpu_count() or 1)
    if what == "memory":
        return str(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    if what == "ephemeral-storage":
        return "0"
    raise ConfigError(f"env {env_name}: unsupported resourceFieldRef.resource {resource!r}")
