"""The embedded Broker against real HTTP subscribers on 127.0.0.1."""

from __future__ import annotations

import base64
import json
import os
import statistics
import threading
import time
from pathlib import Path

import pytest
import urllib3

from devstack.eventing.broker import Broker, LocalSender
from devstack.eventing.events import make_event, to_http
from devstack.eventing.manifests import ManifestError

from .helpers import Received, reply_with, trigger, write_manifests

FAST = {"retry": 3, "backoffPolicy": "linear", "backoffDelay": "PT0.01S"}


def event(type_: str = "com.example.start", **extra: str) -> object:
    return make_event({"type": type_, "source": "/tests", **extra},
                      json.dumps({"name": "wf1"}).encode())


def post(url: str, headers: dict, body: bytes) -> urllib3.BaseHTTPResponse:
    return urllib3.request("POST", url, headers=headers, body=body, retries=False)


@pytest.fixture
def manifests(tmp_path: Path) -> Path:
    return tmp_path / "knative"


def start_broker(manifests: Path, services: dict[str, str],
                 recheck_seconds: float = 0.0) -> Broker:
    """A Broker that looks at its manifests on every event unless told otherwise."""
    return Broker(manifests, services=services, recheck_seconds=recheck_seconds).start()


@pytest.fixture
def broker_factory():
    brokers: list[Broker] = []

    def make(manifests: Path, services: dict[str, str], recheck_seconds: float = 0.0) -> Broker:
        brokers.append(start_broker(manifests, services, recheck_seconds))
        return brokers[-1]

    yield make
    for broker in brokers:
        broker.stop()


def test_binary_event_delivered_in_binary_mode_with_prefer_reply(
    manifests, subscriber_factory, broker_factory
) -> None:
    fn = subscriber_factory()
    write_manifests(manifests, trigger("t-start", service="fn", uri="/start",
                                       attributes={"type": "com.example.start"}))
    broker = broker_factory(manifests, {"fn": fn.url})
    headers, body = to_http(event(c2dworkflow="default/wf1"))
    assert post(broker.url, headers, body).status == 202
    [got] = fn.wait_for(1)
    assert got.path == "/start"
    assert got.header("Prefer") == "reply"
    assert got.header("ce-type") == "com.example.start"
    assert got.header("ce-c2dworkflow") == "default/wf1"
    assert json.loads(got.body) == {"name": "wf1"}
    assert got.header("ce-knativebrokerttl") is None  # the loop guard stays in the Broker
    assert broker.wait_idle(5)
    assert broker.counters["delivered"] == 1


def test_structured_input_is_accepted(manifests, subscriber_factory, broker_factory) -> None:
    fn = subscriber_factory()
    write_manifests(manifests, trigger("t", service="fn"))
    broker = broker_factory(manifests, {"fn": fn.url})
    ev = make_event({"type": "com.example.s", "source": "/x", "datacontenttype":
                     "application/json"}, b'[1, 2, "three"]')
    headers, body = to_http(ev, structured=True)
    assert headers["content-type"] == "application/cloudevents+json"
    assert post(broker.url, headers, body).status == 202
    [got] = fn.wait_for(1)
    assert got.header("ce-type") == "com.example.s"
    assert json.loads(got.body) == [1, 2, "three"]  # a JSON list survives the trip


@pytest.mark.parametrize(
    "headers, body, reason",
    [
        ({"content-type": "application/json"}, b'{"a": 1}', "not a CloudEvent"),
        ({"content-type": "application/cloudevents+json"}, b"{not json", "invalid CloudEvent"),
        ({"content-type": "application/cloudevents+json"}, b"[1]", "must be a JSON object"),
        ({"content-type": "application/cloudevents+json"},
         b'{"specversion": "1.0", "type": "t", "source": "/s"}', "id"),
        ({"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s"}, b"", "type"),
        ({"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t",
          "ce-time": "yesterday"}, b"", "invalid CloudEvent"),
        ({"ce-specversion": "9.9", "ce-id": "1", "ce-source": "/s", "ce-type": "t"}, b"",
         "invalid CloudEvent"),
    ],
)
def test_malformed_input_is_400(manifests, subscriber_factory, broker_factory,
                                headers, body, reason) -> None:
    fn = subscriber_factory()
    write_manifests(manifests, trigger("t", service="fn"))
    broker = broker_factory(manifests, {"fn": fn.url})
    response = post(broker.url, headers, body)
    assert response.status == 400
    assert reason in response.data.decode()
    assert broker.counters.get("accepted", 0) == 0


