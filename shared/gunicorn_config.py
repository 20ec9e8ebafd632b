"""gunicorn settings every function runs with (`--config python:shared.gunicorn_config`).

The worker counts live in the Dockerfile's GUNICORN_CMD_ARGS; this module holds
what a command line cannot say.
"""

from __future__ import annotations

import gc
from typing import Any


def post_worker_init(worker: Any) -> None:
    """Warm the app up before the worker takes its first request, then set aside what
    start-up built from the cyclic garbage collector (`gc.freeze()`).

    A full collection walked the tens of thousands of objects the imports left (36
    thousand with Flask alone; 50-60 thousand while the official Kubernetes client
    was imported too): 20-53 ms during which the worker's threads stood still, one
    of them in a benchmark burst's first admissions. They live as long as the worker.
    """
    warm_up = worker.wsgi.config.get("c2d_warm_up")
    if warm_up is not None:
        warm_up()
    gc.collect()
    gc.freeze()
