"""Reading a Job's end: finished, settled (for the resync tick) and the outcome."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shared import jobs

ENDED = datetime(2026, 11, 24, 12, 0, 0, tzinfo=UTC)


def job(*conditions: tuple[str, str]) -> dict:
    return {"status": {"conditions": [
        {"type": kind, "status": "True", "reason": reason,
         "lastTransitionTime": ENDED.strftime("%Y-%m-%dT%H:%M:%SZ")}
        for kind, reason in conditions]}}


def test_running_job_is_neither_finished_nor_settled():
    assert jobs.finished({"status": {}}) is None
    assert not jobs.settled({"status": {}}, ENDED + timedelta(hours=1))


def test_failure_target_counts_as_failed():
    assert jobs.finished(job(("FailureTarget", "DeadlineExceeded"))) == "Failed"
    assert jobs.finished(job(("SuccessCriteriaMet", ""), ("Complete", ""))) == "Complete"


def test_a_job_settles_after_its_event_had_its_chance():
    done = job(("Complete", "CompletionsReached"))
    assert not jobs.settled(done, ENDED + timedelta(seconds=jobs.SETTLE_SECONDS - 1))
    assert jobs.settled(done, ENDED + timedelta(seconds=jobs.SETTLE_SECONDS))


def test_outcome_reads_the_newest_pod():
    pods = [{"metadata": {"creationTimestamp": "2026-11-24T12:00:00Z"}, "status": {
        "containerStatuses": [{"state": {"terminated": {"exitCode": 1, "message": "old"}}}]}},
            {"metadata": {"creationTimestamp": "2026-11-24T12:00:05Z"}, "status": {
        "containerStatuses": [{"state": {"terminated": {"exitCode": 31,
                                                        "message": '{"error": "404"}'}}}]}}]
    outcome = jobs.outcome(job(("Failed", "BackoffLimitExceeded")), pods)
    assert not outcome.succeeded and outcome.exit_code == 31
    assert outcome.report() == {"error": "404"} and outcome.reason == "BackoffLimitExceeded"
