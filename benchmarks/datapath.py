"""Scenarios 6 and 7: the configure and publish pods' data paths against curl and boto3.

Both sides run as separate processes started the same way, one after the
other, on the same bytes; a process's wall time and peak RSS (from `wait4`)
are what is compared.

The dataset is generated, not stored: a local HTTP server streams `size` bytes
of a repeated 1 MiB random block (`/pattern`) or of zeros (`/zeros`, what a
sparse file reads as). The configure pod turns runs of zeros into holes (a seek
instead of a write) and curl does not, so `/zeros` flatters the pod; the
pattern is the honest comparison.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psutil

from benchmarks.stats import summary
from devstack.processes import start_reporting, stop_by_closing_stdin
from devstack.stack import REPO_ROOT, free_port

BLOCK = os.urandom(1 << 20)
RSS_SAMPLE = 0.01
ZERO_BLOCK = bytes(1 << 20)


class _Source(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    size = 0

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        block = {"/pattern": BLOCK, "/zeros": ZERO_BLOCK}.get(self.path)
        if block is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(self.size))
        self.end_headers()
        left, view = self.size, memoryview(block)
        try:
            while left:
                n = min(left, len(view))
                self.wfile.write(view[:n])
                left -= n
        except (BrokenPipeError, ConnectionResetError):
            pass

    def log_message(self, *args: Any) -> None:
        pass


def serve(size: int) -> None:
    """In a child process: serve `size` bytes per GET until stdin closes; print the URL."""
    handler = type("Source", (_Source,), {"size": size})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    print(f"http://127.0.0.1:{server.server_port}", flush=True)
    sys.stdin.read()
    server.shutdown()


@contextlib.contextmanager
def source_server(size: int) -> Iterator[str]:
    """A dataset server on 127.0.0.1 in its own process, like moto's: the harness's
    threads (RSS sampler, output readers) do not share its interpreter lock; yields
    its URL."""
    server, url = start_reporting(
        [sys.executable, "-c", f"from benchmarks.datapath import serve; serve({int(size)})"],
        cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        stderr=subprocess.DEVNULL)
    try:
        if not url.startswith("http://"):
            raise RuntimeError(f"the dataset server did not start (exit code {server.poll()})")
        yield url
    finally:
        stop_by_closing_stdin(server)


def fresh_page_cache(folder: Path, size: int) -> None:
    """Write `size` bytes to a scratch file in `folder`, then delete it.

    What runs next writes into page cache the kernel has just freed. Memory freed
    longer ago may have been handed back to the host (this VM's virtio-balloon
    free page reporting), and its first touch then faults in the host: `dd` wrote
    a GiB into the cache in 0.17 s right after a free, and in 1.3 s three seconds
    after one. A run's time then followed how long ago memory had been freed.
    """
    scratch = folder / "fresh-page-cache.tmp"
    try:
        write_pattern(scratch, size)
    finally:
        scratch.unlink(missing_ok=True)


def write_pattern(path: Path, size: int) -> None:
    """`size` bytes of the repeated random block into `path`."""
    with open(path, "wb") as out:
        left = size
        while left:
            left -= out.write(BLOCK[:min(left, len(BLOCK))])


def timed(argv: list[str], env: dict[str, str] | None = None,
          cwd: Path = REPO_ROOT, fresh: tuple[Path, int] | None = None) -> dict[str, Any]:
    """Run `argv`; its wall seconds, peak RSS (bytes) and exit code.

    The peak is sampled every 10 ms with psutil: `wait4`'s ru_maxrss would count
    this (large) process's pages, which a forked child starts with. Dirty pages
    of earlier runs are written out first (os.sync), so that no run pays for the
    previous one's writeback; with `fresh` (a folder, a size) the run then starts
    on page cache just freed there (`fresh_page_cache`).
    """
    os.sync()
    if fresh is not None:
        fresh_page_cache(*fresh)
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,  # noqa: S603
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    peak = 0
    watched = psutil.Process(process.pid)
    output: list[bytes] = []
    reader = threading.Thread(target=lambda: output.append(process.stdout.read()),
                              daemon=True)
    reader.start()
    while process.poll() is None:
        with contextlib.suppress(psutil.Error):
            peak = max(peak, watched.memory_info().rss)
        time.sleep(RSS_SAMPLE)
    seconds = time.perf_counter() - started
    reader.join()
    process.stdout.close()
    tail = b"".join(output)[-2000:].decode(errors="replace")
    return {"seconds": seconds, "peak_rss_bytes": peak, "exit_code": process.returncode,
            "output_tail": tail}


def _pod_env(extra: dict[str, str], workdir: Path) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), "LOG_LEVEL": "INFO",
            "TERMINATION_MESSAGE_PATH": str(workdir / "termination"), **extra}


def _check(result: dict[str, Any], what: str) -> dict[str, Any]:
    if result["exit_code"] != 0:
        raise RuntimeError(f"{what} exited {result['exit_code']}: {result['output_tail']}")
    return result


def configure_path(workdir: Path, size: int, repeats: int) -> dict[str, Any]:
    """`python -m functions.configure.pod` vs `curl -o`, downloading the same `size` bytes."""
    workdir.mkdir(parents=True, exist_ok=True)
    env = _pod_env({"diskGB": str(size / 2**30 + 1)}, workdir)
    curl = shutil.which("curl")
    if curl is None:
        raise RuntimeError("curl is not installed")
    runs: dict[str, list[dict[str, Any]]] = {"curl": [], "pod": [], "pod_zeros": [],
                                              "curl_zeros": []}
    with source_server(size) as url:
        # One untimed round first (the first run of each side paid for cold caches:
        # 2.8 s against 0.7-1.2 s for the pod), then the pattern `repeats` times and
        # the zeros once (context only); alternating sides.
        for path in ["/pattern"] * (repeats + 1) + ["/zeros"]:
            label = "_zeros" if path == "/zeros" else ""
            volume = workdir / "volume"
            workflow = workdir / "workflow.json"
            workflow.write_text(json.dumps({"jobId": "bench", "stages": [{
                "index": 0, "input": [{"index": 0, "id": "did:op:bench-data",
                                       "url": url + path}],
                "algorithm": {"id": "did:op:bench-algo", "rawcode": "print('unused')\n"},
                "output": {}}]}))
            runs["pod" + label].append(_check(timed(
                [sys.executable, "-m", "functions.configure.pod", "--volume", str(volume),
                 "--workflow", str(workflow)], env, fresh=(workdir, size)), "the configure pod"))
            shutil.rmtree(volume, ignore_errors=True)
            target = workdir / "curl.out"
            runs["curl" + label].append(_check(timed(
                [curl, "-sS", "--fail", "-o", str(target), url + path], fresh=(workdir, size)),
                "curl"))
            target.unlink(missing_ok=True)
    warmup = _untimed_first(runs, "pod", "curl")
    # Python's own start-up, to read the figures with: the pod with nothing to fetch.
    startup = _pod_startup(workdir, env)
    return _compare(runs, "curl", "pod", size) | {
        "warmup": warmup, "pod_startup": startup,
        "zeros": _compare(runs, "curl_zeros", "pod_zeros", size)}


def _untimed_first(runs: dict[str, list[dict[str, Any]]], *sides: str) -> dict[str, Any]:
    """Take each side's first run out of `runs`: the untimed round, kept apart."""
    return {side: runs[side].pop(0) for side in sides}


