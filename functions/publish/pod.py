"""The publish pod: uploads outputs and logs, and reports the result list.

Run as `python -m functions.publish.pod` in the `<wf>-publish` Job. Environment:
VOLUME (/data), WORKFLOW (/workflow.json), JOB_ID, TERMINATION_MESSAGE_PATH and
the storage settings (see shared/storage.py). The termination message is
`{"exitCode": 0, "results": [...]}` when it fits in 4 KiB, else
`{"exitCode": 0, "manifest": "<url of results.json>", "count": N}`; read it with
`shared.storage.read_results`. Exit 0 only when every listed file was uploaded;
1 otherwise, with the failed files named in the message.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

from functions.publish import collect
from shared import settings as settings_module
from shared import storage
from shared.pod import (
    TERMINATION_LIMIT,
    close_logging,
    read_workflow_file,
    setup_logging,
    write_termination,
)

JOB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")
EXIT_OK, EXIT_FAILED = 0, 1


class PublishError(Exception):
    """Publishing cannot start (bad workflow, settings or job id)."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m functions.publish.pod",
        description="Upload a workflow's outputs and logs and report the result list.")
    parser.add_argument("--volume", default=os.environ.get("VOLUME", "/data"),
                        help="the data volume (env VOLUME, default /data)")
    parser.add_argument("--workflow", default=os.environ.get("WORKFLOW", "/workflow.json"),
                        help="the workflow file (env WORKFLOW, default /workflow.json)")
    return parser.parse_args(argv)


def read_workflow(path: Path) -> tuple[str, dict[str, Any]]:
    """(job id, the stage's `output` object) from the workflow file."""
    try:
        workflow = read_workflow_file(path)
    except ValueError as error:
        raise PublishError(str(error)) from None
    if not isinstance(workflow, dict):
        raise PublishError(f"workflow file {path} must hold a JSON object")
    job_id = os.environ.get("JOB_ID") or workflow.get("jobId")
    if not isinstance(job_id, str) or not JOB_ID.match(job_id):
        raise PublishError(f"job id {job_id!r} (JOB_ID or jobId) is missing or not a safe "
                           "name (letters, digits, '.', '_', '-')")
    stages = workflow.get("stages")
    stage = stages[0] if isinstance(stages, list) and stages else {}
    output = stage.get("output") if isinstance(stage, dict) else None
    return job_id, output if isinstance(output, dict) else {}


class Publisher:
    """Uploads items one by one, keeping the results and the failures."""

    def __init__(self, outputs: storage.Backend, admin: storage.Backend,
                 log: logging.Logger):
        self.outputs = outputs
        self.admin = admin
        self.log = log
        self.results: list[dict[str, Any]] = []
        self.failed: list[str] = []
        self.reasons: list[str] = []

    def upload(self, item: collect.Item) -> None:
        backend = self.admin if item.admin else self.outputs
        try:
            size = item.source.stat().st_size
            url = backend.upload(item.source, item.key)
        except Exception as error:  # every failure is reported, none is fatal to the rest
            reason = f"{item.key}: {type(error).__name__}: {str(error)[:300]}"
            self.log.error("upload failed: %s", reason)
            self.failed.append(item.key)
            self.reasons.append(reason)
            return
        self.results.append({"index": len(self.results), "filename": item.filename,
                             "filesize": size, "type": item.type, "url": url})
        self.log.info("uploaded %s (%d bytes)", item.key, size)


def termination(publisher: Publisher, manifest_url: str | None) -> dict[str, Any]:
    """The termination message: the manifest's URL, and the results too when they fit."""
    message: dict[str, Any] = {"exitCode": EXIT_FAILED if publisher.failed else EXIT_OK}
    if manifest_url is not None:
        message["manifest"] = manifest_url
    if publisher.failed:
        more = len(publisher.reasons) - 1
        message["error"] = "upload failed for " + publisher.reasons[0] + (
            f" (and {more} more)" if more else "")
        message["failed"] = [key[:200] for key in publisher.failed[:5]]
    inline = {**message, "results": publisher.results}
    if len(json.dumps(inline, separators=(",", ":")).encode()) <= TERMINATION_LIMIT:
        return inline
    return {**message, "count": len(publisher.results)}


def publish(args: argparse.Namespace) -> dict[str, Any]:
    volume = Path(args.volume)
    log = setup_logging(volume / "adminlogs" / "publish.log")
    try:
        settings = settings_module.load()
        log.setLevel(settings.log_level)
        job_id, output = read_workflow(Path(args.workflow))
        outputs_backend = storage.output_backend(settings)
        admin_backend = storage.adminlogs_backend(settings)
    except (settings_module.SettingsError, PublishError) as error:
        log.error("publish cannot start: %s", error)
        return {"exitCode": EXIT_FAILED, "error": str(error)}
    log.info("publishing job %s with %s", job_id, type(outputs_backend).__name__)

    items = []
    if collect.enabled(output.get("publishOutput")):
        items += collect.outputs(volume, job_id, log)
    else:
        log.info("publishOutput is off: outputs are not uploaded")
    items += collect.logs(volume, job_id, collect.enabled(output.get("publishAlgorithmLog")),
                          log)
    publisher = Publisher(outputs_backend, admin_backend, log)
    for item in items:
        publisher.upload(item)
    log.info("%d uploaded, %d failed; uploading publish.log and the manifest",
             len(publisher.results), len(publisher.failed))
    close_logging()  # publish.log is complete from here on
    log = setup_logging(None)
    publish_log = collect.publish_log(volume, job_id)
    if publish_log.source.is_file():
        publisher.upload(publish_log)

    manifest_url = None
    try:
        manifest_url = outputs_backend.put_bytes(
            f"{job_id}/{storage.MANIFEST}", storage.manifest_bytes(job_id, publisher.results))
    except Exception as error:
        publisher.failed.append(f"{job_id}/{storage.MANIFEST}")
        publisher.reasons.append(f"{job_id}/{storage.MANIFEST}: {type(error).__name__}: "
                                 f"{str(error)[:300]}")
    return termination(publisher, manifest_url)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    message = publish(args)
    if message["exitCode"] != EXIT_OK:
        logging.getLogger("c2d.pod").error("publish failed: %s", message.get("error"))
    write_termination(message)
    close_logging()
    return message["exitCode"]


if __name__ == "__main__":
    sys.exit(main())
