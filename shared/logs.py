"""Structured JSON logs: one line per record, with the workflow it concerns.

Handlers log through `logging` with `extra={"workflow": "<ns>/<name>"}`; values
are never whole events or objects, so a secret cannot slip into a log line.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

FIELDS = ("function", "workflow", "event_id", "event_type", "status_code", "outcome")


class JSONFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {"time": datetime.fromtimestamp(record.created, UTC).isoformat(),
                "level": record.levelname, "logger": record.name,
                "message": record.getMessage()}
        line.update({f: getattr(record, f) for f in FIELDS if hasattr(record, f)})
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def setup(level: str = "INFO", path: str | None = None) -> None:
    """Send JSON lines to stderr (or LOG_CFG's file) at `level`, once per process."""
    root = logging.getLogger()
    if any(isinstance(h.formatter, JSONFormatter) for h in root.handlers):
        return
    handler: logging.Handler = (logging.FileHandler(path) if path
                                else logging.StreamHandler(sys.stderr))
    handler.setFormatter(JSONFormatter())
    root.addHandler(handler)
    root.setLevel(level)
    # The Kubernetes client logs request bodies (secrets included) at DEBUG.
    for noisy in ("kubernetes", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
