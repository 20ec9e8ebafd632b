"""Fixtures for the embedded eventing tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from .helpers import Subscriber


@pytest.fixture
def subscriber_factory() -> Iterator[Callable[[], Subscriber]]:
    """Start real HTTP subscribers on 127.0.0.1; all are stopped at teardown."""
    started: list[Subscriber] = []

    def make() -> Subscriber:
        started.append(Subscriber().start())
        return started[-1]

    yield make
    for subscriber in started:
        subscriber.stop()
