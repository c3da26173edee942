"""`backupd snapshot`: snapshot the configured workspaces once (or plan it with --dry-run)."""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from backupd.config import Config, load_config
from backupd.errors import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    BackupdError,
    ClockSkewError,
    CredentialsRejected,
    UserError,
)
from backupd.logs import log, problem

if TYPE_CHECKING:
    from backupd.model import SnapshotObserver, SnapshotResult


logger = logging.getLogger("backupd")


def cmd_snapshot(args: argparse.Namespace) -> int:
    from backupd.snapshot.run import run

    config = load_config(args.config)
    if args.dry_run:
        return dry_run(config, args.workspace)
    with snapshot_observer(config) as observer:
        report = run(
            config,
            only=args.workspace,
            allow_mass_delete=args.allow_mass_delete,
            observer=observer,
        )
    results = report.results
    if report.push is not None and not report.push.ok:
        # Not a failed snapshot: the commits are safe here and go out with the next push.
        problem(f"{report.push.error} (will retry on the next run)", level=logging.WARNING)
    if args.workspace and not results:
        raise UserError(f"no configured workspace matches {', '.join(args.workspace)}")
    failed = [r for r in results if not r.ok]
    if not failed:
        return EXIT_OK
    labels = [r.target.label for r in failed]
    log(
        logger,
        "snapshot.summary",
        level=logging.ERROR,
        failed=",".join(labels),
        ok=len(results) - len(failed),
    )
    for line in failure_lines(failed):
        problem(line)
    problem(f"snapshot failed for {', '.join(labels)}")
    rejected = any(
        r.error_type is not None
        and issubclass(r.error_type, CredentialsRejected)
        and not issubclass(r.error_type, ClockSkewError)
        for r in failed
    )
    return EXIT_CONFIG if rejected else EXIT_FAILED


_PROBLEM_KINDS: tuple[tuple[type[BackupdError], str], ...] = (
    (ClockSkewError, "clock problem: "),
    (CredentialsRejected, "credentials rejected: "),
)


@contextlib.contextmanager
def snapshot_observer(config: Config) -> Iterator[SnapshotObserver]:
    """What watches a one-shot snapshot: the status file and alerts, and the progress
    display on a terminal."""
    from backupd.commands.progress import progress_for
    from backupd.model import Fanout
    from backupd.service.alerts import send_alert
    from backupd.service.monitor import Monitor
    from backupd.service.plan import schedule_of
    from backupd.service.status import StatusStore

    monitor = Monitor(
        StatusStore(config.status_dir),
        schedule_of=functools.partial(schedule_of, config),
        deliver=functools.partial(send_alert, config.alerts),
    )
    display = progress_for(sys.stderr)
    if display is None:
        yield monitor
        return
    with display.attached():
        yield Fanout([display, monitor])


def dry_run(config: Config, only: Sequence[str]) -> int:
    from backupd.commands.dry_run import dry_run as plan
    from backupd.commands.dry_run import format_plans

    plans = plan(config, only)
    if only and not plans:
        raise UserError(f"no configured workspace matches {', '.join(only)}")
    for line in format_plans(plans):
        print(line)  # noqa: T201
    return EXIT_FAILED if any(p.error for p in plans) else EXIT_OK


def failure_lines(failed: Sequence[SnapshotResult]) -> list[str]:
    """One line per distinct error, naming its workspaces and the kind of problem first."""
    by_error: dict[tuple[str, str], list[str]] = {}
    for result in failed:
        kind = next(
            (
                label
                for cls, label in _PROBLEM_KINDS
                if result.error_type is not None and issubclass(result.error_type, cls)
            ),
            "",
        )
        by_error.setdefault((kind, result.error or "unknown error"), []).append(result.target.label)
    return [f"{', '.join(labels)}: {kind}{error}" for (kind, error), labels in by_error.items()]
