"""The cron matcher behind GC (and later retention) schedules: fields, lists, ranges, steps, bad input."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from moorage.jobs.cron import Cron, CronError


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_fields_lists_ranges_and_steps() -> None:
    cron = Cron.parse("*/15 1-3,22 * * *")
    assert cron.minutes == {0, 15, 30, 45}
    assert cron.hours == {1, 2, 3, 22}
    assert Cron.parse("5-20/5 * * * *").minutes == {5, 10, 15, 20}
    assert Cron.parse("10/20 * * * *").minutes == {10, 30, 50}  # a start with a step runs to the end
    assert cron.matches(at("2026-03-04T02:45:59"))
    assert not cron.matches(at("2026-03-04T02:46:00"))
    assert not cron.matches(at("2026-03-04T04:00:00"))


def test_harbor_six_fields_with_seconds_first() -> None:
    daily = Cron.parse("0 0 3 * * *")
    assert daily.expression == "0 3 * * *"
    assert daily.matches(at("2026-01-01T03:00:00")) and not daily.matches(at("2026-01-01T03:01:00"))


def test_sunday_is_0_and_7_and_days_combine_like_cron() -> None:
    sunday = at("2026-11-29T00:00:00")  # a Sunday
    assert Cron.parse("0 0 * * 0").matches(sunday) and Cron.parse("0 0 * * 7").matches(sunday)
    assert not Cron.parse("0 0 * * 1-6").matches(sunday)
    # both day fields restricted: either one matching is due (the 1st, or any Sunday)
    either = Cron.parse("0 0 1 * 0")
    assert either.matches(sunday) and either.matches(at("2026-12-01T00:00:00"))
    assert not either.matches(at("2026-12-02T00:00:00"))
    # only one restricted: that one decides
    assert not Cron.parse("0 0 1 * *").matches(sunday)


@pytest.mark.parametrize(
    ("expression", "field"),
    [
        ("60 * * * *", "minute"),
        ("* 24 * * *", "hour"),
        ("* * 0 * *", "day of month"),
        ("* * * 13 *", "month"),
        ("* * * * 8", "day of week"),
        ("*/0 * * * *", "minute"),
        ("5-1 * * * *", "minute"),
        ("a * * * *", "minute"),
        ("1,,2 * * * *", "minute"),
        ("* * * *", "5 fields"),
        ("* * * * * * *", "5 fields"),
        ("30 * * * * *", "seconds"),
        ("١ * * * *", "minute"),  # non-ASCII digits are not numbers here
    ],
)
def test_bad_expressions_name_the_field(expression: str, field: str) -> None:
    with pytest.raises(CronError, match=field):
        Cron.parse(expression)


def test_last_and_next_due() -> None:
    hourly = Cron.parse("0 * * * *")
    now = at("2026-05-05T10:37:12")
    assert hourly.last_due(now, now - timedelta(hours=1)) == at("2026-05-05T10:00:00")
    assert hourly.last_due(now, at("2026-05-05T10:00:01")) is None  # saved after the due minute
    assert hourly.next_due(now) == at("2026-05-05T11:00:00")
    assert Cron.parse("30 4 29 2 *").next_due(at("2026-03-01T00:00:00"), timedelta(days=1500)) == at(
        "2028-02-29T04:30:00"
    )
    assert Cron.parse("0 0 30 2 *").next_due(now) is None  # February 30th never comes
    assert Cron.parse("0 0 * * 1").next_due(at("2026-11-29T12:00:00")) == at("2026-11-30T00:00:00")
