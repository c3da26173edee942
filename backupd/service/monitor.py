"""Records how each workspace snapshot ended, and raises the alarm when it should.

The one place that turns snapshot results into the status file, alerts and the health that
metrics and /healthz show — the same for `backupd snapshot` (one run) and `backupd run` (which
also calls :meth:`Monitor.check` every second, so that a workspace goes stale even when none
of its snapshots ends at all).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from dataclasses import replace
from datetime import UTC, datetime

from backupd.logs import log
from backupd.model import SnapshotObserver, SnapshotResult
from backupd.service.alerts import AlertEvent, alert_kind
from backupd.service.plan import ScheduleSpec
from backupd.service.status import (
    StatusStore,
    WorkspaceStatus,
    alert_state,
    recorded,
    stale_after,
)

logger = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


class HealthSink:
    """Told the state of a workspace whenever the monitor looks at it (metrics gauges)."""

    def workspace(self, record: WorkspaceStatus, stale: bool) -> None:
        """``record`` as it now is, and whether it is stale."""


class Monitor(SnapshotObserver):
    """Keeps the status records of one repository; thread-safe."""

    def __init__(
        self,
        store: StatusStore,
        *,
        schedule_of: Callable[[str], ScheduleSpec | None],
        deliver: Callable[[AlertEvent], object],
        sink: HealthSink | None = None,
        since: datetime | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        """``since``: when the daemon started (a workspace not tried since is stale in time);
        ``deliver``: sends an alert (or queues it)."""
        self._store = store
        self._schedule_of = schedule_of
        self._deliver = deliver
        self._sink = sink or HealthSink()
        self._since = since
        self._clock = clock
        self._lock = threading.Lock()
        self._loaded: dict[str, WorkspaceStatus] | None = None
        self._stale: dict[str, datetime] = {}  # label → when it turned stale
        # label → (what the deadline depends on, deadline): a cron's period takes thousands
        # of fire-time steps, too many to redo for every workspace every second.
        self._deadlines: dict[str, tuple[object, datetime | None]] = {}

    @property
    def _records(self) -> dict[str, WorkspaceStatus]:
        """The records, read at first use: by then the caller holds the repository lock, so
        no other backupd writes the file behind our back."""
        if self._loaded is None:
            self._loaded = self._store.load()
            for record in self._loaded.values():
                self._sink.workspace(record, stale=False)
        return self._loaded

    def records(self) -> dict[str, WorkspaceStatus]:
        with self._lock:
            return dict(self._records)

    def stale(self) -> dict[str, datetime]:
        """Stale workspaces as of the last look, with the moment each turned stale."""
        with self._lock:
            return dict(self._stale)

    def finished(self, result: SnapshotResult) -> None:
        """Record a finished snapshot and alert if its workspace changed state."""
        now = self._clock()
        label = result.target.label
        with self._lock:
            self._records[label] = recorded(self._records.get(label), result, now)
            events = self._evaluate([label], now, save=True)
        self._send(events)

    def check(self, labels: Iterable[str]) -> list[str]:
        """Look at ``labels`` (the scheduled workspaces) for staleness; the stale ones."""
        now = self._clock()
        with self._lock:
            events = self._evaluate(list(labels), now, save=False)
            stale = sorted(self._stale)
        self._send(events)
        return stale

    def _evaluate(self, labels: list[str], now: datetime, *, save: bool) -> list[AlertEvent]:
        """Update staleness and alerted states of ``labels``; call with the lock held."""
        events: list[AlertEvent] = []
        changed = save
        for label in labels:
            record = self._records.get(label)
            deadline = self._passed_deadline(label, record, now)
            stale = deadline is not None
            if deadline is not None:
                self._stale.setdefault(label, deadline)
            else:
                self._stale.pop(label, None)
            if record is None:
                if not stale:
                    continue
                record = WorkspaceStatus(label)  # never tried: stale all the same
            state = alert_state(record, stale)
            if state != (record.alerted or "ok"):
                kind = alert_kind(record.alerted, state)
                record = replace(record, alerted=state)
                changed = True
                if kind is not None:
                    events.append(AlertEvent(kind, label, now, record, deadline if stale else None))
            self._records[label] = record
            self._sink.workspace(record, stale)
        if changed:
            self._save()
        return events

    def _passed_deadline(
        self, label: str, record: WorkspaceStatus | None, now: datetime
    ) -> datetime | None:
        """When the workspace turned stale, if it is at ``now`` (None: it is not)."""
        reference = None if record is None else record.last_success or record.failing_since
        if reference is not None and reference >= now:
            # It just ran: its deadline is later whatever the schedule. Not worked out for
            # each workspace a snapshot finishes: a cron's first period imports APScheduler
            # and steps through an hour of fire times (~0.1 s), beside the listings.
            return None
        deadline = self._deadline(label, record)
        return deadline if deadline is not None and now > deadline else None

    def _deadline(self, label: str, record: WorkspaceStatus | None) -> datetime | None:
        spec = self._schedule_of(label)
        if spec is None:
            return None
        key = (spec, record and (record.last_success, record.failing_since, record.gone))
        cached = self._deadlines.get(label)
        if cached is not None and cached[0] == key:
            return cached[1]
        deadline = stale_after(record, spec, self._since)
        self._deadlines[label] = (key, deadline)
        return deadline

    def _save(self) -> None:
        try:
            self._store.save(self._records)
        except OSError as error:  # bookkeeping: the snapshot itself is committed
            log(
                logger,
                "status.write_failed",
                level=logging.ERROR,
                file=str(self._store.path),
                error=error.strerror or str(error),
            )

    def _send(self, events: list[AlertEvent]) -> None:
        for event in events:
            log(
                logger,
                f"alert.{event.kind}",
                level=logging.INFO if event.kind == "recovery" else logging.WARNING,
                workspace=event.workspace,
                text=event.text,
            )
            self._deliver(event)
