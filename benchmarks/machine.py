"""What the numbers were measured on: CPU, memory, load, versions, git commit."""

from __future__ import annotations

import bisect
import json
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("flask", "gunicorn", "werkzeug", "kubernetes", "cloudevents", "requests", "urllib3",
            "boto3", "botocore", "moto", "psutil")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def memory_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (other users of the machine show here)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def busy_seconds() -> float:
    """CPU seconds the whole machine has been busy since boot: all cores, every process."""
    times = psutil.cpu_times()
    return times.user + times.nice + times.system + times.irq + times.softirq


class BusySampler:
    """`busy_seconds()` every `interval` seconds, in a thread, as (instant, seconds) pairs.

    The kernel counts CPU time in ticks of 10 ms, so sampling more often adds
    nothing; a sample costs some 40 us.
    """

    def __init__(self, interval: float = 0.02):
        self.interval = interval
        self.samples: list[tuple[float, float]] = []
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-busy", daemon=True)

    def start(self) -> BusySampler:
        self._thread.start()
        return self

    def _run(self) -> None:
        while True:
            self.samples.append((time.time(), busy_seconds()))
            if self._stopped.wait(self.interval):
                self.samples.append((time.time(), busy_seconds()))
                return

    def stop(self) -> list[tuple[float, float]]:
        self._stopped.set()
        self._thread.join()
        return self.samples


def busy_between(samples: list[tuple[float, float]], start: float, end: float) -> float | None:
    """Busy CPU seconds from `start` to `end`, interpolated between `BusySampler` samples;
    None when either instant is outside them."""
    def at(instant: float) -> float | None:
        index = bisect.bisect_left(samples, (instant, float("-inf")))
        if index == len(samples):
            return None
        later, busy_later = samples[index]
        if later == instant:
            return busy_later
        if index == 0:
            return None
        earlier, busy_earlier = samples[index - 1]
        return busy_earlier + (busy_later - busy_earlier) * (instant - earlier) / (later - earlier)

    first, last = at(start), at(end)
    return None if first is None or last is None else last - first


# About the size and shape of a Workflow as the functions read it.
_PROBE_DOCUMENT = {"metadata": {"name": "probe", "labels": {f"k{i}": f"v{i}" for i in range(8)}},
                   "spec": {"stages": [{"index": i, "input": [{"id": f"did:op:{i}" * 4,
                                                              "url": ["https://x/" * 8]}]}
                                       for i in range(8)]},
                   "status": {"statusCode": 20, "results": list(range(50))}}


def speed_probe(rounds: int = 5) -> float:
    """Milliseconds for a fixed piece of pure-Python work (JSON in and out), median of rounds.

    The shared VMs these benchmarks run on change speed: the same commit measured
    add->configure in the burst at 38-43 ms and, an hour later, at 63-91 ms. The probe
    is recorded with the figures, but it read about 20 ms in both kinds of hour: it
    rules out a slower CPU, not the other changes (benchmarks/README.md).
    """
    text = json.dumps(_PROBE_DOCUMENT)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(1000):
            text = json.dumps(json.loads(text))
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 2)


def git_commit() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                              check=False, timeout=10).stdout.strip()

    return {"commit": git("rev-parse", "HEAD") or None,
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def machine_info() -> dict[str, Any]:
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "memory_bytes": memory_bytes(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "packages": versions(),
        "git": git_commit(),
        "load_average_at_start": load_average(),
        "speed_probe_ms_at_start": speed_probe(),
    }