def _pod_startup(workdir: Path, env: dict[str, str]) -> dict[str, Any]:
    volume = workdir / "volume"
    workflow = workdir / "workflow.json"
    workflow.write_text(json.dumps({"jobId": "bench", "stages": [{
        "index": 0, "input": [], "algorithm": {"rawcode": "print('unused')\n"}, "output": {}}]}))
    result = _check(timed([sys.executable, "-m", "functions.configure.pod", "--volume",
                           str(volume), "--workflow", str(workflow)], env), "the configure pod")
    shutil.rmtree(volume, ignore_errors=True)
    return result


def _compare(runs: dict[str, list[dict[str, Any]]], reference: str, measured: str,
             size: int) -> dict[str, Any]:
    ref = [r["seconds"] for r in runs[reference]]
    got = [r["seconds"] for r in runs[measured]]
    return {
        "bytes": size,
        reference: {"seconds": summary(ref), "runs": runs[reference]},
        measured: {"seconds": summary(got), "runs": runs[measured],
                   "peak_rss_bytes": max((r["peak_rss_bytes"] for r in runs[measured]),
                                         default=None)},
        # speed ratio: the reference's time over ours (1.0 = as fast), medians of each
        "speed_ratio": summary(ref)["p50"] / summary(got)["p50"] if ref and got else None,
    }


