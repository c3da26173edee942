"""APScheduler 3 behind a small interface (with cron.py, its triggers, the only modules
importing apscheduler).

One job per workspace, keyed by its label, on a bounded thread pool: ``max_instances=1``
(a workspace never runs twice at once) and ``coalesce=True`` (runs missed while busy or
asleep become one). A heartbeat job on its own one-thread executor proves that the scheduler
thread still dispatches work even when every snapshot worker is busy; the daemon pings the
systemd watchdog only while it beats.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobExecutionEvent,
    JobSubmissionEvent,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from backupd.errors import ConfigError
from backupd.logs import log
from backupd.service.cron import make_trigger
from backupd.service.plan import ScheduleSpec

logger = logging.getLogger(__name__)

HEARTBEAT_JOB = "backupd:heartbeat"
HEARTBEAT_SECONDS = 1.0
HEARTBEAT_STALE_AFTER = 5.0


def _whole_seconds(seconds: float) -> int:
    return max(1, math.ceil(seconds))  # APScheduler 3 wants a positive int here


@dataclass(frozen=True)
class SyncResult:
    added: tuple[str, ...] = ()
    rescheduled: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()


class Scheduler:
    """Runs ``run(label)`` for each workspace on its schedule, on ``max_parallel`` threads."""

    def __init__(
        self, run: Callable[[str], None], *, max_parallel: int, misfire_grace_time: float
    ) -> None:
        self._run = run
        self._specs: dict[str, tuple[ScheduleSpec, float]] = {}
        self._last_beat = time.monotonic()
        self._beat_lock = threading.Lock()
        # Missed and skipped runs are logged below as key=value events; APScheduler's own
        # free-text warnings for them would only repeat those.
        logging.getLogger("apscheduler").setLevel(logging.ERROR)
        self._scheduler = BackgroundScheduler(
            executors={
                "default": ThreadPoolExecutor(max_parallel),
                "heartbeat": ThreadPoolExecutor(1),
            },
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": _whole_seconds(misfire_grace_time),
            },
            timezone=UTC,
        )
        self._scheduler.add_listener(
            self._on_event, EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES | EVENT_JOB_ERROR
        )

    def start(self) -> None:
        self._beat()
        self._scheduler.start()
        self._scheduler.add_job(
            self._beat,
            IntervalTrigger(seconds=HEARTBEAT_SECONDS, timezone=UTC),
            id=HEARTBEAT_JOB,
            executor="heartbeat",
            misfire_grace_time=None,
        )

    def shutdown(self) -> None:
        """Stop starting runs; runs in progress go on (the caller waits for them)."""
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)

    def sync(
        self,
        schedules: Mapping[str, ScheduleSpec],
        *,
        misfire_grace_time: float,
        run_now: Collection[str] = (),
    ) -> SyncResult:
        """Make the scheduled jobs match ``schedules``; unchanged ones keep their next run.

        Every trigger is built before any job changes, so a schedule APScheduler refuses
        leaves the current jobs exactly as they were.
        """
        wanted = {label: (spec, misfire_grace_time) for label, spec in schedules.items()}
        changed = {label: key for label, key in wanted.items() if self._specs.get(label) != key}
        triggers: dict[str, Any] = {}
        for label, (spec, _) in changed.items():
            try:
                triggers[label] = make_trigger(spec)
            except ValueError as error:
                raise ConfigError(f"schedule of {label}", str(error)) from None
        removed = tuple(label for label in self._specs if label not in wanted)
        for label in removed:
            self._scheduler.remove_job(label)
            del self._specs[label]
        now = datetime.now(UTC)
        for label, trigger in triggers.items():
            extra = {"next_run_time": now} if label in run_now else {}
            self._scheduler.add_job(
                self._run,
                trigger,
                args=(label,),
                id=label,
                name=label,
                replace_existing=True,
                misfire_grace_time=_whole_seconds(misfire_grace_time),
                **extra,
            )
        added = tuple(label for label in changed if label not in self._specs)
        rescheduled = tuple(label for label in changed if label in self._specs)
        self._specs.update(changed)
        return SyncResult(added=added, rescheduled=rescheduled, removed=removed)

    def run_once(self, label: str) -> None:
        """Run ``label`` now, once (a discovered workspace: its discovery pass starts it).

        It shares the pool and ``max_instances=1`` with the scheduled jobs; a run of it that
        is still going makes this one a skipped run, logged like any other.
        """
        if label in self._specs:  # pragma: no cover - labels of scheduled jobs never come here
            raise ValueError(f"{label} has a schedule of its own")
        self._scheduler.add_job(
            self._run,
            DateTrigger(run_date=datetime.now(UTC), timezone=UTC),
            args=(label,),
            id=label,
            name=label,
            replace_existing=True,
        )

    def next_run(self, label: str) -> datetime | None:
        job = self._scheduler.get_job(label)
        return None if job is None else job.next_run_time

    def healthy(self) -> bool:
        """Running, and the scheduler thread dispatched the heartbeat recently."""
        with self._beat_lock:
            age = time.monotonic() - self._last_beat
        return bool(self._scheduler.running) and age < HEARTBEAT_STALE_AFTER

    def _beat(self) -> None:
        with self._beat_lock:
            self._last_beat = time.monotonic()

    def _on_event(self, event: JobExecutionEvent | JobSubmissionEvent) -> None:
        if event.job_id == HEARTBEAT_JOB:
            return
        if event.code == EVENT_JOB_MISSED:
            log(
                logger,
                "schedule.missed",
                level=logging.WARNING,
                workspace=event.job_id,
                due=event.scheduled_run_time.isoformat(timespec="seconds"),
                reason="later than daemon.misfire_grace_time",
            )
        elif event.code == EVENT_JOB_MAX_INSTANCES:
            log(
                logger,
                "schedule.skipped",
                level=logging.WARNING,
                workspace=event.job_id,
                reason="the previous snapshot is still running",
            )
        else:  # EVENT_JOB_ERROR: the run function catches everything; this is a bug
            log(
                logger,
                "schedule.error",
                level=logging.ERROR,
                workspace=event.job_id,
                error=repr(getattr(event, "exception", None)),
            )
