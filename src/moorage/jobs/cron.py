"""A small cron matcher for job schedules (GC now, retention later): 5 fields, or Harbor's 6.

Why not a library: schedules only need "is this minute due" and "the last due minute before
now", and a parser this small is easier to test exhaustively than a dependency is to pin.

Fields: ``minute hour day-of-month month day-of-week`` (day of week 0–7, 0 and 7 are Sunday).
Each is ``*``, a number, a range ``a-b``, any of them with a step ``/n``, or a comma list of
those. Harbor sends six fields with seconds first (``0 0 0 * * *``): the seconds field must be
``0`` (schedules run at minute precision). As in every cron, when both day fields are
restricted a day matching either one is due.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["Cron", "CronError"]

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))


class CronError(ValueError):
    """An expression that cannot be a schedule; the message says which field and why."""


def _number(text: str, name: str, low: int, high: int) -> int:
    if not text.isascii() or not text.isdigit():
        raise CronError(f"the {name} field: {text!r} is not a number from {low} to {high}")
    value = int(text)
    if not low <= value <= high:
        raise CronError(f"the {name} field: {value} is outside {low}-{high}")
    return value


def _field(text: str, name: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        base, slash, step_text = part.partition("/")
        step = _number(step_text, name, 1, high - low + 1) if slash else 1
        if base == "*":
            start, end = low, high
        elif "-" in base:
            first, _, last = base.partition("-")
            start, end = _number(first, name, low, high), _number(last, name, low, high)
            if start > end:
                raise CronError(f"the {name} field: the range {base!r} runs backwards")
        else:
            start = _number(base, name, low, high)
            end = high if slash else start
        values.update(range(start, end + 1, step))
    return frozenset(values)


@dataclass(frozen=True, slots=True)
class Cron:
    """A parsed expression; :meth:`parse` is the only way to build one."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday … 6 = Saturday (7 folded into 0)
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, expression: str) -> Cron:
        """``CronError`` naming the field for anything that is not a valid 5- or 6-field expression."""
        parts = expression.split()
        if len(parts) == 6:
            if parts[0] != "0":
                raise CronError("the seconds field must be 0: schedules run at minute precision")
            parts = parts[1:]
        if len(parts) != 5:
            raise CronError(
                f"a cron expression has 5 fields (minute hour day-of-month month day-of-week) or 6 with seconds "
                f"first; {expression!r} has {len(expression.split())}"
            )
        fields = [_field(part, name, low, high) for part, (name, low, high) in zip(parts, _FIELDS, strict=True)]
        return cls(
            expression=" ".join(parts),
            minutes=fields[0],
            hours=fields[1],
            days=fields[2],
            months=fields[3],
            weekdays=frozenset(day % 7 for day in fields[4]),
            any_day=parts[2].startswith("*"),
            any_weekday=parts[4].startswith("*"),
        )

    def matches(self, when: datetime) -> bool:
        """Whether the minute of ``when`` is due (seconds are ignored)."""
        if when.minute not in self.minutes or when.hour not in self.hours or when.month not in self.months:
            return False
        return self._day_ok(when)

    def last_due(self, now: datetime, since: datetime) -> datetime | None:
        """The latest due minute in ``[since, now]`` (both in the same time zone), or ``None``.

        Scans minute by minute backwards, so keep the window short (the scheduler uses an hour).
        """
        minute = now.replace(second=0, microsecond=0)
        while minute >= since:
            if self.matches(minute):
                return minute
            minute -= timedelta(minutes=1)
        return None

    def next_due(self, after: datetime, horizon: timedelta = timedelta(days=366)) -> datetime | None:
        """The first due minute strictly after ``after``, within ``horizon`` (``None`` for e.g. Feb 30)."""
        minute = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
        end = after + horizon
        while minute <= end:
            if self.matches(minute):
                return minute
            # Skip whole hours and days that cannot match, so a year's horizon stays cheap.
            if minute.month not in self.months or (minute.hour == 0 and minute.minute == 0 and not self._day_ok(minute)):
                minute = (minute + timedelta(days=1)).replace(hour=0, minute=0)
            elif minute.hour not in self.hours:
                minute = (minute + timedelta(hours=1)).replace(minute=0)
            else:
                minute += timedelta(minutes=1)
        return None

    def _day_ok(self, when: datetime) -> bool:
        day_ok = when.day in self.days
        weekday_ok = (when.isoweekday() % 7) in self.weekdays
        if self.any_day or self.any_weekday:
            return day_ok and weekday_ok
        return day_ok or weekday_ok
