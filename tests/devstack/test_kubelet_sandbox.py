"""The kubelet's process core without an API server: sandbox, env, volumes."""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import sys
import time
from pathlib import Path

import psutil
import pytest

from devstack.kubelet import sandbox
from devstack.kubelet.podconfig import ConfigError, EnvResolver, expand
from devstack.kubelet.sandbox import ContainerProcess, Mount, bwrap_argv, rewrite_paths
from devstack.kubelet.volumes import container_mounts, prepare_volumes
from devstack.testing import wait_until

needs_bwrap = pytest.mark.skipif(
    sandbox.detect_mode() != sandbox.BWRAP, reason="bubblewrap cannot run on this machine"
)


def run(argv: list[str], tmp_path: Path, env: dict | None = None) -> tuple[int, str]:
    out = tmp_path / "out.log"
    proc = ContainerProcess(argv, env or {"PATH": os.environ["PATH"]}, "/", out)
    rc = proc.wait()
    return rc, out.read_text()


# -- $(VAR) expansion ----------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("$(A)/x", "1/x"),
        ("$$(A)", "$(A)"),
        ("$(MISSING)", "$(MISSING)"),
        ("a$b", "a$b"),
        ("$(A", "$(A"),
        ("end$", "end$"),
        ("$(A)$(B)", "12"),
    ],
)
def test_expand_follows_kubernetes_rules(text: str, want: str) -> None:
    assert expand(text, {"A": "1", "B": "2"}) == want


