"""`backupd status`: the status file as a table (or JSON), with stale workspaces flagged;
exit code 1 when a workspace is stale or has never run.

Reads only: no lock, no API call, so it answers while a daemon runs — and when none does,
which is exactly when a backup silently stopped: its workspaces show up as STALE.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from backupd.commands.scope import known_workspaces
from backupd.commands.table import render_table
from backupd.config import Config, load_config
from backupd.errors import EXIT_FAILED, EXIT_OK
from backupd.model import is_warning
from backupd.service.plan import ScheduleSpec, schedule_of
from backupd.service.status import StatusStore, WorkspaceStatus, stale_after, to_json

if TYPE_CHECKING:
    pass


MAX_PROBLEMS_SHOWN = 5


@dataclass(frozen=True)
class StatusRow:
    label: str
    record: WorkspaceStatus | None
    schedule: ScheduleSpec | None
    stale_after: datetime | None
    stale: bool

    @property
    def state(self) -> str:
        record = self.record
        if record is not None and record.gone:
            return "GONE"
        if self.stale:
            return "STALE"
        if record is None or record.last_attempt is None:
            return "NEVER RUN"
        if record.failing:
            return "FAILING"
        if record.problems:
            # Only optional parts missing (resources): a warning; an item not recorded: partial.
            return "WARNING" if all(is_warning(p) for p in record.problems) else "PARTIAL"
        return "INTERRUPTED" if record.interrupted else "OK"


def configured_labels(config: Config) -> list[str]:
    """Listed workspaces, and those discovery recorded as present in the repository."""
    return [w.label for w in known_workspaces(config) if w.present]


def status_rows(config: Config, now: datetime) -> list[StatusRow]:
    """A row per configured workspace, and per recorded workspace of a discovering source."""
    records = StatusStore(config.status_dir).read()
    discovering = {s.name for s in config.sources if s.discovers}
    labels = configured_labels(config)
    labels += sorted(
        label for label in records if label.split("/", 1)[0] in discovering and label not in labels
    )
    rows = []
    for label in labels:
        record = records.get(label)
        spec = schedule_of(config, label)
        deadline = None if spec is None or record is None else stale_after(record, spec)
        stale = deadline is not None and now > deadline
        rows.append(StatusRow(label, record, spec, deadline, stale))
    return rows


def _ago(moment: datetime | None, now: datetime) -> str:
    if moment is None:
        return "never"
    seconds = max(0, int((now - moment).total_seconds()))
    if seconds < 120:
        age = f"{seconds}s"
    elif seconds < 7200:
        age = f"{seconds // 60}m"
    elif seconds < 172800:
        age = f"{seconds // 3600}h"
    else:
        age = f"{seconds // 86400}d"
    return f"{moment.astimezone(UTC):%Y-%m-%d %H:%M:%SZ} ({age} ago)"


def format_rows(rows: list[StatusRow], now: datetime) -> list[str]:
    table = [
        ("WORKSPACE", "STATE", "LAST SUCCESS", "LAST ATTEMPT", "TOOK", "JOBS", "CHANGES", "COMMIT")
    ]
    notes: dict[str, list[str]] = {}
    for row in rows:
        record = row.record or WorkspaceStatus(row.label)
        took = f"{record.duration:.1f}s" if record.duration is not None else "-"
        table.append(
            (
                row.label,
                row.state,
                _ago(record.last_success, now),
                _ago(record.last_attempt, now),
                took,
                str(record.jobs) if record.jobs is not None else "-",
                str(record.changes) if record.last_success else "-",
                (record.last_commit or "-")[:10],
            )
        )
        lines = notes.setdefault(row.label, [])
        if record.last_error:
            lines.append(f"    last error ({record.failures} failed in a row): {record.last_error}")
        if record.problems and not record.failing:
            lines += [f"    {problem}" for problem in record.problems[:MAX_PROBLEMS_SHOWN]]
            if len(record.problems) > MAX_PROBLEMS_SHOWN:
                lines.append(f"    … and {len(record.problems) - MAX_PROBLEMS_SHOWN} more")
        if row.stale and row.schedule is not None:
            lines.append(
                f"    stale since {row.stale_after:%Y-%m-%d %H:%M:%SZ}: no success within twice "
                f"the period of its schedule ({row.schedule.describe()})"
            )
    rendered = render_table(table)
    output = [rendered[0]]
    for row, line in zip(rows, rendered[1:], strict=True):
        output.append(line)
        output += notes[row.label]
    return output


def rows_json(rows: list[StatusRow], config: Config) -> dict[str, Any]:
    return {
        "status_file": str(StatusStore(config.status_dir).path),
        "workspaces": [
            {
                **to_json(row.record or WorkspaceStatus(row.label)),
                "state": row.state,
                "stale": row.stale,
                "stale_after": row.stale_after.isoformat(timespec="seconds")
                if row.stale_after
                else None,
                "schedule": row.schedule.describe() if row.schedule else None,
            }
            for row in rows
        ],
    }


def cmd_status(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from backupd.commands.status import format_rows, rows_json, status_rows

    config = load_config(args.config)
    now = datetime.now(UTC)
    rows = status_rows(config, now)
    if args.json:
        print(json.dumps(rows_json(rows, config), indent=2, ensure_ascii=False))  # noqa: T201
    else:
        for line in format_rows(rows, now):
            print(line)  # noqa: T201
    return exit_code(rows)


def exit_code(rows: list[StatusRow]) -> int:
    """1 when a workspace is STALE or NEVER RUN, else 0 (FAILING alone is not: a failure is
    alerted on at once, and turns STALE when no success follows in time). A configured
    workspace without any recorded attempt is a backup that never started: a monitoring
    check that passed until the first run ever happened would miss exactly that."""
    needs_someone = any(row.stale or row.state == "NEVER RUN" for row in rows)
    return EXIT_FAILED if needs_someone else EXIT_OK
