"""What Ocean's original operator-engine implies for the same runs: derived, not measured.

Its design (DESIGN section 1): a loop that polls Postgres for new jobs with
`POLL_SECONDS` of sleep between polls, and a wait loop per step (configure pod,
algorithm pod, publish pod finished, then cleanup) with the same sleep. An event
arriving at a uniformly random moment waits half a period on average and a whole
period at worst. The pods' own run time is taken from this run's reference.
"""

from __future__ import annotations

from typing import Any

POLL_SECONDS = 5.0
WAITS_PER_WORKFLOW = 4  # admission poll + configure, algorithm, publish wait loops


def derived(pod_seconds_per_workflow: float | None, max_jobs: int) -> dict[str, Any]:
    """Expected (mean) and worst figures of the polling design for this run's workflows."""
    expected_overhead = WAITS_PER_WORKFLOW * POLL_SECONDS / 2
    result: dict[str, Any] = {
        "assumptions": {"poll_seconds": POLL_SECONDS, "waits_per_workflow": WAITS_PER_WORKFLOW,
                        "max_jobs": max_jobs},
        "transition_expected_seconds": POLL_SECONDS / 2,
        "transition_worst_seconds": POLL_SECONDS,
        "overhead_expected_seconds": expected_overhead,
        "overhead_worst_seconds": WAITS_PER_WORKFLOW * POLL_SECONDS,
    }
    if pod_seconds_per_workflow:
        # maxJobs workflows in flight, each holding its slot for pods + polling waits.
        result["throughput_expected_per_second"] = max_jobs / (
            pod_seconds_per_workflow + expected_overhead)
    return result
