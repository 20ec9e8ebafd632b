"""Watch over HTTP: order, resume from a resourceVersion, 410 Gone, selectors, bookmarks."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import urllib3
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from devstack.apiserver import APIServer, handlers
from devstack.apiserver.store import Gone, Store, Watcher
from devstack.testing import wait_until


def _cm(name: str, **labels: str) -> dict:
    return {"metadata": {"name": name, "labels": labels}, "data": {"v": "0"}}


def _events(core: client.CoreV1Api, rv: str, count: int, **kw) -> list[tuple[str, str, str]]:
    out = []
    w = watch.Watch()
    for ev in w.stream(core.list_namespaced_config_map, "default", resource_version=rv,
                       timeout_seconds=5, **kw):
        obj = ev["raw_object"]
        out.append((ev["type"], obj["metadata"]["name"], obj["metadata"]["resourceVersion"]))
        if len(out) == count:
            w.stop()
    return out


def test_live_watch_delivers_added_modified_deleted_in_order(core: client.CoreV1Api) -> None:
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    seen: list[tuple[str, str, str]] = []
    started = threading.Event()

    def collect() -> None:
        started.set()
        seen.extend(_events(core, rv, 3))
    t = threading.Thread(target=collect)
    t.start()
    started.wait()
    core.create_namespaced_config_map("default", _cm("w"))
    core.patch_namespaced_config_map("w", "default", {"data": {"v": "1"}})
    core.delete_namespaced_config_map("w", "default")
    t.join(10)
    assert [(kind, name) for kind, name, _ in seen] == [
        ("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]
    versions = [int(v) for _, _, v in seen]
    assert versions == sorted(versions) and len(set(versions)) == 3


def test_watch_resumes_from_a_resource_version(core: client.CoreV1Api) -> None:
    first = core.create_namespaced_config_map("default", _cm("r1"))
    core.create_namespaced_config_map("default", _cm("r2"))
    core.patch_namespaced_config_map("r1", "default", {"data": {"v": "2"}})
    events = _events(core, first.metadata.resource_version, 2)
    assert [(k, n) for k, n, _ in events] == [("ADDED", "r2"), ("MODIFIED", "r1")]


def test_watch_without_version_lists_existing_objects_first(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map("default", _cm("e1"))
    core.create_namespaced_config_map("default", _cm("e2"))
    events = _events(core, "", 2)
    assert [(k, n) for k, n, _ in events] == [("ADDED", "e1"), ("ADDED", "e2")]


def test_watch_with_label_selector_sees_objects_leave_and_enter(core: client.CoreV1Api) -> None:
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    core.create_namespaced_config_map("default", _cm("s", app="x"))
    core.patch_namespaced_config_map("s", "default", {"metadata": {"labels": {"app": "y"}}})
    core.patch_namespaced_config_map("s", "default", {"metadata": {"labels": {"app": "x"}}})
    core.create_namespaced_config_map("default", _cm("other", app="y"))
    events = _events(core, rv, 3, label_selector="app=x")
    assert [(k, n) for k, n, _ in events] == [("ADDED", "s"), ("DELETED", "s"), ("ADDED", "s")]


def test_too_old_resource_version_is_410_gone(tmp_path: Path) -> None:
    srv = APIServer(data_dir=tmp_path / "data")
    srv.start()
    cfg = client.Configuration()
    cfg.host = srv.url
    core = client.CoreV1Api(client.ApiClient(cfg))
    old = core.create_namespaced_config_map("default", _cm("o")).metadata.resource_version
    core.patch_namespaced_config_map("o", "default", {"data": {"v": "1"}})
    srv.stop()
    srv = APIServer(data_dir=tmp_path / "data")   # history does not survive a restart
    cfg.host = srv.start()
    try:
        with pytest.raises(ApiException) as err:
            _events(client.CoreV1Api(client.ApiClient(cfg)), old, 1)
        assert err.value.status == 410
    finally:
        srv.stop()


def test_store_history_window_gives_gone() -> None:
    store = Store(history=3)
    for i in range(5):
        store.write("/configmaps", {"metadata": {"name": f"c{i}", "namespace": "d",
                                                 "uid": str(i)}}, None, create=True)
    with pytest.raises(Gone):
        store.watch("/configmaps", None, 1)
    w = store.watch("/configmaps", None, 3)
    assert [w.next(0)[1]["metadata"]["name"] for _ in range(2)] == ["c3", "c4"]
    w.close()


def _raw_watch(url: str, query: str) -> urllib3.response.BaseHTTPResponse:
    return urllib3.PoolManager().request(
        "GET", f"{url}/api/v1/namespaces/default/configmaps?watch=true&{query}",
        preload_content=False, timeout=urllib3.Timeout(connect=2, read=5))


def test_initial_events_end_with_a_bookmark(apiserver: APIServer,
                                            core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map("default", _cm("b1"))
    resp = _raw_watch(apiserver.url, "sendInitialEvents=true&allowWatchBookmarks=true"
                                     "&resourceVersionMatch=NotOlderThan&timeoutSeconds=1")
    lines = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
    assert [ev["type"] for ev in lines] == ["ADDED", "BOOKMARK"]
    assert lines[1]["object"]["metadata"]["annotations"] == {
        "k8s.io/initial-events-end": "true"}


def test_idle_watch_sends_bookmarks(apiserver: APIServer, core: client.CoreV1Api,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handlers, "BOOKMARK_EVERY", 0.1)
    monkeypatch.setattr(handlers, "IDLE_CHECK", 0.05)
    rv = core.create_namespaced_config_map("default", _cm("b2")).metadata.resource_version
    resp = _raw_watch(apiserver.url, f"resourceVersion={rv}&allowWatchBookmarks=true"
                                     "&timeoutSeconds=1")
    events = [json.loads(line) for line in resp.read().splitlines() if line.strip()]
    assert events and all(ev["type"] == "BOOKMARK" for ev in events)
    assert int(events[0]["object"]["metadata"]["resourceVersion"]) >= int(rv)


def test_stop_ends_open_watches_and_threads(tmp_path: Path) -> None:
    threads_before = threading.active_count()
    srv = APIServer()
    url = srv.start()
    resp = _raw_watch(url, "resourceVersion=0")
    done = threading.Event()

    def drain() -> None:
        try:
            resp.read()
        except Exception:  # the connection is cut: that is an end too
            pass
        done.set()
    threading.Thread(target=drain, daemon=True).start()
    srv.stop()
    wait_until(done.is_set, timeout=3, what="watch stream to end after stop()")
    wait_until(lambda: threading.active_count() <= threads_before, timeout=3,
             what="every server thread to end")


def test_every_watch_sends_the_same_line_encoded_once() -> None:
    store = Store()
    everything = store.watch("/configmaps", None, 0)
    also = store.watch("/configmaps", None, 0)
    labelled = store.watch("/configmaps", None, 0,
                           match=lambda o: (o["metadata"].get("labels") or {}).get("a") == "1")
    cm = {"metadata": {"name": "c", "namespace": "d", "uid": "u"}}
    store.write("/configmaps", cm, None, create=True)
    first, second = everything.next(0), also.next(0)
    assert Watcher.line(first) is Watcher.line(second)  # one encoding, shared
    assert json.loads(Watcher.line(first)) == {"type": "ADDED", "object": first[1]}

    old = store.get("/configmaps", ("d", "c"))
    store.write("/configmaps", {**old, "metadata": {**old["metadata"], "labels": {"a": "1"}}},
                old["metadata"]["resourceVersion"])
    modified, moved_in = everything.next(0), labelled.next(0)
    assert json.loads(Watcher.line(modified))["type"] == "MODIFIED"
    assert json.loads(Watcher.line(moved_in))["type"] == "ADDED"  # entered its selector
    assert moved_in[1] is modified[1]
    for watcher in (everything, also, labelled):
        watcher.close()
