"""shared.kube against a real HTTP API server (devstack's embedded one): create_or_get,
compare-and-set with 409 retries, permissions, error classes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs

import pytest
import yaml
from kubernetes.client import ApiClient, Configuration

from shared import kube
from shared import workflow as wf
from shared.connection import Connection, connect
from shared.kube import Conflict, Kube, KubeError, NotPermitted

from .helpers import CRD_FILE, create_workflow, make_workflow, recording_server

try:
    from devstack.apiserver import APIServer
    from devstack.kubeconfig import write_kubeconfig
except ImportError as error:  # pragma: no cover - only while devstack is being built
    pytest.skip(f"devstack.apiserver cannot be imported yet ({error}); these tests need the "
                "embedded API server", allow_module_level=True)

NAMESPACE = "default"


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[APIServer, Path]]:
    srv = APIServer(crd_files=[CRD_FILE], log_dir=tmp_path_factory.mktemp("logs"))
    url = srv.start()
    try:
        yield srv, write_kubeconfig(url, tmp_path_factory.mktemp("kube") / "config")
    finally:
        srv.stop()


@pytest.fixture
def k(server) -> Kube:
    return Kube(connect(str(server[1])))


def new_workflow(k: Kube, name: str) -> dict:
    return create_workflow(k, name, NAMESPACE)


def configmap(name: str, **data: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": NAMESPACE}, "data": data}


def test_connect_reads_the_kubeconfig(server):
    srv, path = server
    connection = connect(str(path))
    assert connection.host == srv.url
    assert connection.credentials() == {"authorization": "Bearer c2d-embedded"}


def test_create_or_get_returns_the_existing_object(k):
    first = k.create_or_get(configmap("cog-1", a="1"))
    assert first["metadata"]["uid"] and first["metadata"]["resourceVersion"]
    again = k.create_or_get(configmap("cog-1", a="2"))
    assert again["metadata"]["uid"] == first["metadata"]["uid"]
    assert again["data"] == {"a": "1"}
    assert k.get("ConfigMap", NAMESPACE, "cog-1")["data"] == {"a": "1"}


def test_get_or_create_creates_once_then_reads(k):
    created = k.get_or_create(configmap("goc-1", a="1"))
    assert created["metadata"]["uid"] and created["data"] == {"a": "1"}
    again = k.get_or_create(configmap("goc-1", a="2"))
    assert again["metadata"]["uid"] == created["metadata"]["uid"]
    assert again["data"] == {"a": "1"}


def test_create_or_get_of_a_workflow(k):
    created = new_workflow(k, "cog-wf")
    body = make_workflow(name="cog-wf", namespace=NAMESPACE)
    del body["metadata"]["uid"], body["metadata"]["resourceVersion"]
    assert k.create_or_get(body)["metadata"]["uid"] == created["metadata"]["uid"]


def test_plain_create_of_an_existing_object_is_a_conflict(k):
    k.create(configmap("dup-1"))
    with pytest.raises(Conflict) as caught:
        k.create(configmap("dup-1"))
    assert (caught.value.status, caught.value.reason) == (409, "AlreadyExists")
    assert not caught.value.transient


def test_get_list_and_delete(k):
    assert k.get("ConfigMap", NAMESPACE, "nothing-here") is None
    assert k.delete("ConfigMap", NAMESPACE, "nothing-here") is False
    labelled = configmap("listed-1")
    labelled["metadata"]["labels"] = {"c2d.oceanprotocol.com/workflow": "listed"}
    k.create(labelled)
    k.create(configmap("listed-2"))
    found = k.list("ConfigMap", NAMESPACE, "c2d.oceanprotocol.com/workflow=listed")
    assert [o["metadata"]["name"] for o in found] == ["listed-1"]
    assert k.delete("ConfigMap", NAMESPACE, "listed-1") is True
    assert k.get("ConfigMap", NAMESPACE, "listed-1") is None


def test_a_name_with_slashes_stays_one_path_segment(k):
    # A name from an event is not trusted: "../" must not reach another resource.
    k.create(configmap("target"))
    assert k.get("ConfigMap", NAMESPACE, "x/../target") is None
    assert k.get("ConfigMap", NAMESPACE, "../configmaps/target") is None
    assert kube.KINDS["Job"].path("a/b", "../c") == "/apis/batch/v1/namespaces/a%2Fb/jobs/..%2Fc"


def test_update_status_writes_with_compare_and_set(k):
    created = new_workflow(k, "cas-1")
    written = k.update_status("Workflow", NAMESPACE, "cas-1",
                              lambda obj: wf.transition(wf.status(obj), wf.QUEUED))
    assert written["status"]["statusCode"] == 1 and written["status"]["phase"] == "Queued"
    assert written["metadata"]["resourceVersion"] != created["metadata"]["resourceVersion"]
    assert k.get("Workflow", NAMESPACE, "cas-1")["status"]["statusText"] == "Warming up"
    assert k.get("Workflow", NAMESPACE, "cas-1")["spec"] == created["spec"]


def test_nothing_to_change_writes_nothing(k):
    created = new_workflow(k, "cas-2")
    seen = []
    assert k.update_status("Workflow", NAMESPACE, "cas-2",
                           lambda obj: seen.append(obj) or None) is None
    assert len(seen) == 1
    after = k.get("Workflow", NAMESPACE, "cas-2")
    assert after["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]


def test_update_status_of_a_missing_object(k):
    assert k.update_status("Workflow", NAMESPACE, "never-created", lambda obj: {}) is None


@pytest.fixture
def pauses(monkeypatch) -> list[float]:
    """The pauses this thread makes (they still happen: other threads share `time`)."""
    made: list[float] = []
    sleep, caller = kube.time.sleep, threading.get_ident()

    def recorded(seconds: float) -> None:
        if threading.get_ident() == caller:
            made.append(seconds)
        sleep(seconds)

    monkeypatch.setattr(kube.time, "sleep", recorded)
    return made


def test_conflict_is_retried_from_a_fresh_read(server, k, pauses):
    """Another writer slips in between our read and our write: we retry at once, nothing
    is lost."""
    other = Kube(connect(str(server[1])))
    new_workflow(k, "race-1")
    calls = []

    def ours(obj: dict) -> dict:
        calls.append(obj["metadata"]["resourceVersion"])
        if len(calls) == 1:  # the other writer wins the race once
            other.update_status("Workflow", NAMESPACE, "race-1", lambda o: {
                **wf.status(o), "notifications": {"start": "2025-01-01T00:00:00Z"}})
        return wf.transition(wf.status(obj), wf.STARTED)

    written = k.update_status("Workflow", NAMESPACE, "race-1", ours)
    assert len(calls) == 2 and calls[0] != calls[1]
    assert written["status"]["statusCode"] == wf.STARTED
    assert written["status"]["notifications"] == {"start": "2025-01-01T00:00:00Z"}
    assert pauses == []  # the winner's write is stored: nothing to wait for


def test_racing_writers_lose_no_update(server):
    """Four clients append to the same status concurrently; every append survives."""
    path = str(server[1])
    setup = Kube(connect(path))
    new_workflow(setup, "race-2")
    writers, rounds = 4, 5
    errors: list[BaseException] = []

    def append(writer: int) -> None:
        k = Kube(connect(path))
        try:
            for n in range(rounds):
                k.update_status("Workflow", NAMESPACE, "race-2", lambda obj, n=n: {
                    **wf.status(obj), "results": [*wf.status(obj).get("results", []), {
                        "index": writer * 100 + n, "filename": f"w{writer}-{n}",
                        "type": "output"}]}, attempts=100)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=append, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    results = setup.get("Workflow", NAMESPACE, "race-2")["status"]["results"]
    assert sorted(r["index"] for r in results) == sorted(
        w * 100 + n for w in range(writers) for n in range(rounds))


def test_a_known_copy_saves_the_read_and_a_stale_one_costs_a_fresh_read(server, k):
    created = new_workflow(k, "known-1")
    seen: list[str] = []

    def started(obj: dict) -> dict:
        seen.append(obj["metadata"]["resourceVersion"])
        return wf.transition(wf.status(obj), wf.STARTED)

    first = k.update_status("Workflow", NAMESPACE, "known-1", started, known=created)
    assert seen == [created["metadata"]["resourceVersion"]]  # no read before the write
    assert first["status"]["statusCode"] == wf.STARTED

    seen.clear()  # `created` is stale now: its write conflicts, a fresh read follows
    second = k.update_status("Workflow", NAMESPACE, "known-1",
                             lambda obj: started(obj) | {"message": "again"}, known=created)
    assert seen == [created["metadata"]["resourceVersion"], first["metadata"]["resourceVersion"]]
    assert second["status"]["message"] == "again"


def test_a_stale_known_copy_that_needs_nothing_is_checked_against_a_fresh_read(server, k):
    created = new_workflow(k, "known-2")
    k.update_status("Workflow", NAMESPACE, "known-2",
                    lambda obj: {**wf.status(obj), "message": "set elsewhere"})
    written = k.update_status(
        "Workflow", NAMESPACE, "known-2", known=created,
        change=lambda obj: {**wf.status(obj), "message": "cleared"}
        if wf.status(obj).get("message") else None)
    assert written is not None and written["status"]["message"] == "cleared"


def test_a_copy_without_resource_version_is_never_written_blindly(server, k):
    new_workflow(k, "known-3")
    k.update_status("Workflow", NAMESPACE, "known-3",
                    lambda obj: {**wf.status(obj), "message": "first"})
    blind = {**make_workflow(name="known-3", namespace=NAMESPACE)}
    blind["metadata"] = {k_: v for k_, v in blind["metadata"].items() if k_ != "resourceVersion"}
    written = k.update_status("Workflow", NAMESPACE, "known-3", known=blind,
                              change=lambda obj: {**wf.status(obj), "message":
                                                  f"after {wf.status(obj).get('message')}"})
    assert written["status"]["message"] == "after first"  # decided on the stored object


def test_endless_conflicts_end_in_conflict(server, k, pauses):
    other = Kube(connect(str(server[1])))
    new_workflow(k, "race-3")
    count = []

    def always_beaten(obj: dict) -> dict:
        count.append(1)
        other.update_status("Workflow", NAMESPACE, "race-3",
                            lambda o: {**wf.status(o), "message": f"other {len(count)}"})
        return {**wf.status(obj), "message": "ours"}

    with pytest.raises(Conflict) as caught:
        k.update_status("Workflow", NAMESPACE, "race-3", always_beaten, attempts=3)
    assert len(count) == 3 and caught.value.status == 409
    assert pauses == [0.005]  # none before the first retry, none after the last try
    assert k.get("Workflow", NAMESPACE, "race-3")["status"]["message"] == "other 3"


def test_update_replaces_the_whole_object_with_compare_and_set(k):
    new_workflow(k, "upd-1")
    written = k.update("Workflow", NAMESPACE, "upd-1", lambda obj: {
        **obj, "spec": {**obj["spec"], "stopRequested": True}})
    assert written["spec"]["stopRequested"] is True
    assert wf.stop_requested(k.get("Workflow", NAMESPACE, "upd-1"))


def test_missing_permission_is_refused_before_any_call(server, k):
    limited = Kube(connect(str(server[1])), permissions=[("configmaps", "get"),
                                                                  ("workflows", "get")])
    with pytest.raises(NotPermitted) as caught:
        limited.create(configmap("forbidden-1"))
    assert caught.value.status == 403 and not caught.value.transient
    assert "create configmaps" in str(caught.value)
    assert k.get("ConfigMap", NAMESPACE, "forbidden-1") is None
    new_workflow(k, "perm-1")
    with pytest.raises(NotPermitted, match="workflows/status"):
        limited.update_status("Workflow", NAMESPACE, "perm-1", lambda obj: {"message": "x"})
    assert "status" not in k.get("Workflow", NAMESPACE, "perm-1") or \
        "message" not in k.get("Workflow", NAMESPACE, "perm-1")["status"]


def test_declared_permissions_are_enough(server, k):
    new_workflow(k, "perm-2")
    limited = Kube(connect(str(server[1])), permissions=[
        ("workflows", "get"), ("workflows/status", "update")])
    written = limited.update_status("Workflow", NAMESPACE, "perm-2",
                                    lambda obj: wf.transition(wf.status(obj), wf.QUEUED))
    assert written["status"]["statusCode"] == wf.QUEUED


def test_invalid_object_is_a_permanent_error(k):
    body = make_workflow(name="invalid-1", namespace=NAMESPACE)
    del body["metadata"]["uid"], body["metadata"]["resourceVersion"]
    del body["spec"]["metadata"]["stages"]
    with pytest.raises(KubeError) as caught:
        k.create(body)
    assert caught.value.status == 422 and not caught.value.transient


def test_stopped_server_is_a_transient_error(tmp_path):
    srv = APIServer(crd_files=[CRD_FILE], log_dir=tmp_path / "logs")
    url = srv.start()
    try:
        k = Kube(connect(str(write_kubeconfig(url, tmp_path / "config"))), timeout=5)
        assert k.get("ConfigMap", NAMESPACE, "anything") is None  # reachable while it runs
    finally:
        srv.stop()
    with pytest.raises(KubeError) as caught:
        k.get("ConfigMap", NAMESPACE, "anything")
    assert caught.value.status == 0 and caught.value.transient
    assert not isinstance(caught.value, Conflict | NotPermitted)


@pytest.mark.parametrize("status, transient", [
    (0, True), (429, True), (500, True), (502, True), (503, True), (504, True),
    (400, False), (401, False), (403, False), (404, False), (409, False), (410, False),
    (422, False)])
def test_transient_or_permanent(status, transient):
    assert KubeError("x", status=status).transient is transient


def test_api_errors_keep_the_status_reason():
    body = '{"kind":"Status","reason":"AlreadyExists","message":"exists","code":409}'
    converted = kube._error(409, body, "Conflict", "create configmaps")
    assert isinstance(converted, Conflict)
    assert (converted.status, converted.reason) == (409, "AlreadyExists")
    assert "exists" in str(converted)
    plain = kube._error(500, b"not json", "boom", "get jobs")
    assert type(plain) is KubeError and plain.status == 500 and plain.transient
    assert "boom" in str(plain)


def test_requests_carry_the_token_and_the_selectors_as_sent(tmp_path):
    selector = "job-name=wf-1-configure,tier in (a b,c)"
    with recording_server() as (port, seen):
        k = Kube(connect(str(write_kubeconfig(f"http://127.0.0.1:{port}", tmp_path / "config"))))
        assert k.list("ConfigMap", NAMESPACE, label_selector=selector) == []
    route, _, query = seen[-1]["path"].partition("?")
    assert route == f"/api/v1/namespaces/{NAMESPACE}/configmaps"
    assert parse_qs(query) == {"labelSelector": [selector]}
    assert seen[-1]["headers"]["authorization"] == "Bearer c2d-embedded"


@pytest.mark.filterwarnings("ignore:URLs without a scheme:FutureWarning")  # urllib3's, on ""
def test_a_client_without_a_host_fails_on_its_first_call_not_before():
    """Building the stage must not fail: the handler's call answers 503 and is retried."""
    k = Kube(Connection.of_client(ApiClient()))
    with pytest.raises(KubeError, match="unreachable") as failed:
        k.get("ConfigMap", NAMESPACE, "x")
    assert failed.value.transient


