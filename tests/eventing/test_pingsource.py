"""The PingSource: event shape, ticking by period and by `fire()`, wiring to the Broker."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from devstack.eventing import ManifestError, load_manifests, start_eventing
from devstack.eventing.manifests import DEFAULT_MANIFESTS_DIR, find_one
from devstack.eventing.pingsource import PingSource

from .helpers import trigger, write_manifests


def ping_manifest(**spec: object) -> dict:
    return {"apiVersion": "sources.knative.dev/v1", "kind": "PingSource",
            "metadata": {"name": "c2d-resync"},
            "spec": {"schedule": "* * * * *",
                     "sink": {"ref": {"apiVersion": "eventing.knative.dev/v1",
                                      "kind": "Broker", "name": "c2d"}},
                     **spec}}


def load_ping(folder: Path, doc: dict) -> object:
    write_manifests(folder, doc, filename="sources.yaml")
    return find_one(load_manifests(folder), "PingSource", "sources.knative.dev", "c2d-resync")


def test_fire_sends_the_real_adapters_event(tmp_path, subscriber_factory) -> None:
    sink = subscriber_factory()
    manifest = load_ping(tmp_path, ping_manifest(contentType="application/json",
                                                 data='{"reason": "resync"}',
                                                 ceOverrides={"extensions": {"c2d": "yes"}}))
    ping = PingSource(manifest, sink.url, namespace="c2d")
    try:
        assert ping.fire().status == 202
        assert ping.fire().status == 202
    finally:
        ping.stop()
    first, second = sink.wait_for(2)
    assert first.header("ce-type") == "dev.knative.sources.ping"
    assert first.header("ce-source") == "/apis/v1/namespaces/c2d/pingsources/c2d-resync"
    assert first.header("Content-Type") == "application/json"
    assert first.header("ce-c2d") == "yes"
    assert json.loads(first.body) == {"reason": "resync"}
    assert first.header("ce-id") != second.header("ce-id")
    assert first.event.get_time() is not None


def test_data_base64(tmp_path, subscriber_factory) -> None:
    sink = subscriber_factory()
    manifest = load_ping(tmp_path, ping_manifest(contentType="text/plain", dataBase64="aGk="))
    ping = PingSource(manifest, sink.url)
    ping.fire()
    ping.stop()
    [got] = sink.wait_for(1)
    assert got.body == b"hi"


def test_period_override_ticks_repeatedly(tmp_path, subscriber_factory) -> None:
    sink = subscriber_factory()
    ping = PingSource(load_ping(tmp_path, ping_manifest()), sink.url, period=0.05).start()
    started = time.monotonic()
    try:
        sink.wait_for(3, timeout=5)
    finally:
        ping.stop()
    assert time.monotonic() - started >= 0.14  # three periods, not faster
    count = len(sink.received)
    time.sleep(0.15)  # stopped: no tick may follow (this sleep is the observation window)
    assert len(sink.received) == count


def test_a_failing_sink_is_retried_then_dropped(tmp_path, subscriber_factory) -> None:
    sink = subscriber_factory()
    sink.respond = lambda r: (503, {}, b"")
    ping = PingSource(load_ping(tmp_path, ping_manifest()), sink.url)
    response = ping.fire()
    ping.stop()
    assert response.status == 503
    assert len(sink.received) == 6  # 1 + 5 retries, as Knative's adapters


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"schedule": "every minute"}, "spec.schedule"),
        ({"data": "x", "dataBase64": "eA=="}, "not both"),
        ({"dataBase64": "***"}, "not base64"),
        ({"ceOverrides": {"extensions": {"Bad-Name": "x"}}}, "not a CloudEvents attribute"),
    ],
)
def test_bad_pingsource_is_a_clear_error(tmp_path, spec, message) -> None:
    with pytest.raises(ManifestError, match=message):
        PingSource(load_ping(tmp_path, ping_manifest(**spec)), "http://127.0.0.1:9")


def test_ping_through_the_broker_to_a_trigger(tmp_path, subscriber_factory) -> None:
    fn = subscriber_factory()
    write_manifests(tmp_path, ping_manifest(data="{}"), filename="sources.yaml")
    write_manifests(tmp_path, trigger("resync", service="fn",
                                      attributes={"type": "dev.knative.sources.ping"}))
    with start_eventing(tmp_path, services={"fn": fn.url}) as eventing:
        eventing.fire_ping("c2d-resync")
        [got] = fn.wait_for(1)
        assert got.header("ce-source") == "/apis/v1/namespaces/default/pingsources/c2d-resync"
        assert eventing.broker.wait_idle(5)


def test_real_manifests_resync_reaches_every_function(subscriber_factory) -> None:
    """knative/'s PingSource goes through knative/'s Triggers to the four functions."""
    if not (DEFAULT_MANIFESTS_DIR / "triggers.yaml").exists():
        pytest.skip("knative/triggers.yaml is not there yet")
    names = ["c2d-configure", "c2d-algorithm", "c2d-publish", "c2d-notify"]
    functions = {name: subscriber_factory() for name in names}
    with start_eventing(services={n: s.url for n, s in functions.items()},
                        namespace="c2d") as eventing:
        eventing.fire_ping()
        assert eventing.broker.wait_idle(5)
    for name, fn in functions.items():
        [got] = fn.wait_for(1)
        assert got.header("ce-type") == "dev.knative.sources.ping", name
