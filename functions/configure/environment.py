"""The environment announcement operator-service reads (GET /environment, c2d-environment)."""

from __future__ import annotations

import json

from shared.settings import Settings

CONFIGMAP = "c2d-environment"


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


def configmap(settings: Settings, current: dict) -> dict:
    """c2d-environment: the announcement as JSON, for readers without HTTP access."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": CONFIGMAP, "namespace": settings.namespace,
                         "labels": {"app.kubernetes.io/managed-by": "c2d"}},
            "data": {"environment.json": json.dumps(current, sort_keys=True)}}