def test_wrong_path_and_method(manifests, broker_factory) -> None:
    write_manifests(manifests, trigger("t", uri="http://127.0.0.1:9/x"))
    broker = broker_factory(manifests, {})
    headers, body = to_http(event())
    assert post(broker.url.rsplit("/", 1)[0] + "/other", headers, body).status == 404
    assert urllib3.request("GET", broker.url, retries=False).status == 405


def test_reply_chain_is_reingested(manifests, subscriber_factory, broker_factory) -> None:
    first, second = subscriber_factory(), subscriber_factory()
    first.respond = lambda r: reply_with(
        make_event({"type": "com.example.next", "source": "/first",
                    "datacontenttype": "application/json"}, b'{"step": 2}'))
    write_manifests(
        manifests,
        trigger("t-first", service="first", attributes={"type": "com.example.start"}),
        trigger("t-second", service="second", filters=[{"exact": {"type": "com.example.next"}}]),
    )
    broker = broker_factory(manifests, {"first": first.url, "second": second.url})
    broker.ingest(event())
    [got] = second.wait_for(1)
    assert got.header("ce-source") == "/first"
    assert json.loads(got.body) == {"step": 2}
    assert broker.wait_idle(5)
    assert len(first.received) == 1
    assert [e.what for e in broker.log() if e.what in ("reply", "delivered")] == [
        "delivered", "reply", "delivered"]


def test_structured_reply_is_reingested(manifests, subscriber_factory, broker_factory) -> None:
    first, second = subscriber_factory(), subscriber_factory()

    def structured_reply(_: Received):
        headers, body = to_http(make_event({"type": "com.example.next", "source": "/f"}, b"x"),
                                structured=True)
        return 200, headers, body

    first.respond = structured_reply
    write_manifests(manifests,
                    trigger("a", service="first", attributes={"type": "com.example.start"}),
                    trigger("b", service="second", attributes={"type": "com.example.next"}))
    broker = broker_factory(manifests, {"first": first.url, "second": second.url})
    broker.ingest(event())
    [got] = second.wait_for(1)
    assert got.body == b"x"


def test_retry_on_503_then_success(manifests, subscriber_factory, broker_factory) -> None:
    fn = subscriber_factory()
    answers = iter([(503, {}, b"busy"), (503, {}, b"busy"), (202, {}, b"")])
    fn.respond = lambda r: next(answers)
    write_manifests(manifests, trigger("t", service="fn", delivery=FAST))
    broker = broker_factory(manifests, {"fn": fn.url})
    broker.ingest(event())
    assert broker.wait_idle(5)
    assert len(fn.received) == 3
    assert len({r.header("ce-id") for r in fn.received}) == 1  # the same event, retried
    assert broker.counters["retried"] == 2
    assert broker.counters["delivered"] == 1


@pytest.mark.parametrize("status", [404, 408, 409, 429, 500, 502])
def test_retried_statuses(status, manifests, subscriber_factory, broker_factory) -> None:
    fn = subscriber_factory()
    answers = iter([(status, {}, b""), (202, {}, b"")])
    fn.respond = lambda r: next(answers)
    write_manifests(manifests, trigger("t", service="fn", delivery=FAST))
    broker = broker_factory(manifests, {"fn": fn.url})
    broker.ingest(event())
    assert broker.wait_idle(5)
    assert len(fn.received) == 2


