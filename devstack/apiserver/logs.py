"""Pod logs: read from files the kubelet writes, ``<log_dir>/<namespace>/<pod>/<container>.log``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import bad_request

FOLLOW_POLL = 0.05     # seconds between looks at a followed file that did not grow


def log_path(log_dir: Path, namespace: str, pod: str, container: str) -> Path:
    return log_dir / namespace / pod / f"{container}.log"


def pick_container(pod: dict, container: str | None) -> str:
    """The container to read, with the errors a real server gives."""
    spec = pod.get("spec") or {}
    names = [c["name"] for c in spec.get("containers") or []]
    init = [c["name"] for c in spec.get("initContainers") or []]
    name = pod["metadata"]["name"]
    if container:
        if container not in names + init:
            raise bad_request(f"container {container} is not valid for pod {name}")
        return container
    if len(names) == 1:
        return names[0]
    raise bad_request(f"a container name must be specified for pod {name}, choose one of: "
                      f"[{' '.join(names)}]" + (f" or one of the init containers: "
                                                 f"[{' '.join(init)}]" if init else ""))


def _tail(data: bytes, lines: int) -> bytes:
    if lines <= 0:
        return b""
    parts = data.splitlines(keepends=True)
    return b"".join(parts[-lines:])


def read(path: Path, tail_lines: int | None, limit_bytes: int | None) -> bytes:
    data = path.read_bytes()
    if tail_lines is not None:
        data = _tail(data, tail_lines)
    if limit_bytes is not None:
        data = data[:limit_bytes]
    return data


def follow(path: Path, tail_lines: int | None, done: Callable[[], bool],
           stopped: Callable[[], bool]) -> Iterator[bytes]:
    """Yield the file's content, then what is appended until ``done()`` (pod terminated)."""
    with open(path, "rb") as f:
        data = f.read()
        if tail_lines is not None:
            data = _tail(data, tail_lines)
        if data:
            yield data
        while not stopped():
            finished = done()       # read once more after the end so nothing is lost
            chunk = f.read()
            if chunk:
                yield chunk
                continue
            if finished:
                return
            time.sleep(FOLLOW_POLL)
