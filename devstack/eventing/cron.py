"""A small cron schedule: the 5-field syntax and the descriptors PingSource accepts.

Fields: minute hour day-of-month month day-of-week, each `*`, `?` (as `*`), `n`,
`a-b`, `*/s`, `a-b/s`, `a/s` and comma lists; month and weekday names (`jan`,
`mon`); weekday 0 or 7 is Sunday. As in cron, when both day fields are
restricted a day matches either. Descriptors: `@yearly`, `@annually`,
`@monthly`, `@weekly`, `@daily`, `@midnight`, `@hourly`, `@every <duration>`
(Go durations such as `30s`, `1m30s`). `CRON_TZ=<zone> ` may prefix the schedule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

MONTHS = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
WEEKDAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
DESCRIPTORS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_GO_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")
_GO_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_SEARCH_LIMIT = timedelta(days=366 * 5)


class CronError(ValueError):
    """A schedule that cannot be parsed (the message quotes it)."""


@dataclass(frozen=True)
class CronSchedule:
    """When a schedule fires: `next_after(t)` is the first firing time strictly after t."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    days_any: bool
    weekdays_any: bool
    every: float | None = None
    zone: ZoneInfo | None = None

    @classmethod
    def parse(cls, expression: str, timezone: str | None = None) -> CronSchedule:
        text = expression.strip() if isinstance(expression, str) else ""
        if text.startswith(("CRON_TZ=", "TZ=")):
            zone_name, _, text = text.partition("=")[2].partition(" ")
            timezone = zone_name
            text = text.strip()
        zone = None
        if timezone:
            try:
                zone = ZoneInfo(timezone)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise CronError(f"unknown time zone {timezone!r}") from exc
        if text.startswith("@every"):
            return cls(expression, *([frozenset()] * 5), True, True,
                       every=_go_duration(text[len("@every"):].strip(), expression), zone=zone)
        text = DESCRIPTORS.get(text, text)
        fields = text.split()
        if len(fields) != 5:
            raise CronError(f"{expression!r}: a schedule has 5 fields (minute hour "
                            "day-of-month month day-of-week) or is a @descriptor")
        minute, hour, day, month, weekday = fields
        weekdays = _field(weekday, 0, 7, WEEKDAYS, "day-of-week", expression)
        return cls(
            expression,
            _field(minute, 0, 59, None, "minute", expression),
            _field(hour, 0, 23, None, "hour", expression),
            _field(day, 1, 31, None, "day-of-month", expression),
            _field(month, 1, 12, MONTHS, "month", expression, first=1),
            frozenset(d % 7 for d in weekdays),
            days_any=day in ("*", "?"),
            weekdays_any=weekday in ("*", "?"),
            zone=zone,
        )

    def _day_matches(self, t: datetime) -> bool:
        day_ok = t.day in self.days
        weekday_ok = (t.isoweekday() % 7) in self.weekdays
        if self.days_any or self.weekdays_any:
            return day_ok and weekday_ok
        return day_ok or weekday_ok

    def matches(self, t: datetime) -> bool:
        """True when the schedule fires in the minute of `t` (in the schedule's zone)."""
        if self.every is not None:
            return True
        t = t.astimezone(self.zone) if self.zone else t
        return (t.month in self.months and self._day_matches(t)
                and t.hour in self.hours and t.minute in self.minutes)

    def next_after(self, t: datetime) -> datetime:
        """The first firing time after `t` (aware datetimes keep their zone)."""
        if self.every is not None:
            return t + timedelta(seconds=self.every)
        original_zone = t.tzinfo
        t = t.astimezone(self.zone) if self.zone else t
        t = t.replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = t + _SEARCH_LIMIT
        while t < limit:  # skip whole months, days, hours: a few hundred steps at most
            if t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
            elif not self._day_matches(t):
                t = t.replace(hour=0, minute=0) + timedelta(days=1)
            elif t.hour not in self.hours:
                t = t.replace(minute=0) + timedelta(hours=1)
            elif t.minute not in self.minutes:
                t += timedelta(minutes=1)
            else:
                return t.astimezone(original_zone) if original_zone else t
        raise CronError(f"{self.expression!r} never fires")


def _go_duration(text: str, expression: str) -> float:
    parts = _GO_DURATION.findall(text)
    if not text or "".join(n + u for n, u in parts) != text:
        raise CronError(f"{expression!r}: @every needs a duration such as 30s or 1m30s")
    seconds = sum(float(n) * _GO_UNITS[u] for n, u in parts)
    if seconds <= 0:
        raise CronError(f"{expression!r}: @every needs a positive duration")
    return seconds


def _value(text: str, names: list[str] | None, first: int, what: str, expression: str) -> int:
    if names and text.lower() in names:
        return names.index(text.lower()) + first
    if not text.isdigit():
        raise CronError(f"{expression!r}: bad {what} value {text!r}")
    return int(text)


def _field(text: str, low: int, high: int, names: list[str] | None, what: str,
           expression: str, first: int = 0) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        span, _, step_text = part.partition("/")
        step = _value(step_text, None, 0, f"{what} step", expression) if step_text else 1
        if step < 1:
            raise CronError(f"{expression!r}: {what} step must be at least 1")
        if span in ("*", "?"):
            start, end = low, high
        elif "-" in span:
            a, _, b = span.partition("-")
            start = _value(a, names, first, what, expression)
            end = _value(b, names, first, what, expression)
        else:
            start = _value(span, names, first, what, expression)
            end = high if step_text else start
        if not low <= start <= end <= high:
            raise CronError(f"{expression!r}: {what} {part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)
