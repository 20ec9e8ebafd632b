"""The embedded API server in a process of its own (``python -m devstack.apiserver``).

The stack runs it this way so that serving the API does not share one interpreter
lock with the kubelet, the Job controller and the eventing: under a burst of
workflows those threads made every API call wait its turn. Same interface as
:class:`~devstack.apiserver.APIServer`: ``url = start()``, ``stop()``.

The child exits when its standard input closes, so it cannot outlive this
process, however this one ends (``SIGKILL`` included).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from devstack.processes import start_reporting, stop_by_closing_stdin

REPO_ROOT = Path(__file__).resolve().parents[2]


class APIServerProcessError(RuntimeError):
    """The API server process did not start; the message says where its log is."""


class APIServerProcess:
    """``python -m devstack.apiserver`` with APIServer's arguments; its log goes to
    ``log_path`` (nowhere without one)."""

    def __init__(self, crd_files: list[Path] | None = None, data_dir: Path | None = None,
                 log_dir: Path | None = None, host: str = "127.0.0.1", port: int = 0,
                 log_path: Path | None = None, timeout: float = 30.0,
                 audit_log: Path | None = None) -> None:
        self.crd_files = [Path(p) for p in crd_files or []]
        self.data_dir, self.log_dir, self.audit_log = data_dir, log_dir, audit_log
        self.host, self.port = host, port
        self.log_path = Path(log_path) if log_path else None
        self.timeout = timeout
        self.url = ""
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def argv(self) -> list[str]:
        argv = [sys.executable, "-m", "devstack.apiserver", "--host", self.host,
                "--port", str(self.port), "--exit-on-stdin-eof"]
        for flag, value in (("--data-dir", self.data_dir), ("--log-dir", self.log_dir),
                            ("--audit-log", self.audit_log)):
            if value is not None:
                argv += [flag, str(value)]
        for crd in self.crd_files:
            argv += ["--crd", str(crd)]
        return argv

    def start(self) -> str:
        """Start the process and wait for the URL it prints; returns it."""
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self._process, line = start_reporting(
                self.argv(), self.timeout, stderr=log, cwd=REPO_ROOT,
                env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
                # Its own session: a Ctrl-C on the terminal stops the stack, which then
                # stops the API server last, after the controllers that still use it.
                start_new_session=True)
        finally:
            if log is not subprocess.DEVNULL:
                log.close()
        if not line.startswith("http://"):
            self.stop()
            where = f"; see {self.log_path}" if self.log_path else ""
            raise APIServerProcessError(f"the API server process did not start{where}")
        self.url = line
        return self.url

    def stop(self) -> None:
        """Close its standard input (it exits), then wait; SIGKILL after 10 s."""
        process, self._process = self._process, None
        if process is None:
            return
        stop_by_closing_stdin(process)
