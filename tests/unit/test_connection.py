"""shared.connection: a pod's ServiceAccount and kubeconfigs, read without the official
client, against real HTTP and HTTPS servers (TLS with a CA and client certificates made
here); kubeconfigs it does not read go to the official loader."""

from __future__ import annotations

import base64
import datetime
import json
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from shared import connection
from shared.connection import ConfigError, connect, environment_proxy, from_kubeconfig, in_cluster
from shared.kube import Kube, KubeError

from .helpers import recording_server

# ------------------------------------------------------------------ certificates


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _certificate(subject: str, key, issuer: tuple | None = None, ca: bool = False,
                 server: bool = False) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    issuer_name, issuer_key = issuer if issuer else (name, key)
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(issuer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(hours=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost")]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(item) -> bytes:
    if isinstance(item, x509.Certificate):
        return item.public_bytes(serialization.Encoding.PEM)
    return item.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption())


@pytest.fixture(scope="module")
def pki() -> dict[str, bytes]:
    """A CA, a server certificate for localhost and a client certificate, all PEM."""
    ca_key, server_key, client_key = _key(), _key(), _key()
    ca = _certificate("c2d test CA", ca_key, ca=True)
    issuer = (ca.subject, ca_key)
    return {"ca": _pem(ca), "server": _pem(_certificate("localhost", server_key, issuer,
                                                        server=True)),
            "server_key": _pem(server_key),
            "client": _pem(_certificate("c2d-configure", client_key, issuer)),
            "client_key": _pem(client_key)}


@pytest.fixture(scope="module")
def secure(pki, tmp_path_factory) -> Iterator[tuple[int, list[dict]]]:
    """An HTTPS server for localhost that asks for (and checks) a client certificate."""
    folder = tmp_path_factory.mktemp("server")
    (folder / "cert.pem").write_bytes(pki["server"])
    (folder / "key.pem").write_bytes(pki["server_key"])
    (folder / "ca.pem").write_bytes(pki["ca"])
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    tls.load_verify_locations(folder / "ca.pem")
    tls.verify_mode = ssl.CERT_OPTIONAL
    with recording_server(tls) as served:
        yield served


@pytest.fixture(scope="module")
def plain() -> Iterator[tuple[int, list[dict]]]:
    """A plain HTTP server (the embedded API's kind, or a proxy)."""
    with recording_server() as served:
        yield served


def _kubeconfig(path: Path, cluster: dict, user: dict | None = None) -> str:
    document = {
        "apiVersion": "v1", "kind": "Config", "current-context": "here",
        "clusters": [{"name": "there", "cluster": cluster}],
        "users": [{"name": "me", "user": user or {}}],
        "contexts": [{"name": "here", "context": {"cluster": "there", "user": "me"}}]}
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return str(path)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _last_request(k: Kube, server: tuple[int, list[dict]]) -> dict:
    """What `server` saw of a list through `k`; `authorization`: that header or None."""
    assert k.list("ConfigMap", "default") == []
    seen = server[1][-1]
    return {**seen, "authorization": seen["headers"].get("authorization")}


# ------------------------------------------------------------------ kubeconfigs


def test_a_kubeconfig_with_embedded_ca_and_client_certificate(pki, secure, tmp_path):
    config = _kubeconfig(tmp_path / "config", {
        "server": f"https://localhost:{secure[0]}",
        "certificate-authority-data": _b64(pki["ca"])}, {
        "client-certificate-data": _b64(pki["client"]),
        "client-key-data": _b64(pki["client_key"])})
    seen = _last_request(Kube(connect(config)), secure)
    assert seen["client"] == {"commonName": "c2d-configure"}
    assert seen["path"] == "/api/v1/namespaces/default/configmaps"


def test_files_named_in_a_kubeconfig_are_relative_to_it(pki, secure, tmp_path):
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "ca.pem").write_bytes(pki["ca"])
    config = _kubeconfig(tmp_path / "config", {
        "server": f"https://localhost:{secure[0]}",
        "certificate-authority": "certs/ca.pem"}, {"token": "abc"})
    seen = _last_request(Kube(connect(config)), secure)
    assert seen["authorization"] == "Bearer abc" and seen["client"] is None