@pytest.mark.parametrize("status", [400, 401, 403, 413, 302])
def test_no_retry_on_other_4xx_and_3xx(status, manifests, subscriber_factory,
                                       broker_factory) -> None:
    fn = subscriber_factory()
    fn.respond = lambda r: (status, {"Location": "http://127.0.0.1:9/"}, b"bad")
    write_manifests(manifests, trigger("t", service="fn", delivery=FAST))
    broker = broker_factory(manifests, {"fn": fn.url})
    broker.ingest(event())
    assert broker.wait_idle(5)
    assert len(fn.received) == 1
    assert broker.counters["failed"] == 1
    assert "retried" not in broker.counters


def test_non_cloudevent_reply_body_is_a_502_and_retried(manifests, subscriber_factory,
                                                         broker_factory) -> None:
    fn = subscriber_factory()
    answers = iter([(200, {"Content-Type": "text/plain"}, b"ok!"), (202, {}, b"ignored")])
    fn.respond = lambda r: next(answers)
    write_manifests(manifests, trigger("t", service="fn", delivery=FAST))
    broker = broker_factory(manifests, {"fn": fn.url})
    broker.ingest(event())
    assert broker.wait_idle(5)
    assert len(fn.received) == 2
    [retried] = broker.log("retried")
    assert retried.status == 502
    assert "reply" not in broker.counters


def test_dead_letter_after_retries(manifests, subscriber_factory, broker_factory) -> None:
    fn, dls = subscriber_factory(), subscriber_factory()
    error_body = b"E" * 3000
    fn.respond = lambda r: (500, {}, error_body)
    delivery = {**FAST, "retry": 2, "deadLetterSink": {
        "ref": {"apiVersion": "serving.knative.dev/v1", "kind": "Service", "name": "dls"}}}
    write_manifests(manifests, trigger("t", service="fn", uri="/in", delivery=delivery))
    broker = broker_factory(manifests, {"fn": fn.url, "dls": dls.url})
    original = event()
    broker.ingest(original)
    [dead] = dls.wait_for(1)
    assert broker.wait_idle(5)
    assert len(fn.received) == 3  # 1 + retry 2
    assert dead.header("ce-id") == original.get_id()
    assert dead.header("ce-knativeerrordest") == f"{fn.url}/in"
    assert dead.header("ce-knativeerrorcode") == "500"
    data = dead.header("ce-knativeerrordata")
    assert base64.b64decode(data) == error_body[:1024]
    assert dead.header("Prefer") is None
    assert broker.counters["dead_lettered"] == 1


def test_network_error_is_retried_then_dead_lettered(manifests, subscriber_factory,
                                                     broker_factory) -> None:
    dls = subscriber_factory()
    delivery = {**FAST, "retry": 1, "deadLetterSink": {"uri": dls.url + "/dead"}}
    write_manifests(manifests, trigger("t", uri="http://127.0.0.1:9/nothing", delivery=delivery))
    broker = broker_factory(manifests, {})
    broker.ingest(event())
    [dead] = dls.wait_for(1)
    assert dead.path == "/dead"
    assert dead.header("ce-knativeerrordest") == "http://127.0.0.1:9/nothing"
    assert dead.header("ce-knativeerrorcode") is None
    assert broker.wait_idle(5)
    assert broker.counters["retried"] == 1


def test_exponential_backoff_waits_grow(manifests, subscriber_factory, broker_factory) -> None:
    fn = subscriber_factory()
    fn.respond = lambda r: (503, {}, b"")
    delivery = {"retry": 3, "backoffPolicy": "exponential", "backoffDelay": "PT0.02S"}
    write_manifests(manifests, trigger("t", service="fn", delivery=delivery))
    broker = broker_factory(manifests, {"fn": fn.url})
    broker.ingest(event())
    assert broker.wait_idle(5)
    times = [e.at for e in broker.log() if e.what in ("retried", "failed")]
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    # backoffDelay × 2^n: waits of 0.04, 0.08 and 0.16 s before retries 1, 2, 3
    assert len(gaps) == 3
    for gap, expected in zip(gaps, (0.04, 0.08, 0.16), strict=True):
        assert expected <= gap < expected + 0.1


