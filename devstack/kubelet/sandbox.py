"""Run one container as a local process, with the container's own file paths.

Two modes, chosen once when the kubelet starts (:func:`detect_mode`):

``bwrap``
    The command runs under bubblewrap in a private mount, PID and UTS
    namespace. The root is a fresh tmpfs holding read-only binds of the host's
    top-level entries (so the host's tools, the virtualenv and the project are
    there), a private ``/proc``, ``/dev`` and ``/tmp``, and the pod's volumes
    bound on their real mount paths (``/data``, ``/workflow.json``, ...). A
    mount path that does not exist on the host is created inside the sandbox
    only; nothing is written to the host's ``/data``.

``rewrite`` (fallback where bubblewrap is missing or refused by the OS)
    No namespaces: the process runs directly on the host, and every mount path
    that appears as a path prefix in the command, the arguments, the
    environment values or the working directory is replaced by the host folder
    holding that volume. Programs that build paths by other means (constants in
    code, config files) do not see the volumes; use ``bwrap`` for those. If
    the kubelet's process is killed outright, the container's main process dies
    with it, but processes it started itself may survive (no PID namespace).

Either way the process leads its own process group (its own session), its
stdout and stderr go to one log file, and :meth:`ContainerProcess.stop`
delivers SIGTERM to the container's main process, waits the grace period, then
SIGKILLs the whole group, like a node's container runtime.
"""

from __future__ import annotations

import ctypes
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

BWRAP = "bwrap"
REWRITE = "rewrite"

_PR_SET_PDEATHSIG = 1
CONTAINER_NICE = 10
# Host top-level entries the sandbox provides itself.
_PRIVATE = {"proc", "dev", "tmp"}


@dataclass(frozen=True)
class Mount:
    """A host file or folder seen by the container at ``path``."""

    host: Path
    path: str
    read_only: bool = False


def detect_mode(wanted: str | None = None) -> str:
    """``bwrap`` when bubblewrap runs here, else ``rewrite``.

    ``wanted`` (or the environment variable ``C2D_KUBELET_MODE``) forces a mode;
    forcing ``bwrap`` where it cannot run is an error, not a silent fallback.
    """
    wanted = wanted or os.environ.get("C2D_KUBELET_MODE") or None
    if wanted not in (None, BWRAP, REWRITE):
        raise ValueError(f"kubelet mode must be {BWRAP!r} or {REWRITE!r}, got {wanted!r}")
    if wanted == REWRITE:
        return REWRITE
    problem = _bwrap_problem()
    if problem is None:
        return BWRAP
    if wanted == BWRAP:
        raise RuntimeError(f"kubelet mode bwrap requested but bubblewrap cannot run: {problem}")
    log.warning("bubblewrap unusable (%s); the kubelet rewrites mount paths instead", problem)
    return REWRITE


def _bwrap_problem() -> str | None:
    exe = shutil.which(BWRAP)
    if exe is None:
        return "bwrap not found on PATH (install the bubblewrap package)"
    argv = [exe, *_root_args(["/probe"]), "--unshare-pid", "--die-with-parent", "--", "true"]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return str(exc)
    if done.returncode != 0:
        return done.stderr.decode(errors="replace").strip() or f"exit {done.returncode}"
    return None


def _root_args(mount_paths: list[str], base: str = "/") -> list[str]:
    """Binds recreating the host's tree under ``base`` on the sandbox's tmpfs root.

    Host entries are bound read-only as a whole, except a folder that has a
    mount path strictly below it: that one is recreated empty and filled entry
    by entry, so the mount point can be made in the sandbox, never on the host.
    """
    args: list[str] = []
    try:
        names = sorted(os.listdir(base))
    except OSError:
        return args
    for name in names:
        if base == "/" and name in _PRIVATE:
            continue
        host = os.path.join(base, name)
        if any(p == host for p in mount_paths):
            continue  # a volume goes there
        if os.path.islink(host):
            args += ["--symlink", os.readlink(host), host]
        elif os.path.isdir(host) and any(p.startswith(host + "/") for p in mount_paths):
            args += ["--dir", host, *_root_args(mount_paths, host)]
        else:
            args += ["--ro-bind", host, host]
    return args


