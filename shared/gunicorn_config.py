"""gunicorn settings every function runs with (`--config python:shared.gunicorn_config`).

The worker counts live in the Dockerfile's GUNICORN_CMD_ARGS; this module holds
what a command line cannot say.
"""

from __future__ import annotations

from typing import Any


def post_worker_init(worker: Any) -> None:
    """Warm the app up before the worker takes its first request."""
    warm_up = worker.wsgi.config.get("c2d_warm_up")
    if warm_up is not None:
        warm_up()
