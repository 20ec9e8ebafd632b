"""Where the Kubernetes API is and how to reach it: its address, a pool, credentials.

Read here rather than by the official client: importing `kubernetes` was half of
a function's cold start (0.3-0.6 s of 0.9-1.3 s on a two-core VM) and 16 MB of
every worker, for a few fields of a file. In a pod the ServiceAccount gives them,
read as the official in-cluster loader reads it. Elsewhere a kubeconfig does;
one that asks for more than this module reads (`CLUSTER_FIELDS`, `USER_FIELDS`:
an exec plugin, an auth provider, several files merged) goes to the official
loader, imported only then.
"""

from __future__ import annotations

import atexit
import base64
import binascii
import contextlib
import functools
import ipaddress
import os
import shutil
import ssl
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from urllib.request import getproxies

import urllib3
import yaml

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

SERVICE_ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
CLUSTER_FIELDS = {"server", "certificate-authority", "certificate-authority-data",
                  "insecure-skip-tls-verify", "tls-server-name", "proxy-url", "extensions"}
USER_FIELDS = {"token", "tokenFile", "client-certificate", "client-certificate-data",
               "client-key", "client-key-data", "extensions"}
# As many connections kept per host as the official client keeps.
POOL_SIZE = (os.cpu_count() or 1) * 5

Credentials = Callable[[], dict[str, str]]


class ConfigError(ValueError):
    """No connection can be set up; the message names the file or variable and the fault."""


@dataclass(frozen=True)
class Connection:
    """The API server's address (no trailing slash), a pool to it and the auth headers.

    `credentials` is asked again now and then (`shared.kube.AuthHeaders`): a
    ServiceAccount token is rotated in its file.
    """

    host: str
    pool: urllib3.PoolManager
    credentials: Credentials

    @classmethod
    def of_client(cls, api: ApiClient) -> Connection:
        """An official client's host, connection pool and auth settings."""
        configuration = api.configuration

        def credentials() -> dict[str, str]:
            return {setting["key"]: setting["value"]
                    for setting in configuration.auth_settings().values()
                    if setting["in"] == "header" and setting["value"]}

        return cls(configuration.host.rstrip("/"), api.rest_client.pool_manager, credentials)


def connect(kubeconfig: str | None = None) -> Connection:
    """In a pod (KUBERNETES_SERVICE_HOST set, no kubeconfig given), its ServiceAccount;
    else the kubeconfig at `kubeconfig`, $KUBECONFIG or ~/.kube/config."""
    if kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        return in_cluster()
    return from_kubeconfig(kubeconfig)


def in_cluster(environ: Mapping[str, str] | None = None,
               account: Path | None = None) -> Connection:
    """The connection a pod's ServiceAccount gives: the kubernetes Service, its CA, the token."""
    environ = os.environ if environ is None else environ
    account = account or SERVICE_ACCOUNT
    host, port = environ.get("KUBERNETES_SERVICE_HOST"), environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port:
        raise ConfigError("in a pod, KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT "
                          "must both be set")
    token, ca = account / "token", account / "ca.crt"
    for path in (token, ca):
        if not path.is_file() or not path.stat().st_size:
            raise ConfigError(f"the ServiceAccount's {path} is missing or empty "
                              "(automountServiceAccountToken must be on for the functions)")
    host = f"[{host}]" if ":" in host or "%" in host else host  # an IPv6 address
    server = f"https://{host}:{port}"
    return Connection(server, _pool(server, {"ca_certs": str(ca)}), _token_file(token))


def from_kubeconfig(path: str | None = None) -> Connection:
    """The current context of a kubeconfig (default: $KUBECONFIG, else ~/.kube/config)."""
    chosen = path or os.environ.get("KUBECONFIG") or "~/.kube/config"
    if path is None and os.pathsep in chosen:
        return _official(chosen)  # several files, merged
    file = Path(chosen).expanduser()
    try:
        document = yaml.safe_load(file.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"cannot read the kubeconfig {file}: {error.strerror}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"the kubeconfig {file} is not YAML: {error}") from None
    cluster, user = _current(document, file)
    if set(cluster) - CLUSTER_FIELDS or set(user) - USER_FIELDS:
        return _official(str(file))
    return _from_fields(cluster, user, file)


def _current(document: Any, file: Path) -> tuple[dict, dict]:
    """The cluster and user of the current context (the user may be empty)."""
    if not isinstance(document, dict):
        raise ConfigError(f"the kubeconfig {file} is not a mapping")
    name = document.get("current-context")
    if not name:
        raise ConfigError(f"the kubeconfig {file} has no current-context")
    context = _named(document, "contexts", name, file, "context")
    cluster = _named(document, "clusters", context.get("cluster"), file, "cluster")
    user = _named(document, "users", context.get("user"), file, "user") \
        if context.get("user") else {}
    return cluster, user


def _named(document: dict, section: str, name: Any, file: Path, field: str) -> dict:
    for entry in document.get(section) or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            found = entry.get(field)
            if isinstance(found, dict):
                return found
    raise ConfigError(f"the kubeconfig {file} has no {section} entry named {name!r}")


def _from_fields(cluster: dict, user: dict, file: Path) -> Connection:
    server = str(cluster.get("server") or "").rstrip("/")
    parts = urlsplit(server)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"the kubeconfig {file}: cluster server {server!r} is not an "
                          "http(s) URL")
    folder = file.parent
    tls: dict[str, Any] = {}
    if cluster.get("insecure-skip-tls-verify"):
        tls["cert_reqs"] = ssl.CERT_NONE
    else:
        tls["ca_certs"] = _file_or_data(cluster, "certificate-authority", folder, file)
    if cluster.get("tls-server-name"):
        tls["server_hostname"] = cluster["tls-server-name"]
    tls["cert_file"] = _file_or_data(user, "client-certificate", folder, file)
    tls["key_file"] = _file_or_data(user, "client-key", folder, file)
    if user.get("tokenFile"):  # read again now and then, and ahead of `token` (as client-go)
        credentials = _token_file(folder / Path(user["tokenFile"]).expanduser())
    else:
        headers = {"authorization": f"Bearer {user['token']}"} if user.get("token") else {}
        credentials = headers.copy
    proxy = cluster.get("proxy-url")
    return Connection(server, _pool(server, tls, proxy), credentials)


