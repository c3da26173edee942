"""When a schedule fires: APScheduler 3's triggers with crontab's meaning of each field.

Apart from the scheduler (scheduler.py) because the status of a one-shot `backupd
snapshot` needs the fire times too: importing the triggers alone takes a third of the time
the scheduler's imports take (its thread pools pull in multiprocessing), and a snapshot pays
it while its workspaces are still listing.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from backupd.service.plan import ScheduleSpec

_WEEKDAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def crontab_weekdays(field: str) -> str:
    """Rewrite a crontab day-of-week field with names.

    crontab counts 0 (and 7) as Sunday; APScheduler 3 counts 0 as Monday (its issue 286,
    kept for compatibility). Names mean the same to both, so numbers are expanded to names.
    """
    if field == "*":
        return field
    days: set[int] = set()
    for item in field.lower().split(","):
        span, _, step_text = item.partition("/")
        step = int(step_text) if step_text else 1
        if span == "*":
            first, last = 0, 6
        else:
            first_text, _, last_text = span.partition("-")
            first = _weekday(first_text)
            last = _weekday(last_text) if last_text else (7 if step_text else first)
            if last < first:
                raise ValueError(f"day-of-week range {span!r} runs backwards")
        days.update(day % 7 for day in range(first, last + 1, step))
    return ",".join(_WEEKDAY_NAMES[day] for day in sorted(days))


def _weekday(text: str) -> int:
    if text in _WEEKDAY_NAMES:
        return _WEEKDAY_NAMES.index(text)
    return int(text)  # 0-7, checked by the config loader


def make_trigger(spec: ScheduleSpec) -> Any:
    """An APScheduler trigger for ``spec``, with crontab's meaning of each field."""
    zone = ZoneInfo(spec.timezone)
    jitter = spec.jitter or None
    if spec.interval is not None:
        return IntervalTrigger(seconds=spec.interval, timezone=zone, jitter=jitter)
    if spec.cron is None:  # pragma: no cover - ScheduleSpec always has one of the two
        raise ValueError("a schedule needs cron or interval")
    minute, hour, day, month, crontab_weekday = spec.cron.split()
    weekday = crontab_weekdays(crontab_weekday)

    def cron(day: str, weekday: str, jitter: float | None) -> CronTrigger:
        return CronTrigger(
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=weekday,
            timezone=zone,
            jitter=jitter,
        )

    # crontab runs when *either* day field matches if both are restricted ("0 3 1 * mon":
    # the 1st and every Monday); APScheduler would require both. A field starting with '*'
    # counts as unrestricted, as in Vixie cron.
    if not day.startswith("*") and not crontab_weekday.startswith("*"):
        return OrTrigger([cron(day, "*", None), cron("*", weekday, None)], jitter=jitter)
    return cron(day, weekday, jitter)


def fire_times(
    spec: ScheduleSpec, after: datetime, *, until: datetime, limit: int
) -> list[datetime]:
    """When ``spec`` fires after ``after`` (jitter left out): up to ``until``, at most
    ``limit`` times, and at least twice when it fires at all (a monthly cron, say)."""
    trigger = make_trigger(dataclasses.replace(spec, jitter=0.0))
    times: list[datetime] = []
    moment: datetime | None = trigger.get_next_fire_time(None, after)
    while moment is not None and len(times) < limit and (len(times) < 2 or moment <= until):
        times.append(moment)
        moment = trigger.get_next_fire_time(moment, moment)
    return times
