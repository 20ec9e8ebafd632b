"""How the configure pod's downloads reach the disk: small writes, zero runs as holes,
and, under a memory limit, the page cache dropped behind the download."""

from __future__ import annotations

import logging
import os

import pytest

from functions.configure import fetch
from functions.configure import pod as configure_pod
from tests.pods.conftest import write_workflow
from tests.pods.servers import DatasetServer

KIB = 1 << 10
# 3 MiB + 5 bytes: data, a 32 KiB run of zeros on a write boundary inside the first
# 1 MiB read, data, a zero run too short to skip, and a tail that ends mid-write.
ZERO_RUN = (96 * KIB, 128 * KIB)
SHORT_ZEROS = (2048 * KIB + 100, 2048 * KIB + 100 + 4 * KIB)
SIZE = 3 * 1024 * KIB + 5


def _body() -> bytes:
    body = bytearray(os.urandom(SIZE))
    for start, end in (ZERO_RUN, SHORT_ZEROS):
        body[start:end] = bytes(end - start)
    return bytes(body)


def _download(url: str, target, limits: fetch.Limits | None = None) -> int:
    fetcher = fetch.Fetcher(limits or fetch.Limits(), fetch.DiskBudget(SIZE),
                            logging.getLogger("test"))
    try:
        return fetcher.download(url, target)
    finally:
        fetcher.close()


@pytest.fixture(scope="module")
def server():
    body = _body()
    server = DatasetServer({"mixed.bin": body}).start()
    yield server, body
    server.stop()


def test_body_is_written_in_pieces_of_at_most_32_kib(server, tmp_path, monkeypatch):
    dataset, body = server
    sizes: list[int] = []
    real_write = os.write

    def recording_write(fd: int, data: memoryview) -> int:
        sizes.append(len(data))
        return real_write(fd, data)

    monkeypatch.setattr(fetch.os, "write", recording_write)
    target = tmp_path / "mixed.bin"
    assert _download(f"{dataset.url}/files/mixed.bin", target) == SIZE

    assert target.read_bytes() == body
    assert max(sizes) == fetch.WRITE_SIZE == 32 * KIB
    # everything but the skipped 32 KiB run went through os.write
    assert sum(sizes) == SIZE - (ZERO_RUN[1] - ZERO_RUN[0])


def test_a_zero_run_of_one_write_becomes_a_hole(server, tmp_path):
    dataset, _ = server
    target = tmp_path / "mixed.bin"
    _download(f"{dataset.url}/files/mixed.bin", target)
    fd = os.open(target, os.O_RDONLY)
    try:
        assert os.lseek(fd, 0, os.SEEK_HOLE) == ZERO_RUN[0]
        assert os.lseek(fd, ZERO_RUN[0], os.SEEK_DATA) == ZERO_RUN[1]
        assert os.lseek(fd, ZERO_RUN[1], os.SEEK_HOLE) == SIZE  # the short run is data
    finally:
        os.close(fd)


def _recording_advice(monkeypatch) -> list[tuple[int, int, int]]:
    """The page cache advice downloads give from now on: (length, position, advice)."""
    advice: list[tuple[int, int, int]] = []
    real_fadvise = os.posix_fadvise

    def recording_fadvise(fd: int, offset: int, length: int, kind: int) -> None:
        assert offset == 0
        advice.append((length, os.lseek(fd, 0, os.SEEK_CUR), kind))
        real_fadvise(fd, offset, length, kind)

    monkeypatch.setattr(fetch.os, "posix_fadvise", recording_fadvise)
    return advice


