"""Status records, staleness, alert transitions and the monitor (pure, plus a temp folder)."""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from backupd.model import JobCounts, SnapshotResult, WorkspaceTarget
from backupd.service.alerts import AlertEvent, alert_kind
from backupd.service.cron import fire_times
from backupd.service.monitor import Monitor
from backupd.service.plan import ScheduleSpec
from backupd.service.status import (
    CRON_MAX_FIRES,
    CRON_WINDOW,
    StatusStore,
    WorkspaceStatus,
    period,
    recorded,
    stale_after,
)

TARGET = WorkspaceTarget("prod", "0" * 32, "sales")
T0 = datetime(2026, 11, 27, 2, 5, tzinfo=UTC)  # a Friday


def ok(commit: str | None = "abc123") -> SnapshotResult:
    counts = JobCounts(added=1, changed=2)
    return SnapshotResult(TARGET, ok=True, jobs=7, changed_jobs=counts, commit=commit, duration=1.5)


def failed(error: str = "list jobs: HTTP 403") -> SnapshotResult:
    return SnapshotResult(TARGET, ok=False, error=error, duration=0.2)


def test_records_keep_the_last_success_and_commit_through_failures() -> None:
    record = recorded(None, ok(), T0)
    assert (record.last_success, record.jobs, str(record.changes)) == (T0, 7, "+1 ~2 -0")
    later = recorded(record, ok(commit=None), T0 + timedelta(hours=1))
    assert later.last_commit == "abc123"  # nothing changed: the last commit stays
    broken = recorded(later, failed(), T0 + timedelta(hours=2))
    broken = recorded(broken, failed("boom"), T0 + timedelta(hours=3))
    assert broken.last_success == T0 + timedelta(hours=1)
    assert broken.failing_since == T0 + timedelta(hours=2)
    assert (broken.failures, broken.last_error) == (2, "boom")
    healed = recorded(broken, ok(), T0 + timedelta(hours=4))
    assert (healed.failures, healed.failing_since, healed.last_error) == (0, None, None)


def test_a_renamed_job_counts_as_changed_in_the_record() -> None:
    counts = JobCounts(added=1, changed=2, removed=1, renamed=3)
    result = SnapshotResult(TARGET, ok=True, jobs=7, changed_jobs=counts, commit="abc123")
    assert str(recorded(None, result, T0).changes) == "+1 ~5 -1"


def test_period_of_intervals_and_crons() -> None:
    assert period(ScheduleSpec(cron=None, interval=90), T0) == timedelta(seconds=90)
    assert period(ScheduleSpec(cron="15 */6 * * *"), T0) == timedelta(hours=6)
    # Weekdays only: the weekend is the longest gap, so Saturday is not stale.
    assert period(ScheduleSpec(cron="0 2 * * 1-5"), T0) == timedelta(days=3)
    assert period(ScheduleSpec(cron="0 3 1 * *"), T0) == timedelta(days=31)  # Dec 1 → Jan 1


def test_stale_after_twice_the_period_plus_jitter() -> None:
    hourly = ScheduleSpec(cron="0 * * * *", jitter=60)
    record = recorded(None, ok(), T0)
    assert stale_after(record, hourly) == T0 + timedelta(hours=2, minutes=1)
    failing = recorded(WorkspaceStatus("prod/sales"), failed(), T0)
    assert stale_after(failing, hourly) == T0 + timedelta(hours=2, minutes=1)  # from 1st failure
    assert stale_after(None, hourly) is None  # never tried by a one-shot run: unknown
    assert stale_after(None, hourly, since=T0) == T0 + timedelta(hours=2, minutes=1)  # daemon
    assert stale_after(WorkspaceStatus("prod/sales", gone=True), hourly, since=T0) is None


@pytest.mark.parametrize(
    ("before", "after", "kind"),
    [
        (None, "ok", None),
        (None, "failing", "failure"),
        ("ok", "failing", "failure"),
        ("failing", "failing", None),
        ("failing", "stale", "stale"),
        ("ok", "stale", "stale"),
        ("stale", "failing", None),
        ("stale", "ok", "recovery"),
        ("failing", "ok", "recovery"),
    ],
)
def test_alerts_only_on_a_change_of_state(before: str | None, after: str, kind: str | None) -> None:
    assert alert_kind(before, after) == kind  # type: ignore[arg-type]


