"""`c2d run`: a fresh embedded stack per command, progress on stderr, results on stdout."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.helpers import C2D, EXAMPLES


@pytest.fixture
def c2d(tmp_path: Path) -> C2D:
    return C2D(tmp_path / "home")


def output_files(stdout: str) -> dict[str, Path]:
    """filename -> local path, from the results table's output rows."""
    rows = [line.split() for line in stdout.splitlines()[1:]]
    return {row[2]: Path(row[4].removeprefix("file://")) for row in rows if row[1] == "output"}


def test_run_hello_prints_progress_results_and_the_files(c2d: C2D) -> None:
    done = c2d("run", str(EXAMPLES / "hello" / "workflow.yaml"), "--follow-logs", "--timeout",
               "90")

    assert done.returncode == 0, done.stderr
    lines = len((EXAMPLES / "hello" / "data" / "lines.txt").read_text().splitlines())
    files = output_files(done.stdout)
    assert files["count.txt"].read_text().strip() == str(lines)
    assert files["count.txt"].is_relative_to(c2d.home / "runs")
    # Progress: stage, code and text with the elapsed time, in order.
    progress = re.findall(r"^\[\s*[\d.]+s\] (\w+)\s+(\d+) ", done.stderr, re.MULTILINE)
    codes = [int(code) for _, code in progress]
    assert codes == sorted(codes) and codes[-1] == 70
    assert ("configure", "20") in progress and ("algorithm", "40") in progress
    assert f"algorithm| total: {lines} lines" in done.stderr  # --follow-logs
    assert re.search(r"^workflow hello-\w+: Succeeded$", done.stderr, re.MULTILINE)
    assert f"files: {files['count.txt'].parent}" in done.stderr


def test_run_exit_code_follows_a_failed_workflow_with_gunicorn_functions(c2d: C2D) -> None:
    done = c2d("run", str(EXAMPLES / "failing" / "workflow.yaml"), "--server", "gunicorn",
               "--timeout", "90")

    assert done.returncode == 3, done.stderr
    assert re.search(r"^workflow failing-\w+: Failed: algorithm exited with code 1",
                     done.stderr, re.MULTILINE)
    assert "algorithmLog" in done.stdout and "Traceback" not in done.stdout
    assert not output_files(done.stdout)


def test_run_gives_up_at_its_timeout(c2d: C2D) -> None:
    done = c2d("run", str(EXAMPLES / "timeout" / "workflow.yaml"), "--timeout", "1")

    assert done.returncode == 5
    assert "did not finish within 1 s" in done.stderr.splitlines()[-1]