def test_ttl_loop_guard_stops_a_reply_loop(manifests, subscriber_factory, broker_factory) -> None:
    fn = subscriber_factory()
    fn.respond = lambda r: reply_with(make_event({"type": "com.example.loop", "source": "/loop"}))
    write_manifests(manifests, trigger("loop", service="fn",
                                       attributes={"type": "com.example.loop"}))
    broker = broker_factory(manifests, {"fn": fn.url})
    broker.ingest(make_event({"type": "com.example.loop", "source": "/t",
                              "knativebrokerttl": "5"}))
    assert broker.wait_idle(10)
    assert len(fn.received) == 5
    assert all(r.header("ce-knativebrokerttl") is None for r in fn.received)  # never leaves
    assert broker.counters["ttl_dropped"] == 1


def test_default_ttl_is_255(manifests, subscriber_factory, broker_factory) -> None:
    fn = subscriber_factory()
    fn.respond = lambda r: reply_with(make_event({"type": "com.example.loop", "source": "/loop"}))
    write_manifests(manifests, trigger("loop", service="fn"))
    broker = broker_factory(manifests, {"fn": fn.url})
    broker.ingest(make_event({"type": "com.example.loop", "source": "/t"}))
    assert broker.wait_idle(30)
    assert len(fn.received) == 255


def test_changing_a_trigger_manifest_changes_routing(manifests, subscriber_factory,
                                                     broker_factory) -> None:
    a, b = subscriber_factory(), subscriber_factory()
    route = {"type": "com.example.start"}
    write_manifests(manifests, trigger("t", service="a", attributes=route))
    broker = broker_factory(manifests, {"a": a.url, "b": b.url})
    broker.ingest(event())
    a.wait_for(1)
    write_manifests(manifests, trigger("t", service="b", attributes=route))
    broker.ingest(event())
    b.wait_for(1)
    write_manifests(manifests, trigger("t", service="b", attributes={"type": "other"}))
    broker.ingest(event())
    assert broker.wait_idle(5)
    assert (len(a.received), len(b.received)) == (1, 1)


def age(folder: Path, seconds: float = 10) -> None:
    """Stamp the folder and its files `seconds` in the past (older than a racy mtime)."""
    past = time.time() - seconds
    for path in [*folder.iterdir(), folder]:
        os.utime(path, (past, past))


def test_a_manifest_edited_in_the_same_clock_tick_as_a_look_is_still_seen(
        manifests, subscriber_factory, broker_factory) -> None:
    a, b = subscriber_factory(), subscriber_factory()
    path = write_manifests(manifests, trigger("t", service="a"))
    age(manifests)
    broker = broker_factory(manifests, {"a": a.url, "b": b.url}, recheck_seconds=3600)
    stamp = time.time() - 0.01  # a look at the folder, then an edit stamped the same
    os.utime(manifests, (stamp, stamp))
    broker.ingest(event())  # the broker looks: the folder changed, the files not yet
    a.wait_for(1)
    write_manifests(manifests, trigger("t", service="b"))
    os.utime(path, (stamp, stamp))
    os.utime(manifests, (stamp, stamp))  # what a coarse clock leaves: no visible change
    broker.ingest(event())
    b.wait_for(1)


def test_an_event_during_a_reload_waits_for_the_new_triggers(
        manifests, subscriber_factory, broker_factory) -> None:
    """Two events look at a changed folder at once: the second must not route with the
    old Triggers while the first is still loading the new ones."""
    a, b = subscriber_factory(), subscriber_factory()
    write_manifests(manifests, trigger("t", service="a"))
    age(manifests)
    broker = broker_factory(manifests, {"a": a.url, "b": b.url}, recheck_seconds=3600)
    write_manifests(manifests, trigger("t", service="b"), filename="new.tmp").replace(
        manifests / "triggers.yaml")
    age(manifests, 20)  # no racy stamp: the first look is recorded as settled
    load, loading, go_on = broker._load, threading.Event(), threading.Event()

    def slow_load():
        loading.set()
        assert go_on.wait(10)
        return load()

    broker._load = slow_load
    first = threading.Thread(target=lambda: broker.ingest(event()))
    first.start()
    assert loading.wait(10)
    second = threading.Thread(target=lambda: broker.ingest(event()))
    second.start()
    second.join(timeout=1)  # before the fix it routed to `a` here, without waiting
    go_on.set()
    first.join(10)
    second.join(10)
    b.wait_for(2)
    assert broker.wait_idle(5) and not a.received


