"""How the configure pod's downloads reach the disk: small writes, zero runs as holes,
and the page cache dropped behind the download."""

from __future__ import annotations

import logging
import os

import pytest

from functions.configure import fetch
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


def test_written_bytes_leave_the_page_cache_a_window_behind(server, tmp_path, monkeypatch):
    dataset, body = server
    window = 256 * KIB
    advice: list[tuple[int, int, int]] = []  # (length, position, advice)
    real_fadvise = os.posix_fadvise

    def recording_fadvise(fd: int, offset: int, length: int, kind: int) -> None:
        assert offset == 0
        advice.append((length, os.lseek(fd, 0, os.SEEK_CUR), kind))
        real_fadvise(fd, offset, length, kind)

    monkeypatch.setattr(fetch.os, "posix_fadvise", recording_fadvise)
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
