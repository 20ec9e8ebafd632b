"""Child processes that report on their first line of output and exit when their
standard input closes (so they cannot outlive us, however we end)."""

from __future__ import annotations

import selectors
import subprocess
import time
from typing import Any


def start_reporting(argv: list[str], timeout: float = 30.0,
                    **popen: Any) -> tuple[subprocess.Popen[bytes], str]:
    """Start `argv` with piped stdin and stdout; the process and its first line.

    The line is "" when the child exits or stays silent for `timeout` seconds; the
    caller decides whether what it got is what it expected.
    """
    process = subprocess.Popen(argv, stdin=subprocess.PIPE,  # noqa: S603 - callers' argv
                               stdout=subprocess.PIPE, **popen)
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if selector.select(timeout=0.1):
                return process, process.stdout.readline().decode().strip()
            if process.poll() is not None:
                break
    return process, ""


def stop_by_closing_stdin(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """Close the child's stdin (it exits), wait for it; SIGKILL after `timeout` seconds."""
    if process.stdin is not None:
        process.stdin.close()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stdout is not None:
        process.stdout.close()
