"""`backupd snapshot`: snapshot the configured workspaces once (or plan it with --dry-run)."""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime
from types import FrameType
from typing import TYPE_CHECKING

from backupd.config import Config, load_config
from backupd.errors import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_PARTIAL,
    BackupdError,
    ClockSkewError,
    CredentialsRejected,
    UserError,
)
from backupd.logs import log, problem
from backupd.model import (
    NO_OBSERVER,
    Fanout,
    SnapshotObserver,
    SnapshotResult,
)
from backupd.snapshot.run import Publisher, RunReport, select_sources, snapshot_sources, utc_now
from backupd.snapshot.scratch import remove_stale_staging
from backupd.store.gitrepo import GitRepo, Identity, repository_lock
from backupd.wiring import (
    AuthCache,
    ClientFactory,
    load_cas_ahead,
    make_client,
    snapshot_options,
)

if TYPE_CHECKING:
    from backupd.model import SnapshotObserver, SnapshotResult


logger = logging.getLogger("backupd")


def cmd_snapshot(args: argparse.Namespace) -> int:
    from backupd.service.oneshot import reported_run  # heartbeat pings, metrics textfile

    config = load_config(args.config)
    if args.dry_run:
        return dry_run(config, args.workspace)
    with (
        reported_run(config) as outcome,
        snapshot_observer(config) as observer,
        stop_signals() as stopped,
    ):
        report = run(
            config,
            only=args.workspace,
            allow_mass_delete=args.allow_mass_delete,
            observer=observer,
            cancel=stopped,
        )
        outcome.results = report.results
    results = report.results
    if stopped.is_set():
        # Not a failure: nothing half-done was recorded, and the next run does the work.
        cut = [r.target.label for r in results if r.interrupted]
        problem(f"interrupted; not snapshotted: {', '.join(cut) or 'none'}", level=logging.WARNING)
        return 128 + stopped.signal_number
    if report.push is not None and not report.push.ok:
        # Not a failed snapshot: the commits are safe here and go out with the next push.
        problem(f"{report.push.error} (will retry on the next run)", level=logging.WARNING)
    if args.workspace and not results:
        raise UserError(f"no configured workspace matches {', '.join(args.workspace)}")
    failed = [r for r in results if not r.ok]
    partial = [r for r in results if r.partial]
    for result in partial:
        # Committed all the rest; these stay at their previous version (or unconfirmed).
        shown = "; ".join(result.problems[:10])
        more = f" (+{len(result.problems) - 10} more)" if len(result.problems) > 10 else ""
        problem(f"{result.target.label}: partial snapshot: {shown}{more}", level=logging.WARNING)
    if not failed:
        return EXIT_PARTIAL if partial else EXIT_OK
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


class StopSignal(threading.Event):
    """Set by SIGTERM or SIGINT: the snapshot stops between two API calls."""

    signal_number = signal.SIGTERM.value


@contextlib.contextmanager
def stop_signals() -> Iterator[StopSignal]:
    """SIGTERM and SIGINT end the run cleanly instead of killing it mid-call (a timer unit
    stopped by systemd, Ctrl-C on a terminal); the handlers before are put back after."""
    stopped = StopSignal()

    def on_signal(number: int, frame: FrameType | None) -> None:
        stopped.signal_number = number
        stopped.set()

    previous = {number: signal.signal(number, on_signal) for number in STOP_SIGNALS}
    try:
        yield stopped
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

_PROBLEM_KINDS: tuple[tuple[type[BackupdError], str], ...] = (
    (ClockSkewError, "clock problem: "),
    (CredentialsRejected, "credentials rejected: "),
)


@contextlib.contextmanager
def snapshot_observer(config: Config) -> Iterator[SnapshotObserver]:
    """What watches a one-shot snapshot: the status file and alerts, and the progress
    display on a terminal."""
    from backupd.commands.progress import progress_for
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


def run(
    config: Config,
    *,
    only: Iterable[str] = (),
    allow_mass_delete: bool = False,
    client_factory: ClientFactory | None = None,
    auth_cache: AuthCache | None = None,
    clock: Callable[[], datetime] = utc_now,
    observer: SnapshotObserver = NO_OBSERVER,
    cancel: threading.Event | None = None,
) -> RunReport:
    """One snapshot run (`backupd snapshot`, the timer units): the configured workspaces
    (``only``: labels, folders or source names), then tag and push.

    Holds the repository lock while it snapshots and tags; the push runs outside it: it may
    wait on the network, and its failure is part of the report, never an exception.
    """
    if client_factory is None:
        load_cas_ahead(config.sources)  # while the repository is opened and read
    factory = client_factory or functools.partial(make_client, auth_cache=auth_cache, cancel=cancel)
    identity = Identity(config.repository.author.name, config.repository.author.email)
    publisher = Publisher(clock)
    with GitRepo.open(config.repository.path, branch=config.repository.branch) as repo:
        with repository_lock(repo):
            repo.prepare(identity)  # also repairs what a killed run left in the repository
            remove_stale_staging(config.staging_dir)
            results = snapshot_sources(
                config,
                repo,
                select_sources(config, only),
                identity,
                clients=factory,
                options_for=functools.partial(
                    snapshot_options, config, allow_mass_delete=allow_mass_delete
                ),
                observer=observer,
                cancel=cancel,
            )
            tag = publisher.tag(repo, config, results, identity)
            repo.housekeep()
        pushed = None
        if not (cancel is not None and cancel.is_set()):
            pushed = publisher.push(repo, config, results)
    return RunReport(tuple(results), tag, pushed)


def run_snapshots(
    config: Config,
    *,
    only: Iterable[str] = (),
    allow_mass_delete: bool = False,
    client_factory: ClientFactory | None = None,
    auth_cache: AuthCache | None = None,
) -> list[SnapshotResult]:
    """Snapshot the configured workspaces (then tag and push, as configured)."""
    report = run(
        config,
        only=only,
        allow_mass_delete=allow_mass_delete,
        client_factory=client_factory,
        auth_cache=auth_cache,
    )
    return list(report.results)