def test_a_server_the_ca_did_not_sign_is_refused(pki, secure, tmp_path):
    other_ca = _pem(_certificate("someone else", _key(), ca=True))
    config = _kubeconfig(tmp_path / "config", {
        "server": f"https://localhost:{secure[0]}",
        "certificate-authority-data": _b64(other_ca)}, {"token": "abc"})
    with pytest.raises(KubeError, match="unreachable.*CERTIFICATE_VERIFY_FAILED"):
        Kube(connect(config)).list("ConfigMap", "default")


@pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")
def test_insecure_skip_tls_verify_skips_it(secure, tmp_path):
    config = _kubeconfig(tmp_path / "config", {
        "server": f"https://localhost:{secure[0]}", "insecure-skip-tls-verify": True})
    assert _last_request(Kube(connect(config)), secure)["authorization"] is None


def test_a_token_file_is_read_again(plain, tmp_path):
    token = tmp_path / "token"
    token.write_text("first\n")
    config = _kubeconfig(tmp_path / "config", {"server": f"http://127.0.0.1:{plain[0]}"},
                         {"tokenFile": str(token), "token": "ignored"})
    credentials = connect(config).credentials
    assert credentials() == {"authorization": "Bearer first"}
    token.write_text("rotated")
    assert credentials() == {"authorization": "Bearer rotated"}


def test_kubeconfig_variable_and_default_location(plain, tmp_path, monkeypatch):
    config = _kubeconfig(tmp_path / "config", {"server": f"http://127.0.0.1:{plain[0]}"})
    monkeypatch.setenv("KUBECONFIG", config)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert connect().host == f"http://127.0.0.1:{plain[0]}"
    monkeypatch.delenv("KUBECONFIG")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(ConfigError, match=r"home/\.kube/config"):
        connect()


@pytest.mark.parametrize("document, problem", [
    ("clusters: [", "is not YAML"),
    ("- a list", "is not a mapping"),
    ("clusters: []", "has no current-context"),
    ({"current-context": "gone"}, "no contexts entry named 'gone'"),
    ({"current-context": "here", "contexts": [{"name": "here", "context": {"cluster": "x"}}]},
     "no clusters entry named 'x'"),
])
def test_a_broken_kubeconfig_says_what_is_wrong(tmp_path, document, problem):
    path = tmp_path / "config"
    path.write_text(document if isinstance(document, str) else yaml.safe_dump(document))
    with pytest.raises(ConfigError, match=problem) as caught:
        from_kubeconfig(str(path))
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("cluster, user, problem", [
    ({"server": "127.0.0.1:6443"}, {}, "server '127.0.0.1:6443' is not an http"),
    ({"server": "file:///etc/passwd"}, {}, "is not an http"),
    ({"server": "https://h", "certificate-authority-data": "not base64!"}, {},
     "certificate-authority-data is not base64"),
    ({"server": "https://h", "certificate-authority": "../../nowhere.pem"}, {},
     "certificate-authority .*nowhere.pem does not exist"),
    ({"server": "https://h"}, {"client-key": "missing.key"}, "client-key .*does not exist"),
])
def test_a_bad_field_is_named(tmp_path, cluster, user, problem):
    with pytest.raises(ConfigError, match=problem):
        from_kubeconfig(_kubeconfig(tmp_path / "config", cluster, user))


def test_a_missing_kubeconfig_is_named(tmp_path):
    with pytest.raises(ConfigError, match=f"cannot read the kubeconfig {tmp_path}/nope"):
        from_kubeconfig(str(tmp_path / "nope"))


def test_what_it_does_not_read_goes_to_the_official_loader(plain, tmp_path):
    """An exec plugin: the official client runs it and sends the token it prints."""
    credential = {"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                  "status": {"token": "from-exec"}}
    config = _kubeconfig(tmp_path / "config", {"server": f"http://127.0.0.1:{plain[0]}"}, {
        "exec": {"apiVersion": "client.authentication.k8s.io/v1", "command": sys.executable,
                 "args": ["-c", f"print({json.dumps(json.dumps(credential))})"],
                 "interactiveMode": "Never"}})
    assert _last_request(Kube(connect(config)), plain)["authorization"] == "Bearer from-exec"


def test_several_kubeconfig_files_are_merged_by_the_official_loader(plain, tmp_path,
                                                                     monkeypatch):
    first = _kubeconfig(tmp_path / "a", {"server": f"http://127.0.0.1:{plain[0]}"},
                        {"token": "merged"})
    second = tmp_path / "b"
    second.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config"}))
    monkeypatch.setenv("KUBECONFIG", f"{second}:{first}")
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    assert _last_request(Kube(connect()), plain)["authorization"] == "Bearer merged"


def test_importing_the_functions_leaves_the_official_client_out():
    """It was half of a cold start: only a kubeconfig this module cannot read brings it in."""
    code = ("import sys, functions.configure.app, functions.algorithm.app, "
            "functions.publish.app, functions.notify.app; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'kubernetes'))")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, timeout=60)
    assert found.stdout.strip() == "[]"