def test_status_file_is_written_atomically_private_and_survives_damage(tmp_path: Path) -> None:
    store = StatusStore(tmp_path / "state")
    record = recorded(None, ok(), T0)
    store.save({"prod/sales": record})
    assert store.path.stat().st_mode & 0o777 == 0o600
    assert store.path.parent.stat().st_mode & 0o777 == 0o700
    assert [p.name for p in store.path.parent.iterdir()] == ["status.json"]  # no temp left
    assert StatusStore(tmp_path / "state").read() == {"prod/sales": record}

    store.path.write_text("{not json")
    assert store.load() == {}  # a writer starts afresh …
    assert store.path.with_suffix(".damaged").exists()  # … keeping the damaged file aside
    data = json.loads(json.dumps({"workspaces": {"x/y": {"failures": "many", "jobs": True}}}))
    store.path.write_text(json.dumps(data))
    assert store.read()["x/y"] == WorkspaceStatus("x/y")  # odd values: defaults


def test_a_workspace_that_just_finished_is_not_stale_without_working_out_its_schedule(
    tmp_path: Path,
) -> None:
    # A cron's period costs an APScheduler import and an hour of fire times; a snapshot
    # reports each workspace as it finishes, beside the others' listings.
    now = [T0]
    asked: list[str] = []
    spec = ScheduleSpec(cron="*/10 * * * *", interval=None)

    def schedule_of(label: str) -> ScheduleSpec:
        asked.append(label)
        return spec

    monitor = Monitor(
        StatusStore(tmp_path), schedule_of=schedule_of, deliver=list().append, clock=lambda: now[0]
    )
    monitor.finished(ok())
    monitor.finished(failed())
    assert asked == []
    assert monitor.stale() == {}
    now[0] = T0 + timedelta(minutes=21)  # twice the period after the last success
    assert monitor.check(["prod/sales"]) == ["prod/sales"]
    assert monitor.stale() == {"prod/sales": T0 + timedelta(minutes=20)}
    assert asked


def test_monitor_alerts_once_per_change_and_flags_stale(tmp_path: Path) -> None:
    now = [T0]
    sent: list[AlertEvent] = []
    spec = ScheduleSpec(cron=None, interval=60)

    def monitor() -> Monitor:
        return Monitor(
            StatusStore(tmp_path),
            schedule_of=lambda label: spec,
            deliver=sent.append,
            since=now[0],
            clock=lambda: now[0],
        )

    first = monitor()
    first.finished(ok())
    for minutes in (1, 2):
        now[0] = T0 + timedelta(minutes=minutes)
        first.finished(failed())
    assert [e.kind for e in sent] == ["failure"]
    now[0] = T0 + timedelta(minutes=2, seconds=1)
    assert first.check(["prod/sales"]) == ["prod/sales"]
    assert first.check(["prod/sales"]) == ["prod/sales"]
    assert [e.kind for e in sent] == ["failure", "stale"]

    second = monitor()  # a restart: the alerted state comes from the file
    now[0] += timedelta(minutes=1)
    second.finished(failed())
    assert second.check(["prod/sales"]) == ["prod/sales"]
    now[0] += timedelta(minutes=1)
    second.finished(ok())
    assert second.check(["prod/sales"]) == []
    assert [e.kind for e in sent] == ["failure", "stale", "recovery"]
    assert sent[-1].to_json()["last_error"] is None


@pytest.mark.parametrize(
    "cron", ["0 * * * *", "*/5 * * * *", "15 */6 * * *", "0 2 * * 1-5", "0 3 1 * *", "* * * * *"]
)
def test_the_period_is_what_the_fire_times_after_the_moment_say(cron: str) -> None:
    """period() takes its fire times from those of the hour, worked out once: the same."""
    spec = ScheduleSpec(cron=cron)
    for minutes in (0, 1, 29, 59, 60, 61, 24 * 60 + 7):
        after = T0 + timedelta(minutes=minutes, seconds=13)
        times = fire_times(spec, after, until=after + CRON_WINDOW, limit=CRON_MAX_FIRES)
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert period(spec, after) == max(gaps, default=timedelta(days=366)), (cron, minutes)
