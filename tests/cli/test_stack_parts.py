"""Parts of devstack/stack.py that need no cluster: settings, the dataset server, guards."""

from __future__ import annotations

from pathlib import Path

import pytest
import requests

from devstack import cli
from devstack.stack import DataServer, Stack, StackError, settings_environ


def test_settings_come_from_the_environment_with_local_defaults(tmp_path: Path) -> None:
    env = settings_environ({"maxJobs": "2", "HOME": "/root", "C2D_NAMESPACE": "team"}, tmp_path)
    assert env == {"maxJobs": "2", "C2D_NAMESPACE": "team",
                   "C2D_STORAGE_DIR": str(tmp_path / "storage"), "LOG_LEVEL": "INFO"}
    assert settings_environ({"C2D_STORAGE_DIR": "/srv/x"}, tmp_path)["C2D_STORAGE_DIR"] == \
        "/srv/x"


def test_stack_refuses_bad_options_before_starting(tmp_path: Path) -> None:
    with pytest.raises(StackError, match="server must be one of thread, gunicorn"):
        Stack(tmp_path, server="uwsgi", environ={})
    with pytest.raises(StackError, match="ping period must be positive"):
        Stack(tmp_path, ping_period=0, environ={})
    with pytest.raises(StackError, match="manifests folder .* does not exist"):
        Stack(tmp_path, manifests_dir=tmp_path / "nope", environ={})
    with pytest.raises(StackError, match="invalid setting maxJobDuration='-3'"):
        Stack(tmp_path, environ={"maxJobDuration": "-3"})
    assert not (tmp_path / "kubeconfig").exists()


def test_stack_secret_takes_only_the_keys_it_knows(tmp_path: Path) -> None:
    stack = Stack(tmp_path, environ={"OPERATOR_PRIVATE_KEY": "0x" + "1" * 64, "AWS_REGION": "x",
                                     "IPFS_API_KEY": "", "PATH": "/bin"})
    assert stack.secrets == {"OPERATOR_PRIVATE_KEY": "0x" + "1" * 64}


def test_dataset_server_serves_its_folder_only(tmp_path: Path) -> None:
    root = tmp_path / "site"
    (root / "hello" / "data").mkdir(parents=True)
    (root / "hello" / "data" / "lines.txt").write_text("a\nb\n")
    (tmp_path / "secret.txt").write_text("outside")
    server = DataServer(root)
    try:
        url = server.url_for(root / "hello" / "data")
        assert url == f"{server.url}/hello/data"
        assert requests.get(f"{url}/lines.txt", timeout=5).text == "a\nb\n"
        escaped = requests.get(f"{server.url}/../secret.txt", timeout=5)
        assert "outside" not in escaped.text
        assert requests.get(f"{server.url}/%2e%2e/secret.txt", timeout=5).status_code == 404
        with pytest.raises(StackError, match="is not inside the served folder"):
            server.url_for(tmp_path)
    finally:
        server.stop()


def test_workdir_guard_never_empties_a_foreign_folder(tmp_path: Path) -> None:
    (tmp_path / "precious.txt").write_text("keep me")
    with pytest.raises(cli.CliError, match="is not an old c2d stack folder"):
        cli.fresh_workdir(tmp_path)
    assert (tmp_path / "precious.txt").exists()
    old = tmp_path / "old-stack"
    old.mkdir()
    (old / "kubeconfig").write_text("")
    (old / "stack.log").write_text("")
    assert cli.fresh_workdir(old) == old and not old.exists()
    assert cli.fresh_workdir(tmp_path / "new") == tmp_path / "new"
