"""Schedules: config validation, global → source → workspace overrides, crontab meaning."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from backupd.config import ScheduleConfig, parse_config
from backupd.errors import ConfigError
from backupd.service.cron import crontab_weekdays, make_trigger
from backupd.service.plan import ScheduleSpec, plan_jobs, resolve_schedule

WORKSPACE_A = "a" * 32
WORKSPACE_B = "b" * 32


def config_data(**top: Any) -> dict[str, Any]:
    source = {
        "name": "prod",
        "region": "cn-north-4",
        "project_id": "0123456789abcdef0123456789abcdef",
        "auth": {"type": "token", "token": "x"},
        "workspaces": [{"id": WORKSPACE_A, "name": "a"}, {"id": WORKSPACE_B, "name": "b"}],
    }
    source.update(top.pop("source", {}))
    return {"repository": {"path": "/srv/repo"}, "sources": [source], **top}


def parse(data: dict[str, Any]) -> Any:
    return parse_config(data, base_dir=Path("/etc/backupd"), environ={})


def test_schedule_without_any_setting_is_hourly_utc() -> None:
    jobs = plan_jobs(parse(config_data()))
    assert jobs["prod/a"].schedule == ScheduleSpec(cron="0 * * * *", timezone="UTC")


def test_schedule_keys_come_from_the_nearest_level() -> None:
    data = config_data(
        schedule={"cron": "0 2 * * *", "timezone": "Asia/Shanghai", "jitter": 30},
        source={
            "schedule": {"jitter": 5},
            "workspaces": [
                {"id": WORKSPACE_A, "name": "a", "schedule": {"interval": 600}},
                {"id": WORKSPACE_B, "name": "b"},
            ],
        },
    )
    jobs = plan_jobs(parse(data))
    # cron/interval is one choice: the workspace's interval replaces the global cron.
    assert jobs["prod/a"].schedule == ScheduleSpec(
        cron=None, interval=600, timezone="Asia/Shanghai", jitter=5
    )
    assert jobs["prod/b"].schedule == ScheduleSpec(
        cron="0 2 * * *", timezone="Asia/Shanghai", jitter=5
    )


def test_resolve_schedule_skips_unset_levels() -> None:
    spec = resolve_schedule(None, ScheduleConfig(timezone="Europe/Berlin"), ScheduleConfig())
    assert spec == ScheduleSpec(cron="0 * * * *", timezone="Europe/Berlin")


@pytest.mark.parametrize(
    ("schedule", "key", "words"),
    [
        ({"cron": "0 2 * *"}, "schedule.cron", "5 fields"),
        ({"cron": "61 * * * *"}, "schedule.cron", "minute field"),
        ({"cron": "0 2 * * 8"}, "schedule.cron", "day-of-week"),
        ({"cron": "0 2 * foo *"}, "schedule.cron", "month field"),
        ({"cron": "*/0 * * * *"}, "schedule.cron", "not valid"),
        ({"cron": "0 2 * * fri-mon"}, "schedule.cron", "backwards"),
        ({"cron": "0 2 * * *", "interval": 60}, "schedule", "not both"),
        ({"interval": 0}, "schedule.interval", "greater than 0"),
        ({"timezone": "Mars/Olympus"}, "schedule.timezone", "IANA"),
        ({"jitter": -1}, "schedule.jitter", "between"),
    ],
)
def test_bad_schedules_are_named_by_key(schedule: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(config_data(schedule=schedule))
    assert caught.value.key == key
    assert words in caught.value.problem


def test_bad_workspace_schedule_names_its_path() -> None:
    data = config_data(
        source={"workspaces": [{"id": WORKSPACE_A, "schedule": {"cron": "0 25 * * *"}}]}
    )
    with pytest.raises(ConfigError) as caught:
        parse(data)
    assert caught.value.key == "sources[0].workspaces[0].schedule.cron"


@pytest.mark.parametrize(
    ("field", "names"),
    [
        ("*", "*"),
        ("0", "sun"),
        ("7", "sun"),
        ("1-5", "mon,tue,wed,thu,fri"),
        ("mon-fri", "mon,tue,wed,thu,fri"),
        ("5-7", "sun,fri,sat"),
        ("*/2", "sun,tue,thu,sat"),
        ("1/3", "sun,mon,thu"),  # 1, 4, 7
        ("sat,0", "sun,sat"),
    ],
)
def test_crontab_weekdays_become_names(field: str, names: str) -> None:
    assert crontab_weekdays(field) == names


def next_fires(spec: ScheduleSpec, start: datetime, count: int) -> list[datetime]:
    trigger = make_trigger(spec)
    fires: list[datetime] = []
    previous = None
    now = start
    for _ in range(count):
        fire = trigger.get_next_fire_time(previous, now)
        fires.append(fire)
        previous, now = fire, fire + timedelta(seconds=1)
    return fires


def test_cron_weekday_zero_is_sunday_in_the_configured_zone() -> None:
    zone = ZoneInfo("Asia/Shanghai")
    start = datetime(2026, 3, 2, tzinfo=zone)  # a Monday
    (fire,) = next_fires(ScheduleSpec(cron="30 2 * * 0", timezone="Asia/Shanghai"), start, 1)
    assert fire == datetime(2026, 3, 8, 2, 30, tzinfo=zone)
    assert fire.strftime("%A") == "Sunday"


def test_cron_with_both_day_fields_runs_on_either_as_crontab_does() -> None:
    start = datetime(2026, 3, 1, tzinfo=UTC)  # a Sunday, the 1st
    fires = next_fires(ScheduleSpec(cron="0 3 1 * mon"), start, 3)
    assert [f.day for f in fires] == [1, 2, 9]  # the 1st, then Mondays


def test_interval_schedule_fires_every_interval() -> None:
    start = datetime(2026, 3, 1, tzinfo=UTC)
    fires = next_fires(ScheduleSpec(cron=None, interval=90), start, 2)
    assert fires[1] - fires[0] == timedelta(seconds=90)