def test_a_kubeconfig_proxy_gets_whole_urls(tmp_path):
    """Calls go straight to the host's connection pool, except through a proxy."""
    with recording_server() as (port, seen):
        config = write_kubeconfig("http://kube.invalid:6443", tmp_path / "config")
        document = yaml.safe_load(config.read_text())
        document["clusters"][0]["cluster"]["proxy-url"] = f"http://127.0.0.1:{port}"
        config.write_text(yaml.safe_dump(document))
        assert Kube(connect(str(config))).list("ConfigMap", NAMESPACE) == []
    assert seen[-1]["path"] == \
        f"http://kube.invalid:6443/api/v1/namespaces/{NAMESPACE}/configmaps"
    assert seen[-1]["headers"]["authorization"] == "Bearer c2d-embedded"


def test_auth_headers_are_asked_for_again_only_every_few_seconds(monkeypatch):
    """A kubeconfig's refresh hook re-applies the whole file: not on every call."""
    configuration = Configuration()
    configuration.api_key = {"BearerToken": "first"}
    configuration.api_key_prefix = {"BearerToken": "Bearer"}
    now = [1000.0]
    monkeypatch.setattr(kube.time, "monotonic", lambda: now[0])
    auth = kube.AuthHeaders(Connection.of_client(ApiClient(configuration)).credentials)
    assert auth.headers() == {"authorization": "Bearer first"}
    configuration.api_key["BearerToken"] = "rotated"
    now[0] += kube.AuthHeaders.REFRESH_SECONDS - 0.1
    assert auth.headers() == {"authorization": "Bearer first"}
    now[0] += 0.1
    assert auth.headers() == {"authorization": "Bearer rotated"}