@pytest.mark.parametrize("renamed", [False, True], ids=["edited in place", "renamed into place"])
def test_within_the_recheck_period_only_a_renamed_manifest_is_seen(
        manifests, subscriber_factory, broker_factory, renamed: bool) -> None:
    a, b = subscriber_factory(), subscriber_factory()
    write_manifests(manifests, trigger("t", service="a"))
    age(manifests)
    broker = broker_factory(manifests, {"a": a.url, "b": b.url}, recheck_seconds=3600)
    if renamed:  # how many editors save: the folder itself changes
        written = write_manifests(manifests, trigger("t", service="b"), filename="new.tmp")
        written.replace(manifests / "triggers.yaml")
    else:
        write_manifests(manifests, trigger("t", service="b"))
    broker.ingest(event())
    (b if renamed else a).wait_for(1)
    assert broker.wait_idle(5) and not (a if renamed else b).received


def test_a_manifest_edit_is_picked_up_after_the_recheck_period(
        manifests, subscriber_factory, broker_factory) -> None:
    a, b = subscriber_factory(), subscriber_factory()
    write_manifests(manifests, trigger("t", service="a"))
    broker = broker_factory(manifests, {"a": a.url, "b": b.url}, recheck_seconds=0.2)
    write_manifests(manifests, trigger("t", service="b"))
    deadline = time.monotonic() + 10
    while not b.received:
        assert time.monotonic() < deadline, "the edit was never picked up"
        broker.ingest(event())
        assert broker.wait_idle(5)


def test_a_bad_manifest_edit_keeps_the_previous_routing(manifests, subscriber_factory,
                                                        broker_factory) -> None:
    a = subscriber_factory()
    write_manifests(manifests, trigger("t", service="a"))
    broker = broker_factory(manifests, {"a": a.url})
    write_manifests(manifests, trigger("t", service="a", filters=[{"cesql": "true"}]))
    broker.ingest(event())
    a.wait_for(1)
    [failed] = broker.log("reload_failed")
    assert "cesql" in failed.detail


def test_only_this_brokers_triggers(manifests, subscriber_factory, broker_factory) -> None:
    a = subscriber_factory()
    write_manifests(
        manifests,
        trigger("mine", service="a"),
        trigger("theirs", service="a", broker="default"),
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "ignored"}},
    )
    broker = broker_factory(manifests, {"a": a.url})
    assert [t.name for t in broker.triggers] == ["mine"]


@pytest.mark.parametrize(
    "doc, message",
    [
        (trigger("t", service="missing"), "no address for Service 'missing'"),
        (trigger("t"), "needs ref, or uri as an absolute http(s) URL"),
        (trigger("t", service="a", delivery={"backoffDelay": "0.2s"}),
         "spec.delivery.backoffDelay: '0.2s' is not an ISO-8601 duration"),
        (trigger("t", service="a", delivery={"retry": -1}), "spec.delivery.retry must be"),
        (trigger("t", service="a", delivery={"backoffPolicy": "random"}), "backoffPolicy"),
        (trigger("t", service="a", filters=[{"cesql": "true"}]), "CESQL"),
    ],
)
def test_bad_trigger_is_a_clear_error_at_load(manifests, doc, message) -> None:
    write_manifests(manifests, doc)
    with pytest.raises(ManifestError) as caught:
        Broker(manifests, services={"a": "http://127.0.0.1:9"})
    assert message in str(caught.value)
    assert "triggers.yaml: Trigger/t" in str(caught.value)


