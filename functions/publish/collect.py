"""Which files the publish pod uploads, under which keys, as which result type.

Outputs are taken recursively with their relative paths. Nothing outside the
volume is ever read: a symbolic link is published only when it resolves to a
regular file inside the volume; links elsewhere, links to folders, and special
files (FIFOs, sockets, devices) are skipped with a warning in publish.log.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

ADMIN_LOGS = (("configure.log", "configurationLog"), ("filter.log", "filteringLog"))
PUBLISH_LOG = ("publish.log", "publishLog")


@dataclass(frozen=True)
class Item:
    """One file to upload."""

    source: Path  # what is read (a link's target inside the volume)
    key: str  # `<jobId>/<outputs|logs|adminlogs>/<relative path>`
    filename: str  # as listed in the results
    type: str
    admin: bool = False


def enabled(value: object) -> bool:
    """publishOutput / publishAlgorithmLog: absent means yes; 0, false, "0" mean no."""
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip().lower() not in ("0", "false", "no", "")
    return bool(value)


def _regular(path: Path, volume: Path, log: logging.Logger, shown: str) -> Path | None:
    """The file to read for `path`, or None (with a warning) when it must be skipped."""
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode):
        target = path.resolve()
        if not target.is_relative_to(volume) or not target.is_file():
            log.warning("skipped %s: a link to something outside the volume or not a file",
                        shown)
            return None
        return target
    if not stat.S_ISREG(info.st_mode):
        log.warning("skipped %s: not a regular file", shown)
        return None
    return path


def outputs(volume: Path, job_id: str, log: logging.Logger) -> list[Item]:
    """Every file under `<volume>/outputs`, in a stable order."""
    volume = volume.resolve()
    root = volume / "outputs"
    items = []
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs.sort()
        for name in list(dirs):
            if (Path(folder) / name).is_symlink():
                log.warning("skipped %s: a link to a folder is not followed",
                            (Path(folder) / name).relative_to(root))
                dirs.remove(name)
        for name in sorted(files):
            path = Path(folder) / name
            relative = PurePosixPath(path.relative_to(root).as_posix())
            if ".." in relative.parts:  # cannot come from a walk; refused all the same
                raise ValueError(f"refusing the output path {relative}")
            source = _regular(path, volume, log, f"outputs/{relative}")
            if source is not None:
                items.append(Item(source, f"{job_id}/outputs/{relative}", str(relative),
                                  "output"))
    return items


def logs(volume: Path, job_id: str, algorithm_log: bool, log: logging.Logger) -> list[Item]:
    """The algorithm log (when asked for) and the configure and filter logs that exist."""
    volume = volume.resolve()
    items = []
    candidates = [("logs", "algorithm.log", "algorithmLog", False)] if algorithm_log else []
    candidates += [("adminlogs", name, kind, True) for name, kind in ADMIN_LOGS]
    for folder, name, kind, admin in candidates:
        path = volume / folder / name
        if os.path.lexists(path):
            source = _regular(path, volume, log, f"{folder}/{name}")
            if source is not None:
                items.append(Item(source, f"{job_id}/{folder}/{name}", name, kind, admin))
    return items


def publish_log(volume: Path, job_id: str) -> Item:
    name, kind = PUBLISH_LOG
    return Item(volume / "adminlogs" / name, f"{job_id}/adminlogs/{name}", name, kind, True)
