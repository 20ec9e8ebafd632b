"""The Sender's connections: kept alive per thread, replaced when the subscriber closed them."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest
from cloudevents.core.v1.event import CloudEvent

from devstack.eventing.delivery import Sender
from tests.rawserver import RawServer


@pytest.fixture
def sender() -> Iterator[Sender]:
    sender = Sender()
    yield sender
    sender.close()


def event() -> CloudEvent:
    return CloudEvent(attributes={"type": "t", "source": "/s", "id": "1"}, data={"a": 1})


def send_to(sender: Sender, subscriber: RawServer, times: int) -> list[int | None]:
    """The statuses of `times` sends from this thread, the subscriber closed after."""
    try:
        return [sender.send(subscriber.url, event()).status for _ in range(times)]
    finally:
        subscriber.close()


def test_one_thread_reuses_its_connection(sender: Sender) -> None:
    subscriber = RawServer()
    assert send_to(sender, subscriber, 3) == [202, 202, 202]
    assert (subscriber.connections, subscriber.requests) == (1, 3)
    assert subscriber.paths == ["/path?x=1"] * 3


def test_a_connection_the_subscriber_closed_is_replaced_and_the_event_sent_once(
        sender: Sender) -> None:
    subscriber = RawServer(close_after_answer=True)
    assert send_to(sender, subscriber, 3) == [202, 202, 202]
    assert (subscriber.connections, subscriber.requests) == (3, 3)


def test_connection_close_is_honoured(sender: Sender) -> None:
    subscriber = RawServer(announce_close=True)
    assert send_to(sender, subscriber, 2) == [202, 202]
    assert (subscriber.connections, subscriber.requests) == (2, 2)


def test_threads_do_not_share_a_connection(sender: Sender) -> None:
    subscriber = RawServer()
    try:
        sender.send(subscriber.url, event())
        other = threading.Thread(target=sender.send, args=(subscriber.url, event()))
        other.start()
        other.join()
        sender.send(subscriber.url, event())
    finally:
        subscriber.close()
    assert (subscriber.connections, subscriber.requests) == (2, 3)


def test_nothing_listening_is_a_network_error_without_a_second_try(sender: Sender) -> None:
    with socket.socket() as probe:  # a port with nobody on it
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/"
    response = sender.send(url, event(), timeout=2)
    assert response.status is None
    assert "ConnectionRefused" in (response.error or "")


def test_a_subscriber_that_never_answers_times_out(sender: Sender) -> None:
    listener = socket.create_server(("127.0.0.1", 0))  # accepts (backlog), never reads
    try:
        response = sender.send(f"http://127.0.0.1:{listener.getsockname()[1]}/", event(),
                               timeout=0.3)
    finally:
        listener.close()
    assert response.status is None
    assert "timed out" in (response.error or "")
