"""The PingSource's cron schedule."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from devstack.eventing.cron import CronError, CronSchedule

T = datetime(2026, 11, 24, 18, 45, 30, tzinfo=UTC)  # a Tuesday


@pytest.mark.parametrize(
    "expression, expected",
    [
        ("* * * * *", datetime(2026, 11, 24, 18, 46, tzinfo=UTC)),
        ("*/5 * * * *", datetime(2026, 11, 24, 18, 50, tzinfo=UTC)),
        ("10-20/5 * * * *", datetime(2026, 11, 24, 19, 10, tzinfo=UTC)),
        ("0,45 * * * *", datetime(2026, 11, 24, 19, 0, tzinfo=UTC)),
        ("30 9 * * mon-fri", datetime(2026, 11, 25, 9, 30, tzinfo=UTC)),
        ("0 0 * * 7", datetime(2026, 11, 29, 0, 0, tzinfo=UTC)),  # 7 is Sunday
        ("0 12 1 * sun", datetime(2026, 11, 29, 12, 0, tzinfo=UTC)),  # either day field
        ("0 0 29 feb *", datetime(2028, 2, 29, 0, 0, tzinfo=UTC)),
        ("@hourly", datetime(2026, 11, 24, 19, 0, tzinfo=UTC)),
        ("@every 1m30s", datetime(2026, 11, 24, 18, 47, 0, tzinfo=UTC)),
        ("CRON_TZ=Europe/Berlin 0 9 * * *", datetime(2026, 11, 25, 8, 0, tzinfo=UTC)),
    ],
)
def test_next_after(expression: str, expected: datetime) -> None:
    assert CronSchedule.parse(expression).next_after(T) == expected


def test_timezone_field() -> None:
    schedule = CronSchedule.parse("0 9 * * *", "America/New_York")
    assert schedule.next_after(T) == datetime(2026, 11, 25, 14, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "expression, message",
    [
        ("* * * *", "5 fields"),
        ("60 * * * *", "outside 0-59"),
        ("* * * 13 *", "outside 1-12"),
        ("*/0 * * * *", "step must be at least 1"),
        ("x * * * *", "bad minute value 'x'"),
        ("0 0 31 2 *", "never fires"),
        ("@every", "needs a duration"),
        ("@every 5 minutes", "needs a duration"),
        ("CRON_TZ=Mars/Base * * * * *", "unknown time zone"),
    ],
)
def test_bad_schedules(expression: str, message: str) -> None:
    with pytest.raises(CronError, match=message):
        CronSchedule.parse(expression).next_after(T)
