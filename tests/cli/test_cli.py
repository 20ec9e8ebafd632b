"""The `c2d` command without a stack: help, version, render, and every error as one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from devstack import cli

REPO = Path(__file__).resolve().parents[2]
HELLO = REPO / "examples" / "hello" / "workflow.yaml"
COMMANDS = ("run", "up", "down", "serve", "status", "submit", "logs", "stop", "results",
            "list", "render")


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No stack, no kubeconfig, no engine settings from the developer's shell."""
    monkeypatch.setenv("C2D_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("C2D_DEBUG", raising=False)
    return tmp_path


def c2d(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        code = cli.main(list(args))
    except SystemExit as exit_:  # argparse: --help, --version, usage errors
        code = exit_.code if isinstance(exit_.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got:\n{err}"
    assert lines[0].startswith("c2d: error: ")
    return lines[0]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = c2d(command, "--help", capsys=capsys)
    assert code == 0
    assert out.startswith(f"usage: c2d {command}")


def test_version_and_console_script() -> None:
    script = Path(sys.executable).with_name("c2d")
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "devstack.cli"]
    done = subprocess.run([*argv, "--version"], capture_output=True, text=True, timeout=30,
                          check=False)
    assert done.returncode == 0
    assert done.stdout.strip() == f"c2d {cli.c2d_version()}"
    assert cli.c2d_version() != "unknown"


def test_render_prints_every_manifest_of_every_stage(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("maxJobDuration", "45")
    code, out, err = c2d("render", str(HELLO), "--data-url", "http://127.0.0.1:8080/hello",
                         capsys=capsys)
    assert code == 0, err
    documents = [d for d in yaml.safe_load_all(out) if d]
    kinds = [(d["kind"], d["metadata"]["name"]) for d in documents]
    name = documents[0]["metadata"]["name"]
    assert name.startswith("hello-")
    assert kinds == [("ConfigMap", name), ("Secret", name),
                     ("PersistentVolumeClaim", f"{name}-data"),
                     ("PersistentVolumeClaim", f"{name}-adminlogs"),
                     ("Job", f"{name}-configure"), ("NetworkPolicy", f"{name}-algorithm"),
                     ("Job", f"{name}-algorithm"), ("Job", f"{name}-publish")]
    algorithm = documents[6]
    assert algorithm["spec"]["activeDeadlineSeconds"] == 45  # min(maxtime 60, maxJobDuration)
    assert "http://127.0.0.1:8080/hello/lines.txt" in documents[0]["data"]["workflow.json"]


def test_render_one_stage(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = c2d("render", str(HELLO), "--stage", "publish", capsys=capsys)
    assert code == 0
    [job] = [d for d in yaml.safe_load_all(out) if d]
    assert job["metadata"]["name"].endswith("-publish")


@pytest.mark.parametrize("content, problem", [
    ("spec: [unclosed", "is not valid YAML (line 1)"),
    ("- a list\n", "must hold one Workflow object"),
    ("kind: Pod\nspec: {}\n", "kind/apiVersion must be Workflow"),
    ("spec:\n  metadata:\n    stages: []\n", "spec.metadata.stages: required"),
    (HELLO.read_text().replace("generateName: hello-", "generateName: Bad_Name-"),
     "metadata.generateName must be a lowercase DNS prefix"),
])
def test_render_rejects_bad_workflow_files(content: str, problem: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(content)
    code, _, err = c2d("render", str(path), capsys=capsys)
    assert code == 1
    assert problem in one_error_line(err)


def test_invalid_stage_fields_are_named(tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    body = yaml.safe_load(HELLO.read_text())
    stage = body["spec"]["metadata"]["stages"][0]
    stage["input"][0]["url"] = "ftp://example.org/x"
    del stage["algorithm"]["container"]["entrypoint"]
    path = tmp_path / "wf.yaml"
    path.write_text(yaml.safe_dump(body))
    code, _, err = c2d("render", str(path), capsys=capsys)
    line = one_error_line(err)
    assert code == 1
    assert "spec.metadata.stages[0].input[0].url: must be an http(s) URL" in line
    assert "spec.metadata.stages[0].algorithm.container.entrypoint: required" in line


def test_missing_file_and_bad_setting(capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    code, _, err = c2d("render", "nope.yaml", capsys=capsys)
    assert code == 1 and one_error_line(err) == "c2d: error: workflow file nope.yaml not found"
    monkeypatch.setenv("maxJobs", "zero")
    code, _, err = c2d("render", str(HELLO), capsys=capsys)
    assert code == 1 and "invalid setting maxJobs='zero'" in one_error_line(err)
    code, _, err = c2d("up", capsys=capsys)
    assert code == 1 and "invalid setting maxJobs='zero'" in one_error_line(err)


def test_placeholder_needs_a_data_url_outside_the_embedded_stack(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    write_kubeconfig(kubeconfig, "https://127.0.0.1:1")
    code, _, err = c2d("submit", str(HELLO), "--kubeconfig", str(kubeconfig), capsys=capsys)
    assert code == 1 and "uses {{DATA_URL}}" in one_error_line(err)


def write_kubeconfig(path: Path, server: str) -> None:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": server}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u",
                                               "namespace": "team"}}],
        "users": [{"name": "u", "user": {"token": "t"}}]}))


def test_cluster_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = c2d("list", capsys=capsys)
    assert code == 1 and "no cluster: start the embedded one with `c2d up`" in \
        one_error_line(err)
    broken = tmp_path / "broken"
    broken.write_text("clusters: [")
    code, _, err = c2d("list", "--kubeconfig", str(broken), capsys=capsys)
    assert code == 1 and "cannot load kubeconfig" in one_error_line(err)
    unreachable = tmp_path / "unreachable"
    write_kubeconfig(unreachable, "http://127.0.0.1:1")
    code, _, err = c2d("status", "x", "--kubeconfig", str(unreachable), capsys=capsys)
    assert code == 1 and "cannot reach the cluster" in one_error_line(err)


def test_cluster_namespace_comes_from_the_context(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    write_kubeconfig(kubeconfig, "http://127.0.0.1:1")
    assert cli.Cluster(str(kubeconfig), None).namespace == "team"
    assert cli.Cluster(str(kubeconfig), "other").namespace == "other"


def test_stack_commands_without_a_stack(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = c2d("status", capsys=capsys)
    assert code == 1 and "the embedded stack is not running" in one_error_line(err)
    code, _, err = c2d("down", capsys=capsys)
    assert code == 0 and "not running" in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert c2d("run", str(HELLO), "--timeout", "-1", capsys=capsys)[0] == 2
    assert c2d("frobnicate", capsys=capsys)[0] == 2
    assert c2d(capsys=capsys)[0] == 2


def test_run_checks_the_file_before_starting_anything(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text("spec: {}\n")
    code, _, err = c2d("run", str(path), capsys=capsys)
    assert code == 1 and "invalid workflow" in one_error_line(err)
    assert not (tmp_path / "home" / "runs").exists()


def test_stage_names_and_results_table() -> None:
    assert [cli.stage_of(c) for c in (0, 1, 10, 20, 31, 40, 50, 60, 70)] == [
        "submitted", "queued", "configure", "configure", "algorithm", "algorithm", "filter",
        "publish", "finished"]
    workflow = {"metadata": {"name": "w"}, "status": {"results": [
        {"index": 0, "type": "output", "filename": "a b.txt", "filesize": 3,
         "url": "file:///tmp/s/w/outputs/a%20b.txt"}]}}
    table = cli.results_table(workflow).splitlines()
    assert table[0].split() == ["INDEX", "TYPE", "FILENAME", "SIZE", "URL"]
    assert cli.result_folders(workflow) == [Path("/tmp/s/w/outputs")]
    assert cli.unlisted_results(workflow) is None
    workflow["status"].update(resultsCount=3, resultsManifest="file:///tmp/s/w/results.json")
    assert cli.unlisted_results(workflow) == (
        "2 more results (too many for the status) are listed in file:///tmp/s/w/results.json")