def _host_dirs_under_tmp() -> list[str]:
    """The interpreter and project folders the sandbox's private /tmp would hide."""
    repo = Path(__file__).resolve().parents[2]
    dirs = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, repo)}
    return sorted(d for d in dirs if d == "/tmp" or d.startswith("/tmp/"))


def bwrap_argv(
    command: list[str],
    mounts: list[Mount],
    working_dir: str | None,
    hostname: str,
) -> list[str]:
    """The bubblewrap command line running ``command`` with ``mounts`` in place."""
    paths = [m.path for m in mounts]
    argv = [BWRAP, "--die-with-parent", "--unshare-pid", "--unshare-uts", "--hostname", hostname]
    argv += _root_args(paths)
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for d in _host_dirs_under_tmp():
        argv += ["--ro-bind", d, d]
    # parents before children: /data before /data/adminlogs
    for m in sorted(mounts, key=lambda m: m.path.count("/")):
        argv += ["--ro-bind" if m.read_only else "--bind", str(m.host), m.path]
    argv += ["--chdir", working_dir or "/", "--", *command]
    return argv


def rewrite_paths(text: str, mounts: list[Mount]) -> str:
    """Replace each mount path used as a path prefix in ``text`` by its host folder."""
    for m in sorted(mounts, key=lambda m: len(m.path), reverse=True):
        out, i, p = [], 0, m.path
        while True:
            j = text.find(p, i)
            if j < 0:
                break
            end = j + len(p)
            before_ok = j == 0 or not (text[j - 1].isalnum() or text[j - 1] in "._-/")
            after_ok = end == len(text) or not (text[end].isalnum() or text[end] in "._-")
            if before_ok and after_ok:
                out += [text[i:j], str(m.host)]
            else:
                out.append(text[i:end])
            i = end
        text = "".join(out) + text[i:]
    return text


class ContainerProcess:
    """One started container process (its own session) and how to stop it."""

    def __init__(
        self,
        argv: list[str],
        env: dict[str, str],
        cwd: str,
        log_path: Path,
        kill_with_parent: bool = False,
    ) -> None:
        """Start ``argv``; ``kill_with_parent`` makes the kernel kill it if the kubelet dies
        (bubblewrap does this itself with ``--die-with-parent``)."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._sandboxed = os.path.basename(argv[0]) == BWRAP
        command = _niced(argv)
        with open(log_path, "ab") as out:
            self.popen = subprocess.Popen(  # noqa: S603 - argv is built, never a shell string
                command,
                env=env,
                cwd=cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # Without a preexec_fn Python can vfork: a fork of the stack's process
                # held its interpreter lock for ~7 ms per pod, stalling the Broker.
                preexec_fn=_die_with_parent if kill_with_parent else None,  # noqa: PLW1509
            )
        self.pid = self.popen.pid
        _lower_group_priority(self.pid)

    def wait(self) -> int:
        """Wait for the main process; the exit code as a shell reports it (128+signal)."""
        rc = self.popen.wait()
        self._kill_leftovers()
        return 128 - rc if rc < 0 else rc

    def stop(self, grace: float) -> None:
        """SIGTERM the container's main process, SIGKILL everything after ``grace``.

        Safe to call again, e.g. with a shorter grace: the earliest deadline wins.
        """
        deadline = time.monotonic() + max(grace, 0)
        main = None
        while self.popen.poll() is None and main is None:
            main = _main_process(self.pid, self._sandboxed)
            if main is None:  # bubblewrap has not started the command yet
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.005)
        if main is not None:
            _signal(main, signal.SIGTERM)
            try:
                self.popen.wait(timeout=max(deadline - time.monotonic(), 0))
            except subprocess.TimeoutExpired:
                pass
        self._kill_leftovers()

    def _kill_leftovers(self) -> None:
        """SIGKILL the group and every descendant, until none of them runs any more.

        Members are found both as descendants (taken before the kill, since orphans
        get re-parented) and by process group, which re-parenting does not change.
        Once the main process has exited its orphans already are re-parented, so
        only the group is left to find; when the kill finds no group either, /proc
        is not read (two reads of it per pod were a tenth of the stack's CPU in a
        benchmark batch).
        """
        tree = set(descendants(self.pid)) if self.popen.poll() is None else set()
        deadline = time.monotonic() + 5
        while True:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                if not tree:  # the main process is reaped and its group is empty
                    return
            except PermissionError:
                pass
            if self.popen.poll() is None:
                self.popen.wait()
            left = [pid for pid, (state, _ppid, group) in _proc_table().items()
                    if (pid in tree or group == self.pid) and state not in ("Z", "X")]
            if not left or time.monotonic() > deadline:
                return
            for pid in left:
                _signal(pid, signal.SIGKILL)
            time.sleep(0.01)  # the kernel is tearing the PID namespace down


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the thread that started it dies."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _niced(argv: list[str]) -> list[str]:
    """``argv`` started through ``nice``, or through Python's ``os.nice`` on a host
    without ``nice``.

    The container's first process then execs at CONTAINER_NICE, and so does all it
    forks. Set from outside after the start instead, a child forked while the kernel
    walked the process group kept the kubelet's priority (a test caught one).
    """
    nice = shutil.which("nice")
    if nice:
        return [nice, "-n", str(CONTAINER_NICE), *argv]
    return [sys.executable, "-I", "-S", "-c", _PYTHON_NICE, str(CONTAINER_NICE), *argv]


# `nice -n N command...` for a host without coreutils' nice, with its exit codes.
_PYTHON_NICE = """\
import os, sys
os.nice(int(sys.argv[1]))
try:
    os.execvp(sys.argv[2], sys.argv[2:])