def _file_or_data(fields: dict, name: str, folder: Path, file: Path) -> str | None:
    """The path of `name`'s file, relative to the kubeconfig's folder, or of a private
    copy of `name-data` (TLS reads certificates and keys from files)."""
    if fields.get(f"{name}-data"):
        try:
            content = base64.b64decode(fields[f"{name}-data"], validate=True)
        except (binascii.Error, ValueError, TypeError):
            raise ConfigError(f"the kubeconfig {file}: {name}-data is not base64") from None
        return _private_file(content)
    if fields.get(name):
        found = folder / Path(fields[name]).expanduser()
        if not found.is_file():
            raise ConfigError(f"the kubeconfig {file}: {name} {found} does not exist")
        return str(found)
    return None


@functools.cache
def _private_folder() -> str:
    """This process's folder (mode 0700) for copies of certificates and keys, removed at exit."""
    folder = tempfile.mkdtemp(prefix="c2d-kube-")
    atexit.register(shutil.rmtree, folder, True)
    return folder


def _private_file(content: bytes) -> str:
    handle, path = tempfile.mkstemp(dir=_private_folder())
    with os.fdopen(handle, "wb") as out:
        out.write(content)
    return path


def _token_file(path: Path) -> Credentials:
    """A bearer token read from `path` on every call (AuthHeaders asks every few seconds)."""
    def credentials() -> dict[str, str]:
        token = path.read_text(encoding="utf-8").strip()
        if not token:
            raise OSError(f"the token file {path} is empty")
        return {"authorization": f"Bearer {token}"}
    return credentials


def _pool(server: str, tls: dict[str, Any], proxy: str | None = None) -> urllib3.PoolManager:
    """A pool to `server`: through `proxy`, else through the environment's proxy for it."""
    options = {"maxsize": POOL_SIZE, **{k: v for k, v in tls.items() if v is not None}}
    proxy = proxy or environment_proxy(server)
    if not proxy:
        return urllib3.PoolManager(**options)
    if urlsplit(proxy).scheme.startswith("socks"):
        from urllib3.contrib.socks import SOCKSProxyManager  # noqa: PLC0415 - needs PySocks
        return SOCKSProxyManager(proxy, **options)
    return urllib3.ProxyManager(proxy, **options)


def environment_proxy(server: str, proxies: dict[str, str] | None = None) -> str | None:
    """The proxy HTTPS_PROXY (HTTP_PROXY, ALL_PROXY) names for `server`, unless NO_PROXY
    exempts it by name, domain, address or network, as client-go reads them."""
    proxies = getproxies() if proxies is None else proxies
    parts = urlsplit(server)
    proxy = proxies.get(parts.scheme) or proxies.get("all")
    if not proxy or not parts.hostname:
        return None
    host = parts.hostname.lower()
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for entry in (e.strip().lower().lstrip(".") for e in proxies.get("no", "").split(",")):
        if not entry:
            continue
        if entry == "*" or entry in (host, parts.netloc.lower()) or host.endswith(f".{entry}"):
            return None
        with contextlib.suppress(ValueError):
            if address is not None and address in ipaddress.ip_network(entry, False):
                return None
    return proxy


def _official(path: str) -> Connection:
    """The official loader, for a kubeconfig this module does not read itself."""
    from kubernetes import client, config  # noqa: PLC0415 - 0.3-0.6 s: only when needed

    configuration = client.Configuration()
    try:
        config.load_kube_config(config_file=path, client_configuration=configuration)
    except config.ConfigException as error:
        raise ConfigError(f"the kubeconfig {path}: {error}") from None
    return Connection.of_client(client.ApiClient(configuration))

