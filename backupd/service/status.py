"""The status of every workspace: what its last snapshots did, kept across runs and restarts.

One JSON file, ``<state dir>/status.json`` (mode 0600), holds a record per workspace label:
last attempt, last success, duration, jobs, changes, last commit, last error, and the state
last alerted about. It is written by whoever holds the repository lock (`backupd snapshot`,
`backupd run`), always whole and atomically (a temporary file, fsync, rename), so a reader
(`backupd status`) never sees half a file and a crash never loses the previous one.

Staleness: a workspace is stale when its last success is older than twice its schedule's
period (plus jitter). The period of an interval schedule is the interval; that of a cron
schedule is the longest gap between consecutive fire times in the week after the last
success, so that a 'weekdays only' schedule is not stale over the weekend (for crons firing
every few minutes only the next 3000 runs are looked at).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from backupd.errors import UserError
from backupd.logs import log
from backupd.model import SnapshotResult
from backupd.service.plan import ScheduleSpec

logger = logging.getLogger(__name__)

STATUS_FILE = "status.json"
FORMAT_VERSION = 1
AlertState = Literal["ok", "partial", "failing", "stale"]
# The first fire may be a week away (weekly crons): 15 days hold a whole week of gaps after it.
CRON_WINDOW = timedelta(days=15)
CRON_MAX_FIRES = 3000  # bounds the work for minute-level crons (their gaps are short anyway)


@dataclass(frozen=True)
class Changes:
    """Jobs added, changed and removed by the last successful snapshot."""

    added: int = 0
    changed: int = 0
    removed: int = 0

    def __str__(self) -> str:
        return f"+{self.added} ~{self.changed} -{self.removed}"


@dataclass(frozen=True)
class WorkspaceStatus:
    workspace: str  # label: source/folder
    last_attempt: datetime | None = None
    last_success: datetime | None = None
    failing_since: datetime | None = None  # first failure after the last success
    failures: int = 0  # consecutive failed attempts
    duration: float | None = None  # seconds, of the last attempt
    jobs: int | None = None  # listed by the last success
    changes: Changes = field(default_factory=Changes)  # of the last success
    last_commit: str | None = None  # the newest commit a snapshot of it made
    last_error: str | None = None  # None: the last attempt succeeded
    gone: bool = False  # discovered workspace that DataArts no longer lists
    # The last attempt was cut short by a stop (not a failure: nothing was recorded).
    interrupted: bool = False
    # What the last successful snapshot could not record (a partial snapshot); empty: none.
    problems: tuple[str, ...] = ()
    alerted: AlertState | None = None  # the state last alerted about (None: never)

    @property
    def failing(self) -> bool:
        return self.last_error is not None


def recorded(
    previous: WorkspaceStatus | None, result: SnapshotResult, at: datetime
) -> WorkspaceStatus:
    """The record after ``result`` finished at ``at``."""
    base = previous or WorkspaceStatus(result.target.label)
    if result.gone:  # not snapshotted: nothing succeeded or failed
        return replace(base, gone=True)
    if result.interrupted:  # a stop, not a failure: the workspace keeps its state
        return replace(base, last_attempt=at, duration=result.duration, interrupted=True)
    if result.ok:
        counts = result.changed_jobs
        return replace(
            base,
            last_attempt=at,
            last_success=at,
            failing_since=None,
            failures=0,
            duration=result.duration,
            jobs=result.jobs,
            # A renamed job is a changed one here (the record keeps its three counts).
            changes=Changes(counts.added, counts.changed + counts.renamed, counts.removed),
            last_commit=result.commit or base.last_commit,
            last_error=None,
            gone=False,
            interrupted=False,
            problems=result.problems,
        )
    return replace(
        base,
        last_attempt=at,
        failing_since=base.failing_since or at,
        failures=base.failures + 1,
        duration=result.duration,
        last_error=result.error or "unknown error",
        gone=False,
        interrupted=False,
    )


# --- staleness --------------------------------------------------------------------------------


def period(spec: ScheduleSpec, after: datetime) -> timedelta:
    """The time between two runs of ``spec`` (for cron: the longest gap in the week after)."""
    if spec.interval is not None:
        return timedelta(seconds=spec.interval)
    times = _fires_after(spec, after)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    return max(gaps, default=timedelta(days=366))


def _fires_after(spec: ScheduleSpec, after: datetime) -> list[datetime]:
    """``fire_times(spec, after, until=after + CRON_WINDOW, limit=CRON_MAX_FIRES)``, taken
    from the fire times of the whole hour ``after`` falls in, which are worked out once:
    every workspace of a run finishes within minutes, and working them out for an hourly
    cron (APScheduler, 360 of them) took 50 ms each time, on the thread that commits."""
    hour = after.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    cached = _hour_fires(spec, hour)
    times: list[datetime] = []
    until = after + CRON_WINDOW
    for moment in cached:
        if moment < after:
            continue
        if len(times) >= CRON_MAX_FIRES or (len(times) >= 2 and moment > until):
            return times
        times.append(moment)
    if len(cached) < _HOUR_LIMIT and len(times) >= 2:
        return times  # every fire up to ``until`` was in the hour's list
    from backupd.service.cron import fire_times  # (APScheduler: imported when needed)

    return fire_times(spec, after, until=until, limit=CRON_MAX_FIRES)  # a rare schedule


_HOUR_LIMIT = CRON_MAX_FIRES + 120  # the fires of one hour more than any window needs


@functools.lru_cache(maxsize=64)
def _hour_fires(spec: ScheduleSpec, hour: datetime) -> tuple[datetime, ...]:
    # Imported here: APScheduler takes 50 ms to import, which every `backupd snapshot` paid
    # before its first call; it is needed only once a workspace has finished.
    from backupd.service.cron import fire_times

    last = hour + timedelta(hours=1) + CRON_WINDOW
    return tuple(fire_times(spec, hour, until=last, limit=_HOUR_LIMIT))


def stale_after(
    record: WorkspaceStatus | None, spec: ScheduleSpec, since: datetime | None = None
) -> datetime | None:
    """When the workspace turns stale: twice the period after its last success.

    Without a success, the clock starts at its first failure, else at ``since`` (when the
    daemon started: a workspace it never got round to is stale too). None: never stale (a
    workspace no longer listed, or one never tried by a one-shot run).
    """
    if record is not None and record.gone:
        return None
    reference = None
    if record is not None:
        reference = record.last_success or record.failing_since
    reference = reference or since
    if reference is None:
        return None
    return reference + 2 * period(spec, reference) + timedelta(seconds=spec.jitter)


def alert_state(record: WorkspaceStatus, stale: bool) -> AlertState:
    if stale:
        return "stale"
    if record.failing:
        return "failing"
    return "partial" if record.problems else "ok"


# --- the file ---------------------------------------------------------------------------------


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat(timespec="seconds")


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def to_json(record: WorkspaceStatus) -> dict[str, Any]:
    data = asdict(record)
    data["duration"] = None if record.duration is None else round(record.duration, 3)
    for key in ("last_attempt", "last_success", "failing_since"):
        data[key] = _time(getattr(record, key))
    return data


def from_json(label: str, data: Mapping[str, Any]) -> WorkspaceStatus:
    """A record from the file; anything missing or malformed falls back to its default."""

    def typed(key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        value = data.get(key)
        if isinstance(value, bool) and kind is not bool:
            return default
        return value if isinstance(value, kind) else default

    found = data.get("changes")
    changes: Mapping[str, Any] = found if isinstance(found, dict) else {}
    counts = [changes.get(k) for k in ("added", "changed", "removed")]
    alerted = data.get("alerted")
    return WorkspaceStatus(
        workspace=label,
        last_attempt=_parse_time(data.get("last_attempt")),
        last_success=_parse_time(data.get("last_success")),
        failing_since=_parse_time(data.get("failing_since")),
        failures=typed("failures", int, 0),
        duration=typed("duration", (int, float)),
        jobs=typed("jobs", int),
        changes=Changes(*(c if isinstance(c, int) else 0 for c in counts)),
        last_commit=typed("last_commit", str),
        last_error=typed("last_error", str),
        gone=typed("gone", bool, False),
        interrupted=typed("interrupted", bool, False),
        problems=tuple(str(item) for item in typed("problems", list, [])),
        alerted=alerted if alerted in ("ok", "partial", "failing", "stale") else None,
    )


class StatusStore:
    """``status.json`` in one folder. Not thread-safe: one writer (the lock holder) at a time."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / STATUS_FILE

    def load(self) -> dict[str, WorkspaceStatus]:
        """Every record; empty when there is no file yet. A damaged file is set aside."""
        try:
            data = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as error:
            self._set_aside(error)
            return {}
        workspaces = data.get("workspaces") if isinstance(data, dict) else None
        if not isinstance(workspaces, dict):
            self._set_aside(ValueError("no 'workspaces' mapping"))
            return {}
        return {
            label: from_json(label, record)
            for label, record in workspaces.items()
            if isinstance(record, dict)
        }

    def read(self) -> dict[str, WorkspaceStatus]:
        """For readers (`backupd status`): never writes; an unreadable file is an error."""
        try:
            data = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except OSError as error:
            raise UserError(
                f"cannot read {self.path}: {error.strerror or error} (run as the user "
                "backupd runs as, or root)"
            ) from None
        except ValueError as error:
            raise UserError(f"{self.path} is damaged: {error}") from None
        workspaces = data.get("workspaces") if isinstance(data, dict) else None
        if not isinstance(workspaces, dict):
            raise UserError(f"{self.path} is damaged: no 'workspaces' mapping")
        return {
            label: from_json(label, record)
            for label, record in workspaces.items()
            if isinstance(record, dict)
        }

    def save(self, records: Mapping[str, WorkspaceStatus]) -> None:
        """Replace the file atomically with ``records`` (mode 0600, folder 0700)."""
        payload = {
            "version": FORMAT_VERSION,
            "workspaces": {label: to_json(records[label]) for label in sorted(records)},
        }
        write_atomically(self.path, json.dumps(payload, indent=2, ensure_ascii=False) + "\n")

    def _set_aside(self, error: Exception) -> None:
        # Starting afresh beats refusing to run: the history is in git; this is bookkeeping.
        damaged = self.path.with_suffix(".damaged")
        with contextlib.suppress(OSError):
            self.path.replace(damaged)
        log(
            logger,
            "status.damaged",
            level=logging.WARNING,
            file=str(self.path),
            error=str(error),
            moved_to=str(damaged),
        )


def write_atomically(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the new one, never a
    mix, and a crash at any point leaves one of them whole."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as file:
            os.fchmod(file.fileno(), 0o600)
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        Path(temporary).replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            Path(temporary).unlink()
        raise
    with contextlib.suppress(OSError):  # the rename itself survives a power cut
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
