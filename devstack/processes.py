"""Child processes that exit when their standard input closes (they cannot outlive us)."""

from __future__ import annotations

import subprocess


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