def _secret(data: dict[str, str]) -> dict:
    return {"data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def test_env_order_refs_and_missing_sources() -> None:
    secrets = {"s": _secret({"token": "t0p"})}
    cms = {"cm": {"data": {"MODE": "fast", "bad key": "x"}}}
    resolver = EnvResolver(lambda ns, n: secrets.get(n), lambda ns, n: cms.get(n))
    pod = {"metadata": {"name": "p1", "namespace": "ns1", "labels": {"app": "a"}}}
    container = {
        "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
        "env": [
            {"name": "A", "value": "x"},
            {"name": "B", "value": "$(A)-$(CM_MODE)-$(LATER)"},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "token"}}},
            {"name": "OPT", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k",
                                                           "optional": True}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "LATER", "value": "late"},
        ],
    }
    env = resolver.environment(pod, container, {"PATH": "/bin"})
    assert env["B"] == "x-fast-$(LATER)"  # only variables defined before are expanded
    assert env["TOKEN"] == "t0p"
    assert "OPT" not in env
    assert (env["POD"], env["NS"], env["APP"]) == ("p1", "ns1", "a")
    assert "CM_bad key" not in env

    missing = {"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "gone", "key": "k"}}}]}
    with pytest.raises(ConfigError, match='secret "gone" not found'):
        resolver.environment(pod, missing, {})
    no_key = {"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]}
    with pytest.raises(ConfigError, match="couldn't find key k in Secret ns1/s"):
        resolver.environment(pod, no_key, {})


def test_each_source_is_read_once_per_environment() -> None:
    reads: list[tuple[str, str]] = []
    secrets = {"s": _secret({"a": "1", "b": "2"})}

    def get_secret(ns: str, name: str) -> dict | None:
        reads.append((ns, name))
        return secrets.get(name)

    resolver = EnvResolver(get_secret, lambda ns, n: None)
    pod = {"metadata": {"name": "p1", "namespace": "ns1"}}
    container = {
        "envFrom": [{"secretRef": {"name": "s"}, "prefix": "ALL_"}],
        "env": [{"name": name.upper(), "valueFrom": {"secretKeyRef": {"name": secret, "key": key,
                                                                      "optional": True}}}
                for name, secret, key in (("a", "s", "a"), ("b", "s", "b"),
                                          ("c", "gone", "c"), ("d", "gone", "d"))],
    }
    env = resolver.environment(pod, container, {})
    assert (env["A"], env["B"], env["ALL_a"]) == ("1", "2", "1")
    assert "C" not in env and "D" not in env
    assert reads == [("ns1", "s"), ("ns1", "gone")]  # a missing one is remembered too

    secrets["s"] = _secret({"a": "changed", "b": "2"})
    assert resolver.environment(pod, container, {})["A"] == "changed"  # the next start reads again
    assert len(reads) == 4


# -- volumes ---------------------------------------------------------------------


def test_configmap_items_modes_and_hostile_paths(tmp_path: Path) -> None:
    cms = {"wf": {"data": {"workflow.json": '{"a": 1}', "other": "o"}}}
    pod = {
        "metadata": {"name": "p", "namespace": "ns"},
        "spec": {"volumes": [
            {"name": "wf", "configMap": {"name": "wf", "defaultMode": 0o600,
                                         "items": [{"key": "workflow.json",
                                                    "path": "workflow.json"}]}},
            {"name": "scratch", "emptyDir": {}},
            {"name": "data", "persistentVolumeClaim": {"claimName": "c1"}},
        ]},
    }
    volumes = prepare_volumes(pod, tmp_path / "pod", tmp_path / "claims",
                              lambda ns, n: None, lambda ns, n: cms.get(n), lambda ns, n: {})
    wf = volumes["wf"] / "workflow.json"
    assert wf.read_text() == '{"a": 1}'
    assert oct(wf.stat().st_mode & 0o777) == oct(0o600)
    assert not (volumes["wf"] / "other").exists()
    assert volumes["data"] == tmp_path / "claims" / "ns" / "c1"
    container = {"volumeMounts": [
        {"name": "wf", "mountPath": "/workflow.json", "subPath": "workflow.json"},
        {"name": "data", "mountPath": "/data/"},
        {"name": "data", "mountPath": "/data/adminlogs", "subPath": "adminlogs"},
    ]}
    mounts = container_mounts(container, volumes, pod, {})
    assert mounts[0] == Mount(wf, "/workflow.json", True)
    assert mounts[1] == Mount(volumes["data"], "/data", False)
    assert (volumes["data"] / "adminlogs").is_dir()  # a missing subPath is created

    hostile = {"volumeMounts": [{"name": "data", "mountPath": "/x", "subPath": "../../etc"}]}
    with pytest.raises(ConfigError, match="subPath"):
        container_mounts(hostile, volumes, pod, {})
    bad_item = dict(pod, spec={"volumes": [{"name": "wf", "configMap": {
        "name": "wf", "items": [{"key": "other", "path": "../escape"}]}}]})
    with pytest.raises(ConfigError, match="items path"):
        prepare_volumes(bad_item, tmp_path / "pod2", tmp_path / "claims",
                        lambda ns, n: None, lambda ns, n: cms.get(n), lambda ns, n: {})
    assert not (tmp_path / "pod2" / "escape").exists()
    with pytest.raises(ConfigError, match='persistentvolumeclaim "c1" not found'):
        prepare_volumes(pod, tmp_path / "pod3", tmp_path / "claims",
                        lambda ns, n: None, lambda ns, n: cms.get(n), lambda ns, n: None)


# -- processes -------------------------------------------------------------------


@needs_bwrap
def test_bwrap_sees_real_mount_paths_and_leaves_host_alone(tmp_path: Path) -> None:
    assert not Path("/c2d-test-data").exists()
    claim = tmp_path / "claim"
    claim.mkdir()
    wf = tmp_path / "wf.json"
    wf.write_text('{"ok": true}')
    mounts = [Mount(claim, "/c2d-test-data"), Mount(wf, "/workflow.json", True),
              Mount(tmp_path / "msg", "/dev/termination-log")]
    (tmp_path / "msg").write_text("")
    script = (
        "import json, os, sys; "
        "ok = json.load(open('/workflow.json'))['ok'];"
        "open('/c2d-test-data/out.txt', 'w').write(ok and 'y');"
        "open('/dev/termination-log', 'w').write('bye');"
        "print(sys.executable, os.getpid())"
    )
    argv = bwrap_argv([sys.executable, "-c", script], mounts, "/c2d-test-data", "pod-x")
    rc, out = run(argv, tmp_path)
    assert rc == 0, out
    assert (claim / "out.txt").read_text() == "y"
    assert (tmp_path / "msg").read_text() == "bye"
    assert not Path("/c2d-test-data").exists()
    assert out.split()[0] == sys.executable
    assert int(out.split()[1]) < 10  # its own PID namespace


@needs_bwrap
def test_bwrap_read_only_volume_and_exit_codes(tmp_path: Path) -> None:
    wf = tmp_path / "wf.json"
    wf.write_text("{}")
    argv = bwrap_argv(["sh", "-c", "echo x > /workflow.json"],
                      [Mount(wf, "/workflow.json", True)], None, "p")
    rc, out = run(argv, tmp_path)
    assert rc != 0 and "Read-only" in out
    assert wf.read_text() == "{}"
    rc, _ = run(bwrap_argv(["sh", "-c", "exit 7"], [], None, "p"), tmp_path)
    assert rc == 7


def test_rewrite_mode_replaces_whole_path_prefixes() -> None:
    m = [Mount(Path("/h/claim"), "/data"), Mount(Path("/h/logs"), "/data/adminlogs")]
    assert rewrite_paths("--out=/data/outputs/x", m) == "--out=/h/claim/outputs/x"
    assert rewrite_paths("/data/adminlogs/a.log", m) == "/h/logs/a.log"
    assert rewrite_paths("/database /x/data /data", m) == "/database /x/data /h/claim"


@pytest.mark.parametrize("use_bwrap", [True, False])
def test_stop_sends_sigterm_then_sigkill_to_the_whole_group(tmp_path: Path, use_bwrap) -> None:
    if use_bwrap and sandbox.detect_mode() != sandbox.BWRAP:
        pytest.skip("bubblewrap cannot run on this machine")
    # the main process ignores SIGTERM; its child (same group) would outlive a plain kill
    script = "trap 'echo got-term' TERM; sleep 300 & while true; do sleep 0.05; done"
    command = ["sh", "-c", script]
    argv = bwrap_argv(command, [], None, "p") if use_bwrap else command
    out = tmp_path / "log"
    proc = ContainerProcess(argv, {"PATH": os.environ["PATH"]}, "/", out)
    wait_until(lambda: any(p.name() == "sleep" and "300" in p.cmdline()
                         for p in psutil.Process(proc.pid).children(recursive=True)),
             what="the container's child")
    tree = [proc.pid] + [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
    started = time.monotonic()
    proc.stop(grace=0.5)
    rc = proc.wait()
    assert time.monotonic() - started < 5
    assert rc == 128 + signal.SIGKILL
    assert "got-term" in out.read_text()
    for pid in tree:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


def test_rewrite_mode_keeps_no_orphan_after_main_exits(tmp_path: Path) -> None:
    proc = ContainerProcess(["sh", "-c", "sleep 300 & echo started"],
                            {"PATH": os.environ["PATH"]}, "/", tmp_path / "log",
                            kill_with_parent=True)
    group = proc.pid
    assert proc.wait() == 0

    def leftovers() -> list[psutil.Process]:  # a killed child is briefly alive, then a zombie
        return [p for p in psutil.process_iter(["pid", "status"])
                if _pgid(p.pid) == group and p.info["status"] != psutil.STATUS_ZOMBIE]

    wait_until(lambda: not leftovers(), timeout=5, what="the process group to be gone")


def test_a_container_that_leaves_nothing_costs_no_read_of_proc(tmp_path: Path,
                                                                monkeypatch) -> None:
    """Reading every process's /proc entry per exit was a tenth of the stack's CPU."""
    reads = []
    table = sandbox._proc_table
    monkeypatch.setattr(sandbox, "_proc_table", lambda: reads.append(1) or table())
    proc = ContainerProcess(["sh", "-c", "exit 3"], {"PATH": os.environ["PATH"]}, "/",
                            tmp_path / "log")
    assert proc.wait() == 3
    assert reads == []
    left = ContainerProcess(["sh", "-c", "sleep 300 & echo started"],
                            {"PATH": os.environ["PATH"]}, "/", tmp_path / "log2")
    assert left.wait() == 0
    assert reads  # a group member is left: it is looked for, and killed (test above)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def test_detect_mode_rejects_unknown_and_honours_rewrite(monkeypatch) -> None:
    with pytest.raises(ValueError, match="kubelet mode"):
        sandbox.detect_mode("chroot")
    assert sandbox.detect_mode("rewrite") == sandbox.REWRITE
    monkeypatch.setenv("PATH", "/nonexistent")
    assert shutil.which("bwrap") is None
    assert sandbox.detect_mode() == sandbox.REWRITE
    with pytest.raises(RuntimeError, match="bwrap not found"):
        sandbox.detect_mode("bwrap")


@needs_bwrap
def test_stop_right_after_start_still_reaches_the_command(tmp_path: Path) -> None:
    # SIGTERM sent before bubblewrap has exec'd the command must not be lost (it would
    # be, sent to bubblewrap's PID-1 helper), or the pod would wait out its whole grace
    for _ in range(5):
        proc = ContainerProcess(bwrap_argv(["sleep", "60"], [], None, "p"),
                                {"PATH": os.environ["PATH"]}, "/", tmp_path / "log")
        started = time.monotonic()
        proc.stop(grace=30)
        assert proc.wait() == 128 + signal.SIGTERM
        assert time.monotonic() - started < 5


def autogroup_nice(pid: int) -> int | None:
    """The nice of the process's scheduling group, where the kernel has autogroups."""
    try:
        text = Path(f"/proc/{pid}/autogroup").read_text()  # "/autogroup-N nice K"
    except OSError:
        return None
    found = re.search(r"nice\s+(-?\d+)", text)
    return int(found.group(1)) if found else None


def without_nice(monkeypatch: pytest.MonkeyPatch) -> None:
    """The sandbox as on a host without coreutils' `nice`."""
    which = sandbox.shutil.which
    monkeypatch.setattr(sandbox.shutil, "which",
                        lambda name: None if name == "nice" else which(name))


@pytest.mark.parametrize(("use_bwrap", "has_nice"), [(False, True), (True, True), (False, False)],
                         ids=["plain", "bwrap", "no nice on the host"])
def test_containers_run_below_the_kubelets_priority(tmp_path: Path, use_bwrap, has_nice,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    if use_bwrap and sandbox.detect_mode() != sandbox.BWRAP:
        pytest.skip("bubblewrap cannot run on this machine")
    if not has_nice:  # the container starts through Python's os.nice instead
        without_nice(monkeypatch)
    command = ["sh", "-c", "sleep 300 & wait"]
    argv = bwrap_argv(command, [], None, "p") if use_bwrap else command
    proc = ContainerProcess(argv, {"PATH": os.environ["PATH"]}, "/", tmp_path / "log")
    try:
        sleeper = wait_until(lambda: [p for p in psutil.Process(proc.pid).children(recursive=True)
                                      if p.name() == "sleep"], what="the container's child")[0]
        own = psutil.Process().nice()
        expected = min(own + sandbox.CONTAINER_NICE, 19)
        assert psutil.Process(proc.pid).nice() == expected
        assert sleeper.nice() == expected  # inherited by what the container starts
        group = autogroup_nice(sleeper.pid)
        if group is not None and autogroup_nice(os.getpid()) is not None:
            assert group == sandbox.CONTAINER_NICE
    finally:
        proc.stop(grace=0)
        proc.wait()


@pytest.mark.parametrize(("program", "code"), [("no-such-tool-c2d", 127), ("/etc", 126)])
def test_without_nice_on_the_host_a_command_that_cannot_run_exits_as_with_nice(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, program: str, code: int) -> None:
    without_nice(monkeypatch)
    proc = ContainerProcess([program], {"PATH": os.environ["PATH"]}, "/", tmp_path / "log")
    assert proc.wait() == code
    assert f"nice: {program}: " in (tmp_path / "log").read_text()


@pytest.mark.parametrize("kill_with_parent, preexec", [(False, False), (True, True)],
                         ids=["bwrap", "plain"])
def test_a_container_needs_no_code_in_the_child_unless_the_kernel_must_kill_it(
        tmp_path: Path, monkeypatch, kill_with_parent: bool, preexec: bool) -> None:
    # With no preexec_fn Python can vfork; a fork of the stack's process held its
    # interpreter lock for ~7 ms per pod. Only PR_SET_PDEATHSIG needs the child.
    seen = []
    popen = sandbox.subprocess.Popen

    def recording(*args, **kwargs):
        seen.append(kwargs.get("preexec_fn"))
        return popen(*args, **kwargs)

    monkeypatch.setattr(sandbox.subprocess, "Popen", recording)
    proc = ContainerProcess(["true"], {"PATH": os.environ["PATH"]}, "/", tmp_path / "log",
                            kill_with_parent=kill_with_parent)
    assert proc.wait() == 0
    assert (seen[0] is not None) is preexec
