"""Cron expressions as systemd `OnCalendar=` specs (`DOW YYYY-MM-DD HH:MM:SS ZONE`).

Read through croniter's expansion, so names (`mon-fri`, `jan`), steps and `@daily` all arrive as plain numbers.
cron runs a day when its day of month *or* its day of week matches (both restricted); systemd needs both, so
such an expression becomes two specs, which a timer takes as two `OnCalendar=` lines.
"""

from __future__ import annotations

from typing import Final

from storage.errors import GleanerError

__all__ = ["on_calendar"]

_DAYS: Final = ("Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat")
_WEEK: Final = (1, 2, 3, 4, 5, 6, 0)  # systemd's week starts on Monday; ranges follow that order


def on_calendar(schedule: str, timezone: str = "UTC") -> list[str]:
    """The OnCalendar specs (one, or two for cron's day-of-month-or-week) that fire when `schedule` does."""
    from croniter import croniter

    fields, nth = croniter.expand(schedule)
    if nth or any("l" in values for values in fields):
        raise GleanerError(f"schedule {schedule!r} uses L or #, which systemd's OnCalendar cannot say")
    if len(fields) not in (5, 6):
        raise GleanerError(f"schedule {schedule!r} has {len(fields)} fields; OnCalendar takes five or six")
    minute, hour, dom, month, dow = fields[:5]
    second = fields[5] if len(fields) == 6 else [0]
    time = f"{_numbers(hour, 0, 23)}:{_numbers(minute, 0, 59)}:{_numbers(second, 0, 59)}"

    def spec(days_of_week: list[int | str], days_of_month: list[int | str]) -> str:
        week = _weekdays(days_of_week)
        date = f"*-{_numbers(month, 1, 12)}-{_numbers(days_of_month, 1, 31)}"
        return " ".join(part for part in (week, date, time, timezone) if part)

    if _is_any(dom) or _is_any(dow):
        return [spec(dow, dom)]
    return [spec(dow, ["*"]), spec(["*"], dom)]


def _is_any(values: list[int | str]) -> bool:
    return values == ["*"]


def _numbers(values: list[int | str], low: int, high: int) -> str:
    """`*`, `start/step` running to the end, or a list of values and `a..b` runs, two digits each."""
    if _is_any(values):
        return "*"
    numbers = sorted({int(value) for value in values})
    if numbers == list(range(low, high + 1)):
        return "*"
    if len(numbers) > 2:
        step = numbers[1] - numbers[0]
        if step > 1 and numbers == list(range(numbers[0], high + 1, step)):
            return f"{numbers[0]:02d}/{step}"
    return ",".join(f"{first:02d}" if first == last else f"{first:02d}..{last:02d}" for first, last in _runs(numbers))


def _weekdays(values: list[int | str]) -> str:
    """Weekday names in systemd's Monday-first order, runs as `Mon..Fri`; empty for every day."""
    if _is_any(values):
        return ""
    days = {int(value) % 7 for value in values}
    if len(days) == 7:
        return ""
    order = [position for position, day in enumerate(_WEEK) if day in days]
    return ",".join(
        _DAYS[_WEEK[first]] if first == last else f"{_DAYS[_WEEK[first]]}..{_DAYS[_WEEK[last]]}"
        for first, last in _runs(order)
    )


def _runs(numbers: list[int]) -> list[tuple[int, int]]:
    """Sorted numbers as (first, last) runs of consecutive values; a run of two stays two singles."""
    runs: list[tuple[int, int]] = []
    for number in numbers:
        if runs and number == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], number)
        else:
            runs.append((number, number))
    split: list[tuple[int, int]] = []
    for first, last in runs:
        split += [(first, first), (last, last)] if last == first + 1 else [(first, last)]
    return split