# ------------------------------------------------------------------ in a pod


@pytest.fixture
def account(pki, tmp_path) -> Path:
    folder = tmp_path / "serviceaccount"
    folder.mkdir()
    (folder / "token").write_text("sa-token")
    (folder / "ca.crt").write_bytes(pki["ca"])
    return folder


def test_in_a_pod_the_service_account_is_used(account, secure, monkeypatch):
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "localhost")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(secure[0]))
    monkeypatch.setattr(connection, "SERVICE_ACCOUNT", account)
    found = connect()
    assert found.host == f"https://localhost:{secure[0]}"
    assert _last_request(Kube(found), secure)["authorization"] == "Bearer sa-token"
    (account / "token").write_text("rotated")  # the kubelet rotates it in place
    assert found.credentials() == {"authorization": "Bearer rotated"}


def test_an_ipv6_service_address_is_bracketed(account):
    found = in_cluster({"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"},
                       account)
    assert found.host == "https://[fd00::1]:443"


@pytest.mark.parametrize("environ, missing, problem", [
    ({"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, None, "KUBERNETES_SERVICE_PORT must both"),
    ({"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}, "token",
     "token is missing or empty"),
    ({"KUBERNETES_SERVICE_HOST": "10.0.0.1", "KUBERNETES_SERVICE_PORT": "443"}, "ca.crt",
     "ca.crt is missing or empty"),
])
def test_a_pod_without_its_account_says_what_is_missing(account, environ, missing, problem):
    if missing:
        (account / missing).write_text("")
    with pytest.raises(ConfigError, match=problem):
        in_cluster(environ, account)


def test_a_token_gone_later_is_a_transient_failure(account, secure):
    found = in_cluster({"KUBERNETES_SERVICE_HOST": "localhost",
                        "KUBERNETES_SERVICE_PORT": str(secure[0])}, account)
    (account / "token").unlink()
    with pytest.raises(KubeError, match="unreachable.*token") as caught:
        Kube(found).list("ConfigMap", "default")
    assert caught.value.transient


# ------------------------------------------------------------------ proxies


@pytest.mark.parametrize("server, no_proxy, proxied", [
    ("https://10.96.0.1:443", "", True),
    ("https://10.96.0.1:443", "10.96.0.0/12", False),
    ("https://10.112.0.1:443", "10.96.0.0/12", True),
    ("https://kubernetes.default.svc:443", ".svc,.cluster.local", False),
    ("https://api.example.com:6443", "example.com", False),
    ("https://notexample.com:6443", "example.com", True),
    ("https://api.example.com:6443", "api.example.com:6443", False),
    ("https://api.example.com:6443", " , *", False),
    ("http://127.0.0.1:8080", "", None),  # no http proxy set
])
def test_environment_proxy_and_no_proxy(server, no_proxy, proxied):
    proxies = {"https": "http://proxy:3128", "no": no_proxy}
    expected = "http://proxy:3128" if proxied else None
    assert environment_proxy(server, proxies) == expected


def test_the_environment_proxy_carries_the_calls(plain, tmp_path, monkeypatch):
    """HTTP_PROXY pointing at the recorder: it gets the whole URL, as a proxy does (the
    server's name does not resolve: only the proxy can answer)."""
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{plain[0]}")
    monkeypatch.setenv("NO_PROXY", "")
    config = _kubeconfig(tmp_path / "config", {"server": "http://kube.invalid:6443"},
                         {"token": "t"})
    seen = _last_request(Kube(connect(config)), plain)
    assert seen["path"] == "http://kube.invalid:6443/api/v1/namespaces/default/configmaps"
