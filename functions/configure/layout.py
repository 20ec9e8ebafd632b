"""The data volume's layout (as Ocean algorithms expect it) and the pod's workflow file.

Input folders are named by the DID without its `did:op:` prefix, as Ocean's
pod-configuration does and as the `DIDS` variable of the algorithm pod lists them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared import workflow as wf
from shared.pod import read_workflow_file


class WorkflowError(ValueError):
    """The workflow file is missing or does not describe a stage we can configure."""


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def inputs(self) -> Path:
        return self.root / "inputs"

    @property
    def transformations(self) -> Path:
        return self.root / "transformations"

    @property
    def ddos(self) -> Path:
        return self.root / "ddos"

    @property
    def outputs(self) -> Path:
        return self.root / "outputs"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def adminlogs(self) -> Path:
        return self.root / "adminlogs"

    @property
    def algorithm(self) -> Path:
        return self.transformations / "algorithm"

    @property
    def algorithm_log(self) -> Path:
        return self.logs / "algorithm.log"

    def create(self) -> None:
        """Make every folder; outputs and logs writable by the (non-root) algorithm."""
        for folder in (self.inputs, self.transformations, self.ddos, self.adminlogs):
            folder.mkdir(parents=True, exist_ok=True)
        for folder in (self.outputs, self.logs):
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(0o777)
        self.algorithm_log.touch(exist_ok=True)
        self.algorithm_log.chmod(0o666)

    def input_folder(self, did: str) -> Path:
        return self.inputs / did_folder(did)

    def ddo_file(self, did: str) -> Path:
        return self.ddos / did_folder(did)


def did_folder(did: str, where: str = "id") -> str:
    """The folder name of a DID; refuses anything that could leave its parent folder."""
    name = wf.did_folder(did)
    if name is None:
        raise WorkflowError(f"{where} {did!r} is not a DID usable as a folder name "
                            "(letters, digits, '.', '_', ':', '-')")
    return name


def _urls(value: Any, where: str) -> list[str]:
    urls = [value] if isinstance(value, str) else value
    if not isinstance(urls, list) or not urls or not all(isinstance(u, str) and u for u in urls):
        raise WorkflowError(f"{where}.url must be a URL or a non-empty list of URLs")
    return urls


def _remote(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise WorkflowError(f"{where}.remote must be an object")
    for key in ("txId", "serviceId"):
        if not isinstance(value.get(key), str | int) or value.get(key) == "":
            raise WorkflowError(f"{where}.remote.{key} is missing")
    return value


def _check_input(item: Any, where: str) -> None:
    if not isinstance(item, dict):
        raise WorkflowError(f"{where} must be an object")
    did_folder(item.get("id"), f"{where}.id")
    if "url" in item:
        _urls(item["url"], where)
    elif "remote" in item:
        _remote(item["remote"], where)
    else:
        raise WorkflowError(f"{where} has neither url nor remote")


def algorithm_source(algorithm: dict[str, Any]) -> str | None:
    """`rawcode`, `url` or `remote`: the first usable, in the original's order."""
    rawcode = algorithm.get("rawcode")
    if isinstance(rawcode, str) and len(rawcode) > 10:  # shorter rawcode is ignored (Ocean)
        return "rawcode"
    if algorithm.get("url"):
        return "url"
    if algorithm.get("remote"):
        return "remote"
    return None


def _check_algorithm(algorithm: Any) -> None:
    where = "stages[0].algorithm"
    if not isinstance(algorithm, dict):
        raise WorkflowError(f"{where} must be an object")
    if algorithm.get("id") is not None:
        did_folder(algorithm["id"], f"{where}.id")
    source = algorithm_source(algorithm)
    if source == "url":
        _urls(algorithm["url"], where)
    elif source == "remote":
        _remote(algorithm["remote"], where)
        if algorithm.get("id") is None:
            raise WorkflowError(f"{where}.id is needed for a remote algorithm")
    elif source is None:
        raise WorkflowError(f"{where} needs rawcode (over 10 characters), url or remote")


def load_workflow(path: Path) -> dict[str, Any]:
    """The workflow file, checked: one stage with inputs, an algorithm and an output."""
    try:
        workflow = read_workflow_file(path)
    except ValueError as error:
        raise WorkflowError(str(error)) from None
    if not isinstance(workflow, dict):
        raise WorkflowError(f"workflow file {path} must hold a JSON object")
    stages = workflow.get("stages")
    if not isinstance(stages, list) or len(stages) != 1 or not isinstance(stages[0], dict):
        raise WorkflowError("stages must be a list of exactly one stage object")
    stage = stages[0]
    inputs = stage.get("input", [])
    if not isinstance(inputs, list):
        raise WorkflowError("stages[0].input must be a list")
    for number, item in enumerate(inputs):
        _check_input(item, f"stages[0].input[{number}]")
    _check_algorithm(stage.get("algorithm"))
    output = stage.get("output", {})
    if not isinstance(output, dict):
        raise WorkflowError("stages[0].output must be an object")
    uri = output.get("metadataUri")
    if uri is not None and not (isinstance(uri, str) and re.match(r"^https?://", uri)):
        raise WorkflowError("stages[0].output.metadataUri must be an http(s) URL")
    remote = [item for item in inputs if "url" not in item] + (
        [stage["algorithm"]] if algorithm_source(stage["algorithm"]) == "remote" else [])
    if uri is None and remote:
        raise WorkflowError("stages[0].output.metadataUri is needed for remote inputs "
                            "and algorithms")
    return workflow
