"""The data paths' runs start on page cache just freed (benchmarks.datapath)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from benchmarks.datapath import fresh_page_cache, timed


def bytes_written() -> int:
    """What this process has handed to write() so far (Linux's /proc/self/io)."""
    fields = dict(line.split(": ") for line in Path("/proc/self/io").read_text().splitlines())
    return int(fields["wchar"])


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs Linux's /proc/self/io")
def test_the_scratch_file_is_written_in_full_and_removed(tmp_path: Path) -> None:
    size = 3 * 2**20 + 5  # not a whole number of blocks
    before = bytes_written()
    fresh_page_cache(tmp_path, size)
    assert bytes_written() - before >= size
    assert list(tmp_path.iterdir()) == []


def test_a_run_started_fresh_leaves_no_scratch_behind(tmp_path: Path) -> None:
    result = timed([sys.executable, "-c", "pass"], fresh=(tmp_path, 2**20))
    assert result["exit_code"] == 0
    assert list(tmp_path.iterdir()) == []


def test_a_scratch_folder_that_is_missing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        fresh_page_cache(tmp_path / "missing", 2**20)
