"""Percentiles and summaries of raw samples (no numpy: the harness runs on the base install)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def percentile(samples: Sequence[float], q: float) -> float:
    """The `q`-th percentile (0..100), linear between closest ranks; NaN when empty."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(samples: Sequence[float]) -> dict[str, float | int]:
    """n, p50, p90, p99, mean, min and max of `samples`."""
    if not samples:
        return {"n": 0}
    return {"n": len(samples), "p50": percentile(samples, 50), "p90": percentile(samples, 90),
            "p99": percentile(samples, 99), "mean": sum(samples) / len(samples),
            "min": min(samples), "max": max(samples)}