def test_written_bytes_leave_the_page_cache_a_window_behind(server, tmp_path, monkeypatch):
    dataset, body = server
    window = 256 * KIB
    advice = _recording_advice(monkeypatch)
    target = tmp_path / "mixed.bin"
    assert _download(f"{dataset.url}/files/mixed.bin", target,
                     fetch.Limits(cache_behind=window)) == SIZE

    assert target.read_bytes() == body
    assert {kind for _, _, kind in advice} == {os.POSIX_FADV_DONTNEED}
    lengths = [length for length, _, _ in advice]
    assert lengths == sorted(set(lengths))  # each call reaches further
    # never the last window written, and never more than two windows behind
    assert all(length == position - window for length, position, _ in advice)
    assert lengths[0] >= window and SIZE - lengths[-1] <= 2 * window + fetch.CHUNK


def test_a_file_system_refusing_the_advice_still_gets_the_file(server, tmp_path, monkeypatch):
    dataset, body = server

    def refusing_fadvise(fd: int, offset: int, length: int, kind: int) -> None:
        raise OSError(22, "Invalid argument")

    monkeypatch.setattr(fetch.os, "posix_fadvise", refusing_fadvise)
    target = tmp_path / "mixed.bin"
    assert _download(f"{dataset.url}/files/mixed.bin", target,
                     fetch.Limits(cache_behind=256 * KIB)) == SIZE
    assert target.read_bytes() == body


def test_without_a_window_the_download_keeps_its_cache(server, tmp_path, monkeypatch):
    dataset, body = server
    advice = _recording_advice(monkeypatch)
    target = tmp_path / "mixed.bin"
    assert _download(f"{dataset.url}/files/mixed.bin", target) == SIZE
    assert target.read_bytes() == body
    assert advice == []


@pytest.mark.parametrize(("v2", "v1", "expected"), [
    ("536870912\n", None, 536870912),
    ("max\n", "1073741824\n", None),  # cgroup v2 rules where it is mounted
    (None, "1073741824\n", 1073741824),
    (None, "9223372036854771712\n", None),  # cgroup v1's "no limit"
    (None, None, None),
    ("a lot\n", None, None),
])
def test_the_memory_limit_is_the_cgroups(tmp_path, monkeypatch, v2, v1, expected):
    files = (tmp_path / "memory.max", tmp_path / "memory.limit_in_bytes")
    for path, text in zip(files, (v2, v1), strict=True):
        if text is not None:
            path.write_text(text)
    monkeypatch.setattr(fetch, "MEMORY_LIMIT_FILES", tuple(map(str, files)))
    assert fetch.memory_limit() == expected


def test_the_cache_window_is_an_eighth_of_the_memory_limit():
    assert fetch.cache_window(512 << 20) == 64 << 20  # the Jobs' limit (shared/manifests.py)
    assert fetch.cache_window(4 << 20) == fetch.CHUNK  # never under one read
    assert fetch.cache_window(None) is None


@pytest.mark.parametrize(("limit", "drops"), [("2097152", True), ("max", False)])
def test_the_pod_drops_its_cache_behind_only_under_a_memory_limit(
        server, tmp_path, monkeypatch, limit, drops):
    dataset, body = server
    (tmp_path / "memory.max").write_text(limit + "\n")
    monkeypatch.setattr(fetch, "MEMORY_LIMIT_FILES", (str(tmp_path / "memory.max"),))
    monkeypatch.setenv("TERMINATION_MESSAGE_PATH", str(tmp_path / "termination"))
    workflow = write_workflow(tmp_path, [{"index": 0, "id": "did:op:" + "a" * 64,
                                          "url": f"{dataset.url}/files/mixed.bin"}],
                              {"rawcode": "print('unused')\n"})
    advice = _recording_advice(monkeypatch)

    assert configure_pod.main(["--volume", str(tmp_path / "data"),
                               "--workflow", str(workflow)]) == configure_pod.EXIT_OK
    assert (tmp_path / "data" / "inputs" / ("a" * 64) / "0").read_bytes() == body
    assert bool(advice) == drops
    # 2 MiB of memory: a 1 MiB window, never the last MiB written
    assert all(length == position - fetch.CHUNK for length, position, _ in advice)