except OSError as error:
    print(f"nice: {sys.argv[2]}: {error.strerror}", file=sys.stderr)
    sys.exit(127 if isinstance(error, FileNotFoundError) else 126)
"""


def _lower_group_priority(session: int) -> None:
    """Where the kernel groups each session for scheduling (autogroup), a process's
    nice only counts inside its group: the container's session gets CONTAINER_NICE
    too, the stack's own group stays at 0.

    On a real node the control plane does not share the pods' CPUs; here it does, and
    a pod burst made every API call and event wait. Best effort: a kernel without
    autogroups has nothing to set.
    """
    try:
        with open(f"/proc/{session}/autogroup", "w") as autogroup:
            autogroup.write(str(CONTAINER_NICE))
    except OSError:
        pass


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _proc_table() -> dict[int, tuple[str, int, int]]:
    """pid -> (state, parent pid, process group) for every process, from /proc."""
    out: dict[int, tuple[str, int, int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read().decode(errors="replace")
        except OSError:
            continue
        # the command name (field 2) may hold spaces and parentheses
        fields = stat[stat.rfind(")") + 2 :].split()
        out[int(entry.name)] = (fields[0], int(fields[1]), int(fields[2]))
    return out


def _parents() -> dict[int, int]:
    """pid -> parent pid for every process."""
    return {pid: ppid for pid, (_state, ppid, _group) in _proc_table().items()}


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (children first)."""
    parents = _parents()
    found, frontier = [], [pid]
    while frontier:
        nxt = [p for p, pp in parents.items() if pp in frontier]
        found += nxt
        frontier = nxt
    return found


def _main_process(pid: int, sandboxed: bool) -> int | None:
    """The container's own first process; under bubblewrap, the first descendant that
    is not one of its helpers (None until the command has been exec'd)."""
    if not sandboxed:
        return pid
    frontier = [pid]
    parents = _parents()
    while frontier:
        kids = sorted(p for p, pp in parents.items() if pp in frontier)
        for kid in kids:
            if _comm(kid) != BWRAP:
                return kid
        frontier = kids
    return None


def _comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""
