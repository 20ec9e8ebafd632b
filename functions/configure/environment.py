"""The environment announcement operator-service reads (GET /environment, c2d-environment).

The ConfigMap also holds the admission slots (`admission.py`), which keep the
announcement's `currentJobs` with them.
"""

from __future__ import annotations

import json

from shared.settings import Settings

CONFIGMAP = "c2d-environment"
KEY = "environment.json"


def announcement(settings: Settings, current_jobs: int) -> dict:
    """The fields the original engine announced, with typed values."""
    return {
        "id": settings.environment_name,
        "cpuNumber": settings.n_cpu, "cpuType": settings.cpu_type,
        "gpuNumber": settings.n_gpu, "gpuType": settings.gpu_type,
        "ramGB": settings.ram_gb, "diskGB": settings.disk_gb,
        "priceMin": settings.price_minute, "desc": settings.description,
        "currentJobs": current_jobs, "maxJobs": settings.max_jobs,
        "consumerAddress": settings.operator_address,
        "storageExpiry": settings.storage_expiry, "maxJobDuration": settings.max_job_duration,
    }


def dumps(announcement: dict) -> str:
    """The announcement as c2d-environment holds it, for readers without HTTP access."""
    return json.dumps(announcement, sort_keys=True)
