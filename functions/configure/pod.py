"""The configure pod: lays out /data, downloads the datasets and the algorithm.

Run as `python -m functions.configure.pod` in the `<wf>-configure` Job.
Environment: VOLUME (/data), WORKFLOW (/workflow.json), JOB_ID,
TERMINATION_MESSAGE_PATH, and the engine settings (diskGB, OPERATOR_PRIVATE_KEY,
LOG_LEVEL). Exit 0 when everything is in place, 31 when a dataset (or the
workflow itself) could not be provisioned, 32 when the algorithm could not;
the termination message (JSON) says which input or file and why.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

from functions.configure.fetch import (
    DiskBudget,
    Fetcher,
    FetchError,
    Limits,
    cache_window,
    memory_limit,
)
from functions.configure.layout import Layout, WorkflowError, algorithm_source, load_workflow
from functions.configure.provider import Provider
from shared import settings as settings_module
from shared.pod import close_logging, setup_logging, write_termination

EXIT_OK, EXIT_DATA, EXIT_ALGORITHM = 0, 31, 32


class StageFailure(Exception):
    """Provisioning failed; carries the exit code and the termination message."""

    def __init__(self, code: int, message: dict[str, Any]):
        super().__init__(message.get("error"))
        self.code = code
        self.message = {"exitCode": code, **message}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m functions.configure.pod",
        description="Download a workflow's datasets and algorithm into the data volume.")
    parser.add_argument("--volume", default=os.environ.get("VOLUME", "/data"),
                        help="the data volume (env VOLUME, default /data)")
    parser.add_argument("--workflow", default=os.environ.get("WORKFLOW", "/workflow.json"),
                        help="the workflow file (env WORKFLOW, default /workflow.json)")
    parser.add_argument("--connect-timeout", type=float, default=Limits.connect_timeout,
                        help="seconds to wait for a connection")
    parser.add_argument("--read-timeout", type=float, default=Limits.read_timeout,
                        help="longest silence in seconds while receiving")
    parser.add_argument("--retries", type=int, default=Limits.retries,
                        help="retries on transient failures (5xx, resets, timeouts)")
    parser.add_argument("--backoff", type=float, default=Limits.backoff,
                        help="seconds before the first retry, doubled each time")
    return parser.parse_args(argv)


class Configurator:
    """Provisions one workflow stage into a Layout."""

    def __init__(self, workflow: dict[str, Any], layout: Layout, fetcher: Fetcher,
                 provider: Provider, log: Any):
        self.stage = workflow["stages"][0]
        self.metadata_uri = (self.stage.get("output") or {}).get("metadataUri")
        self.layout = layout
        self.fetcher = fetcher
        self.provider = provider
        self.log = log

    def run(self) -> None:
        for item in self.stage.get("input", []):
            self.fetch_input(item)
        self.fetch_algorithm(self.stage["algorithm"])

    def _save_ddo(self, did: str, required: bool) -> dict[str, Any] | None:
        """Fetch and save the DDO; only remote assets need it to go on (as the original)."""
        if not self.metadata_uri:
            return None
        try:
            ddo = self.provider.ddo(self.metadata_uri, did)
        except FetchError as error:
            if required:
                raise
            self.log.warning("no DDO for %s: %s", did, error)
            return None
        self.layout.ddo_file(did).write_text(json.dumps(ddo), encoding="utf-8")
        self.log.info("saved the DDO of %s", did)
        return ddo

    def _remote_files(self, did: str, remote: dict[str, Any], userdata: Any) -> list:
        """One signed-URL maker per file of a remote asset."""
        ddo = self._save_ddo(did, required=True)
        service_id = str(remote["serviceId"])
        provider_url = self.provider.service(ddo, service_id)["serviceEndpoint"]
        count = self.provider.file_count(provider_url, did, service_id)
        return [self.provider.download_url(provider_url, did, service_id, str(remote["txId"]),
                                           index, userdata) for index in range(count)]

    def fetch_input(self, item: dict[str, Any]) -> None:
        did = item["id"]
        folder = self.layout.input_folder(did)
        folder.mkdir(exist_ok=True)
        index = None
        try:
            if "url" in item:
                self._save_ddo(did, required=False)
                urls = item["url"] if isinstance(item["url"], list) else [item["url"]]
            else:
                remote = item["remote"]
                urls = self._remote_files(did, remote, remote.get("userdata"))
            for index, url in enumerate(urls):
                size = self.fetcher.download(url, folder / str(index))
                self.log.info("input %s file %d: %d bytes", did, index, size)
        except (FetchError, OSError) as error:
            raise StageFailure(EXIT_DATA, {
                "stage": "data", "input": {"did": did, "fileIndex": index},
                "error": _reason(error)}) from None

    def fetch_algorithm(self, algorithm: dict[str, Any]) -> None:
        did = algorithm.get("id")
        index = None
        try:
            if "algocustomdata" in algorithm:
                target = self.layout.inputs / "algoCustomData.json"
                target.write_text(json.dumps(algorithm["algocustomdata"]), encoding="utf-8")
            source = algorithm_source(algorithm)
            if source == "rawcode":
                self.fetcher.budget.take(len(algorithm["rawcode"].encode()))
                self.layout.algorithm.write_text(algorithm["rawcode"], encoding="utf-8")
                if did:
                    self._save_ddo(did, required=False)
            elif source == "url":
                if did:
                    self._save_ddo(did, required=False)
                urls = algorithm["url"] if isinstance(algorithm["url"], list) else [
                    algorithm["url"]]
            else:
                remote = algorithm["remote"]
                urls = self._remote_files(did, remote, remote.get("algouserdata")
                                          or remote.get("userdata"))
            if source != "rawcode":
                for index, url in enumerate(urls):
                    # The first file is the algorithm, extra files are numbered 1..N.
                    name = "algorithm" if index == 0 else str(index)
                    size = self.fetcher.download(url, self.layout.transformations / name)
                    self.log.info("algorithm file %s: %d bytes", name, size)
            self.layout.algorithm.chmod(0o755)
        except (FetchError, OSError) as error:
            raise StageFailure(EXIT_ALGORITHM, {
                "stage": "algorithm", "algorithm": {"did": did, "fileIndex": index},
                "error": _reason(error)}) from None


def _reason(error: Exception) -> str:
    if isinstance(error, OSError):  # our own disk, not the server: no URL in it
        return f"cannot write {error.filename or 'a file'}: {error.strerror or error}"
    return str(error)


def configure(args: argparse.Namespace) -> int:
    layout = Layout(Path(args.volume))
    try:
        layout.create()
    except OSError as error:
        raise StageFailure(EXIT_DATA, {"stage": "volume",
                                       "error": f"cannot lay out {args.volume}: {error}"}) from None
    log = setup_logging(layout.adminlogs / "configure.log")
    try:
        settings = settings_module.load()
    except settings_module.SettingsError as error:
        raise StageFailure(EXIT_DATA, {"stage": "settings", "error": str(error)}) from None
    log.setLevel(settings.log_level)
    try:
        workflow = load_workflow(Path(args.workflow))
    except WorkflowError as error:
        raise StageFailure(EXIT_DATA, {"stage": "workflow", "error": str(error)}) from None
    log.info("configuring job %s in %s", os.environ.get("JOB_ID") or workflow.get("jobId"),
             layout.root)
    limits = Limits(args.connect_timeout, args.read_timeout, args.retries, args.backoff,
                    cache_behind=cache_window(memory_limit()))
    fetcher = Fetcher(limits, DiskBudget(int(settings.disk_gb * 2**30)), log)
    try:
        Configurator(workflow, layout, fetcher, Provider(fetcher, settings.operator_private_key),
                     log).run()
    finally:
        fetcher.close()
    log.info("provisioning success: %d bytes", fetcher.budget.used)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        code = configure(args)
        write_termination({"exitCode": code})
    except StageFailure as failure:
        code = failure.code
        logging.getLogger("c2d.pod").error("configure failed: %s", json.dumps(failure.message))
        write_termination(failure.message)
    close_logging()
    return code


if __name__ == "__main__":
    sys.exit(main())
