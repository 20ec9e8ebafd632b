"""Pytest fixtures for the embedded Kubernetes.

Import the fixture you use into a test module (pytest finds it there)::

    from devstack.testing import embedded_cluster  # noqa: F401

- ``embedded_cluster``: a fresh cluster per test function;
- ``embedded_cluster_module``: one cluster shared by a module's tests (faster;
  tests must then use their own names or namespaces).

Both stop every container process and the API server at teardown.
:func:`wait_until` waits on a condition with a deadline (never a bare sleep);
:func:`container_processes` and :func:`still_running` check for leftover processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import psutil
import pytest

from devstack.cluster import EmbeddedCluster

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.02, what: str = ""
) -> T:
    """The first truthy value of ``predicate()``; AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def container_processes(
    cluster: EmbeddedCluster, pod_uid: str | None = None
) -> list[psutil.Process]:
    """Every process of the containers running now (leaders and descendants), of one pod or all."""
    procs = []
    for pid in cluster.kubelet.running_pids(pod_uid):
        try:
            leader = psutil.Process(pid)
            procs += [leader, *leader.children(recursive=True)]
        except psutil.NoSuchProcess:
            pass
    return procs


def still_running(procs: list[psutil.Process]) -> list[psutil.Process]:
    """Those of ``procs`` that still run (zombies do not)."""
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.NoSuchProcess:
            pass
    return out


@pytest.fixture
def embedded_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedCluster]:
    """A running embedded cluster for one test."""
    with EmbeddedCluster(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def embedded_cluster_module(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[EmbeddedCluster]:
    """A running embedded cluster shared by the tests of one module."""
    with EmbeddedCluster(tmp_path_factory.mktemp("cluster")) as cluster:
        yield cluster
