"""What both pod programs share: logging to a file and stderr, the termination message.

Pods never talk to the Kubernetes API; they report through their exit code and
the termination message file (JSON, at most 4096 bytes as the kubelet reads it).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

TERMINATION_LIMIT = 4096
LOG_FORMAT = "%(asctime)s %(levelname)s %(message)s"


def setup_logging(log_file: Path | None, level: str = "INFO") -> logging.Logger:
    """The pod's logger: stderr always, and `log_file` (appended) when it can be opened."""
    logger = logging.getLogger("c2d.pod")
    logger.handlers.clear()
    logger.setLevel(level)
    logger.propagate = False
    formatter = logging.Formatter(LOG_FORMAT)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        try:
            log_file.parent.mkdir(parents=True, exist_ok=True)
            handlers.append(logging.FileHandler(log_file, encoding="utf-8"))
        except OSError as error:
            print(f"cannot write the log file {log_file}: {error}", file=sys.stderr)
    for handler in handlers:
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    return logger


def close_logging() -> None:
    """Flush and close the log file so that it can be read (and uploaded) complete."""
    logger = logging.getLogger("c2d.pod")
    for handler in list(logger.handlers):
        handler.flush()
        if isinstance(handler, logging.FileHandler):
            handler.close()
            logger.removeHandler(handler)


def redact_url(url: str) -> str:
    """`scheme://host/path` of a URL: no credentials, no query (signatures, tokens)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        return f"{parts.scheme}://{host}{parts.path}"
    except ValueError:
        return "<unparsable URL>"


def termination_path() -> Path:
    return Path(os.environ.get("TERMINATION_MESSAGE_PATH", "/dev/termination-log"))


def fit_message(message: dict[str, Any]) -> str:
    """`message` as JSON under the kubelet's limit, shortening the error text if needed."""
    text = json.dumps(message, separators=(",", ":"))
    if len(text.encode()) <= TERMINATION_LIMIT:
        return text
    shortened = dict(message)
    shortened["error"] = str(message.get("error", ""))[:1000] + "…"
    text = json.dumps(shortened, separators=(",", ":"))
    if len(text.encode()) <= TERMINATION_LIMIT:
        return text
    return json.dumps({"exitCode": message.get("exitCode"), "error": shortened["error"]})


def write_termination(message: dict[str, Any]) -> None:
    """Write the termination message; a pod without the file (tests, local runs) goes on."""
    path = termination_path()
    try:
        path.write_text(fit_message(message), encoding="utf-8")
    except OSError as error:
        print(f"cannot write the termination message to {path}: {error}", file=sys.stderr)


def read_workflow_file(path: Path) -> Any:
    """The JSON in the workflow file; ValueError with a clear message when unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"workflow file {path} not found (set WORKFLOW)") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"workflow file {path} cannot be read: {error}") from None
    except ValueError as error:
        raise ValueError(f"workflow file {path} is not JSON: {error}") from None