def test_broker_delivery_is_the_trigger_default(manifests, subscriber_factory,
                                                broker_factory) -> None:
    fn = subscriber_factory()
    fn.respond = lambda r: (503, {}, b"")
    broker_doc = {"apiVersion": "eventing.knative.dev/v1", "kind": "Broker",
                  "metadata": {"name": "c2d"},
                  "spec": {"delivery": {"retry": 1, "backoffDelay": "PT0.01S"}}}
    write_manifests(manifests, broker_doc, trigger("t", service="fn",
                                                   delivery={"backoffPolicy": "linear"}))
    broker = broker_factory(manifests, {"fn": fn.url})
    [t] = broker.triggers
    assert (t.delivery.retry, t.delivery.backoff_policy, t.delivery.backoff_delay) == (
        1, "linear", 0.01)
    broker.ingest(event())
    assert broker.wait_idle(5)
    assert len(fn.received) == 2


def test_timeout_is_a_retried_failure(manifests, subscriber_factory, broker_factory) -> None:
    release = threading.Event()
    fn = subscriber_factory()

    def slow(_: Received):
        release.wait(2)
        return 202, {}, b""

    fn.respond = slow
    write_manifests(manifests, trigger("t", service="fn", delivery={
        "retry": 1, "backoffDelay": "PT0.01S", "timeout": "PT0.2S"}))
    broker = broker_factory(manifests, {"fn": fn.url})
    broker.ingest(event())
    assert broker.wait_idle(5)
    release.set()
    assert broker.counters["retried"] == 1
    assert broker.counters["failed"] == 1


def test_deliveries_are_concurrent(manifests, subscriber_factory, broker_factory) -> None:
    """A subscriber that hangs does not delay another Trigger's delivery."""
    slow, fast = subscriber_factory(), subscriber_factory()
    release = threading.Event()
    slow.respond = lambda r: (release.wait(5), (202, {}, b""))[1]
    write_manifests(manifests, trigger("slow", service="slow"), trigger("fast", service="fast"))
    broker = broker_factory(manifests, {"slow": slow.url, "fast": fast.url})
    broker.ingest(event())
    broker.ingest(event())
    fast.wait_for(2, timeout=2)
    assert not release.is_set()
    release.set()
    assert broker.wait_idle(5)


def test_latency_event_in_to_subscriber(manifests, subscriber_factory, broker_factory) -> None:
    """POST to the ingress until the subscriber has it: the median stays far under 50 ms."""
    fn = subscriber_factory()
    arrived: list[float] = []

    def record(_: Received):
        arrived.append(time.perf_counter())
        return 202, {}, b""

    fn.respond = record
    write_manifests(manifests, trigger("t", service="fn"))
    broker = broker_factory(manifests, {"fn": fn.url})
    pool = urllib3.PoolManager()
    latencies = []
    for i in range(50):
        headers, body = to_http(event())
        sent = time.perf_counter()
        assert pool.request("POST", broker.url, headers=headers, body=body).status == 202
        fn.wait_for(i + 1)
        latencies.append(arrived[i] - sent)
    assert statistics.median(latencies) < 0.05, latencies


def test_a_local_sender_hands_the_brokers_events_to_it_in_process(
        manifests, subscriber_factory, broker_factory) -> None:
    a = subscriber_factory()
    write_manifests(manifests, trigger("t", service="a"))
    broker = broker_factory(manifests, {"a": a.url})
    sender = LocalSender(broker)
    broker._server.shutdown()  # no HTTP ingress any more: only ingest() can accept it
    broker._server.server_close()

    assert sender.send(broker.url, event()).status == 202
    a.wait_for(1)
    assert broker.counters["accepted"] == 1
    direct = sender.send(a.url, event())  # any other URL: over HTTP, as a Sender does
    assert direct.status is not None and 200 <= direct.status < 300
    a.wait_for(2)
    sender.close()
