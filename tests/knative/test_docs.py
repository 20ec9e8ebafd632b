"""docs/deploy.md: its commands are the ones that work.

Every command of its shell blocks that can run without a cluster is run (or
parsed, for `c2d`), and the migration table covers every original variable.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from devstack import cli
from shared import settings

from .manifests import ORIGINAL, REPO, SECRET_KEYS, kubectl, kustomize

DOC = REPO / "docs" / "deploy.md"
TEXT = DOC.read_text(encoding="utf-8")
HEREDOC = re.compile(r"cat > (\S+) <<'EOF'\n(.*?)\n\s*EOF", re.DOTALL)


def commands() -> list[str]:
    """Each command line of the ```sh blocks (continuations joined, comments cut)."""
    found = []
    for block in re.findall(r"```sh\n(.*?)```", TEXT, re.DOTALL):
        block = HEREDOC.sub(lambda m: f"cat > {m.group(1)}", block)
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            line = line.split(" #")[0].strip()
            if line:
                found.append(line)
    return found


def argv(command: str) -> list[str]:
    return shlex.split(command)


def kustomize_paths() -> list[str]:
    paths = set()
    for command in commands():
        words = argv(command)
        if words[:2] == ["kubectl", "kustomize"]:
            paths.add(words[2])
        elif words[0] == "kubectl" and "-k" in words:
            paths.add(words[words.index("-k") + 1])
    return sorted(paths)


def test_the_doc_has_commands_of_every_kind():
    assert {"knative/", "deploy/overlays/s3", "deploy/overlays/ipfs",
            "deploy/overlays/namespace"} <= set(kustomize_paths())
    assert any(c.startswith("c2d ") for c in commands())


@pytest.mark.skipif(kubectl() is None, reason="kubectl is not installed")
@pytest.mark.parametrize("path", kustomize_paths())
def test_every_kustomize_path_in_the_doc_builds(path: str):
    built = kustomize(REPO / path)
    assert any(o["kind"] == "Broker" for o in built)


@pytest.mark.skipif(kubectl() is None, reason="kubectl is not installed")
def test_the_secret_recipe_makes_the_secret_the_functions_read(tmp_path: Path):
    [(name, content)] = HEREDOC.findall(TEXT)
    (tmp_path / name).write_text(re.sub(r"^\s+", "", content, flags=re.MULTILINE) + "\n")
    [create] = [c for c in commands() if "create secret" in c]
    done = subprocess.run([*argv(create), "--dry-run=client", "-o", "json"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    secret = json.loads(done.stdout)
    assert (secret["metadata"]["name"], secret["metadata"]["namespace"]) == ("c2d-secrets",
                                                                             "c2d")
    assert set(secret["data"]) <= SECRET_KEYS and "OPERATOR_PRIVATE_KEY" in secret["data"]


@pytest.mark.parametrize("command", [c for c in commands() if c.startswith("c2d ")])
def test_every_c2d_command_in_the_doc_parses(command: str):
    arguments = cli.build_parser().parse_args(argv(command)[1:])
    assert arguments.handler is not None


def test_the_stop_patch_sets_the_field_the_crd_defines():
    [patch] = [c for c in commands() if " patch workflow " in c]
    body = json.loads(argv(patch)[argv(patch).index("-p") + 1])
    assert body == {"spec": {"stopRequested": True}}
    crd = (REPO / "knative" / "crd.yaml").read_text()
    assert "stopRequested:" in crd


def migration_table() -> str:
    return TEXT.split("## Migrating from operator-engine", 1)[1].split("And beyond", 1)[0]


def test_migration_covers_every_original_variable():
    named = set(re.findall(r"`([A-Za-z_]+)`", migration_table()))
    assert ORIGINAL - named == set()


def test_migration_names_only_real_settings():
    known = {variable for variable, _, _ in settings.SPEC.values()}
    rows = [line for line in migration_table().splitlines() if line.startswith("| `")]
    for row in rows:
        first_cell = row.split("|")[1]
        for name in re.findall(r"`([A-Za-z_*]+)`", first_cell):
            assert name in known or name == "POSTGRES_*", f"{name}: not a c2d setting"


def test_paths_named_in_the_doc_exist():
    for path in set(re.findall(r"`((?:knative|deploy|examples|docs)/[\w./-]*)`", TEXT)):
        assert (REPO / path).exists(), path