MOTO_SERVER = """
import sys
from moto.server import ThreadedMotoServer
server = ThreadedMotoServer(ip_address="127.0.0.1", port=int(sys.argv[1]), verbose=False)
server.start()
print("ready", flush=True)
sys.stdin.read()  # until the harness closes our stdin
server.stop()
"""


@contextlib.contextmanager
def moto_s3() -> Iterator[str]:
    """moto's ThreadedMotoServer on 127.0.0.1, in a child process (it keeps every byte in
    memory, which must not stay in the harness); yields its endpoint URL."""
    port = free_port()
    server, line = start_reporting([sys.executable, "-c", MOTO_SERVER, str(port)],
                                   stderr=subprocess.DEVNULL)
    try:
        if line != "ready":
            raise RuntimeError(f"moto server did not start (exit code {server.poll()})")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_by_closing_stdin(server)


BOTO3_UPLOAD = """
import sys, time, boto3
from boto3.s3.transfer import TransferConfig
start = time.perf_counter()
client = boto3.client("s3", region_name="us-east-1")
client.upload_file(sys.argv[1], sys.argv[2], sys.argv[3], Config=TransferConfig())
print("upload_file seconds", time.perf_counter() - start)
"""


def publish_path(workdir: Path, size: int, repeats: int) -> dict[str, Any]:
    """`python -m functions.publish.pod` vs a process calling boto3 `upload_file`, to moto."""
    import boto3

    workdir.mkdir(parents=True, exist_ok=True)
    volume = workdir / "volume"
    big = volume / "outputs" / "result.bin"
    big.parent.mkdir(parents=True, exist_ok=True)
    write_pattern(big, size)  # real bytes on disk: both read the same file
    (volume / "logs").mkdir(exist_ok=True)
    (volume / "adminlogs").mkdir(exist_ok=True)
    workflow = workdir / "workflow.json"
    workflow.write_text(json.dumps({"jobId": "bench", "stages": [{
        "index": 0, "output": {"publishOutput": 1, "publishAlgorithmLog": 0}}]}))
    runs: dict[str, list[dict[str, Any]]] = {"boto3": [], "pod": []}
    try:
        with moto_s3() as endpoint:
            aws = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "bench",
                   "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1",
                   "AWS_DEFAULT_REGION": "us-east-1"}
            s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                              aws_access_key_id="bench", aws_secret_access_key="bench")
            # One untimed round first, as for the configure pod: the first upload paid
            # for moto's cold memory (10.4-13.0 s against 6.2-8.2 s after it).
            for number in range(repeats + 1):
                bucket = f"bench-{number}"
                s3.create_bucket(Bucket=bucket)
                env = _pod_env({**aws, "AWS_BUCKET_OUTPUT": bucket, "JOB_ID": "bench"},
                               workdir)
                runs["pod"].append(_check(timed(
                    [sys.executable, "-m", "functions.publish.pod", "--volume", str(volume),
                     "--workflow", str(workflow)], env), "the publish pod"))
                _empty(s3, bucket)
                runs["boto3"].append(_check(timed(
                    [sys.executable, "-c", BOTO3_UPLOAD, str(big), bucket, "bench/result.bin"],
                    {**os.environ, **aws}), "boto3 upload_file"))
                _empty(s3, bucket)
                s3.delete_bucket(Bucket=bucket)
    finally:
        shutil.rmtree(volume, ignore_errors=True)
    warmup = _untimed_first(runs, "pod", "boto3")
    return _compare(runs, "boto3", "pod", size) | {"warmup": warmup}


def _empty(s3: Any, bucket: str) -> None:
    """Free moto's memory between runs."""
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents") or []:
            s3.delete_object(Bucket=bucket, Key=item["Key"])
