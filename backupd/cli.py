"""Command line: argparse sub-commands; every error becomes one readable line and an exit code.

Exit codes: 0 ok, 1 a snapshot/restore failed (or the repository is busy), 2 usage, 78 bad
config or credentials (unreadable, or rejected by the service).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from backupd import __version__
from backupd.config import Config, load_config
from backupd.errors import (
    BackupdError,
    ClockSkewError,
    ConfigError,
    CredentialError,
    CredentialsRejected,
    UsageError,
    UserError,
)
from backupd.logs import log, setup_logging
from backupd.memory import configure_malloc

if TYPE_CHECKING:
    from backupd.observer import SnapshotObserver
    from backupd.snapshot import SnapshotResult

logger = logging.getLogger("backupd")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CONFIG = 78  # EX_CONFIG from sysexits.h; systemd's RestartPreventExitStatus= uses it

_PROBLEM_KINDS: tuple[tuple[type[BackupdError], str], ...] = (
    (ClockSkewError, "clock problem: "),
    (CredentialsRejected, "credentials rejected: "),
)

DEFAULT_CONFIG = "/etc/backupd/config.yaml"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="backupd",
        description="Back up Huawei Cloud DataArts Studio (DataArts Factory) jobs into git.",
        epilog="Exit codes: 0 ok, 1 a snapshot failed, 2 usage error, 78 configuration or "
        "credential error (including credentials the service rejected).",
    )
    parser.add_argument("--version", action="version", version=f"backupd {__version__}")
    parser.add_argument(
        "--log-level",
        default=os.environ.get("BACKUPD_LOG_LEVEL", "info"),
        choices=["debug", "info", "warning", "error"],
        help="log verbosity (default: info, or $BACKUPD_LOG_LEVEL)",
    )
    parser.add_argument(
        "--log-format",
        default="auto",
        choices=["auto", "text", "json"],
        help="auto: text on a terminal or under journald, JSON lines otherwise",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def with_config(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "-c",
            "--config",
            type=Path,
            default=Path(os.environ.get("BACKUPD_CONFIG", DEFAULT_CONFIG)),
            help=f"config file (default: $BACKUPD_CONFIG or {DEFAULT_CONFIG})",
        )

    snapshot = commands.add_parser(
        "snapshot",
        help="snapshot every configured workspace once (then tag and push, as configured)",
    )
    with_config(snapshot)
    snapshot.add_argument(
        "-w",
        "--workspace",
        action="append",
        default=[],
        metavar="NAME",
        help="only this workspace ('source/folder', folder name or source name; repeatable)",
    )
    snapshot.add_argument(
        "--allow-mass-delete",
        action="store_true",
        help="record deletions even when the service lists no jobs or more than "
        "safety.max_delete_fraction of them vanished",
    )
    snapshot.add_argument(
        "--dry-run",
        action="store_true",
        help="list every workspace and print what a snapshot would add or delete (by name); "
        "exports nothing, commits nothing. Content changes of existing jobs are only known "
        "by exporting",
    )

    restore = commands.add_parser(
        "restore",
        help="rebuild an importable jobs.zip from the repository at any point in history, "
        "list restore points, or import into DataArts",
        description="Rebuild, from the git repository alone (no API access), a zip in the "
        "batch-export layout that DataArts Studio imports: the chosen jobs with the scripts "
        "they use, exactly as they were at the chosen point. Derived .sql/.sh/.py views and "
        ".backupd metadata are not included. Choose --out FILE and/or --import, or "
        "--dry-run, or --list.",
    )
    with_config(restore)
    restore.add_argument("--source", metavar="NAME", help="source name (needed if several)")
    restore.add_argument(
        "-w",
        "--workspace",
        metavar="NAME",
        help="workspace folder name or id (needed if several)",
    )
    restore.add_argument(
        "--at",
        metavar="REV|TAG|DATE",
        help="the point to restore: a commit, a tag (e.g. snapshot/…) or a date/time in ISO "
        "8601 ('2026-11-20', '2026-11-20 03:00', '2026-11-20T03:00:00+08:00'); a date/time "
        "without an offset is UTC. A date/time means the state at that moment: the last "
        "snapshot at or before it. Default: the latest snapshot",
    )
    restore.add_argument(
        "-j",
        "--job",
        action="append",
        default=[],
        metavar="NAME",
        help="restore only this job (repeatable; default: every job of the workspace)",
    )
    restore.add_argument(
        "--with-dependents",
        action="store_true",
        help="also restore the jobs that depend on the chosen ones: jobs whose schedule "
        "waits for them (schedule.cron.dependJobs 'jobs' or 'sameWorkSpaceJobs'), and the "
        "jobs that wait for those, transitively",
    )
    restore.add_argument(
        "--all-scripts",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also every other script of the workspace, as scripts/<name>.script (default: "
        "yes when restoring the whole workspace, no with --job)",
    )
    restore.add_argument("-o", "--out", type=Path, metavar="FILE", help="write the zip here")
    restore.add_argument(
        "--import",
        dest="import_zip",
        action="store_true",
        help="upload the zip to the OBS bucket of the source's restore section and import "
        "it into the workspace (parts of at most restore.max_import_bytes)",
    )
    restore.add_argument(
        "--overwrite",
        action="store_true",
        help="with --import: replace jobs and scripts of the same name (sameNamePolicy "
        "OVERWRITE; DataArts overwrites only stopped jobs). Default: keep them (SKIP)",
    )
    restore.add_argument(
        "--target-status",
        choices=("SAVED", "SUBMITTED", "PRODUCTION"),
        help="with --import, for a workspace with review on: the state of the imported jobs "
        "(targetStatus; PRODUCTION only for workspace admins). Default: "
        "restore.target_status, else not sent",
    )
    restore.add_argument(
        "--approver",
        action="append",
        default=[],
        metavar="USER",
        help="with --import, for a workspace with review on: an approver of the imported jobs "
        "(repeatable; replaces restore.approvers)",
    )
    restore.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would be restored and how it differs from the live workspace "
        "(new/changed/identical per job, by exporting the current versions)",
    )
    restore.add_argument(
        "--offline", action="store_true", help="with --dry-run: do not ask the API"
    )
    restore.add_argument(
        "--list",
        action="store_true",
        help="list the restore points: commits that changed the workspace, with their "
        "snapshot/* tags",
    )
    check = commands.add_parser(
        "check",
        help="try credentials, endpoints, listing and export per workspace, the repository "
        "and the remote; a table of OK/FAIL lines",
        description="Validate the config, then per source and workspace make one real call "
        "of each kind a snapshot makes (list jobs with limit 1, export one job to a temporary "
        "file), and check that the repository, staging and state folders are writable and "
        "the remote answers (git ls-remote). Nothing is retried and nothing is written to the "
        "repository. Exit code 0 only if every line is OK (or SKIP).",
    )
    with_config(check)
    status = commands.add_parser(
        "status",
        help="the last snapshot of every workspace (from the status file); STALE when its "
        "last success is older than twice its schedule's period",
        description="Show, per workspace, the last attempt and success, duration, jobs, "
        "changes, last commit and last error, as recorded by `backupd snapshot` and `backupd "
        "run`. A workspace is STALE when its last success is older than twice the period of "
        "its schedule (for cron: the longest gap between runs). Reads only; no API call. "
        "Exit code 1 when a workspace is stale.",
    )
    with_config(status)
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    run = commands.add_parser(
        "run",
        help="run as a daemon: snapshot each workspace on its schedule until stopped",
        description="Snapshot each workspace on its schedule (config 'schedule:', 'daemon:') "
        "until SIGTERM or SIGINT, which let a running commit finish. SIGHUP reloads the "
        "config (an invalid one is logged and the running one kept). Holds the repository "
        "lock while it runs. Under systemd (Type=notify) it reports READY, STATUS, RELOADING "
        "and STOPPING and feeds the watchdog.",
    )
    with_config(run)
    push = commands.add_parser(
        "push", help="push commits and snapshot tags to the configured remote now"
    )
    with_config(push)

    def with_scope(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--source", metavar="S", help="only this source (config name)")
        sub.add_argument(
            "--workspace", metavar="W", help="only this workspace (folder name, id or S/folder)"
        )

    history_log = commands.add_parser(
        "log", help="list the recorded changes of a job or workspace: date, author, commit"
    )
    with_config(history_log)
    with_scope(history_log)
    history_log.add_argument("--job", metavar="J", help="only the changes of this job")
    history_log.add_argument(
        "-n", "--max-count", type=int, metavar="N", help="show at most N changes (newest first)"
    )

    show = commands.add_parser("show", help="print a job's .job file as it was at a date or commit")
    show.add_argument("job", metavar="JOB", help="job name")
    with_config(show)
    with_scope(show)
    show.add_argument(
        "--at",
        metavar="REV|DATE",
        help="a commit, tag (snapshot/...) or ISO date/time (UTC unless an offset is given; "
        "a date alone means the end of that day); default: the latest snapshot",
    )
    show.add_argument(
        "--scripts",
        action="store_true",
        help="also print the job's scripts and their readable views (each after a "
        "'==> path <==' line)",
    )
    workspaces = commands.add_parser(
        "workspaces",
        help="show the workspaces each source backs up: discovered or configured, included "
        "or not and why (changes nothing)",
    )
    with_config(workspaces)

    config_command = commands.add_parser("config", help="generate or validate a config file")
    config_actions = config_command.add_subparsers(dest="action", metavar="ACTION", required=True)
    config_actions.add_parser(
        "generate", help="print a complete commented sample config (config.example.yaml)"
    )
    validate = config_actions.add_parser("validate", help="check a config file and exit")
    with_config(validate)

    demo = commands.add_parser(
        "demo", help="run a local simulator, snapshot it twice and show the git history"
    )
    demo.add_argument(
        "directory",
        nargs="?",
        type=Path,
        default=Path("backupd-demo"),
        help="empty folder for the demo repository (default: ./backupd-demo)",
    )

    simulator = commands.add_parser(
        "simulator", help="serve a local DataArts Studio simulator (for trying backupd out)"
    )
    simulator.add_argument("--port", type=int, default=8080, help="TCP port (default 8080)")
    simulator.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    simulator.add_argument("--jobs", type=int, default=20, help="jobs per workspace")
    simulator.add_argument("--workspaces", type=int, default=2, help="number of workspaces")
    return parser


def cmd_snapshot(args: argparse.Namespace) -> int:
    from backupd.runner import run

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
        print(f"backupd: {report.push.error} (will retry on the next run)", file=sys.stderr)  # noqa: T201
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
        print(f"backupd: {line}", file=sys.stderr)  # noqa: T201
    print(f"backupd: snapshot failed for {', '.join(labels)}", file=sys.stderr)  # noqa: T201
    rejected = any(
        r.error_type is not None
        and issubclass(r.error_type, CredentialsRejected)
        and not issubclass(r.error_type, ClockSkewError)
        for r in failed
    )
    return EXIT_CONFIG if rejected else EXIT_FAILED


@contextlib.contextmanager
def snapshot_observer(config: Config) -> Iterator[SnapshotObserver]:
    """What watches a one-shot snapshot: the status file and alerts, and a progress bar on a
    terminal."""
    from backupd.observer import Fanout
    from backupd.progress import progress_for
    from backupd.service.alerts import send_alert
    from backupd.service.monitor import Monitor
    from backupd.service.plan import schedule_of
    from backupd.service.status import StatusStore

    monitor = Monitor(
        StatusStore(config.status_dir),
        schedule_of=functools.partial(schedule_of, config),
        deliver=functools.partial(send_alert, config.alerts),
    )
    bar = progress_for(sys.stderr)
    if bar is None:
        yield monitor
        return
    with bar.attached():
        yield Fanout([bar, monitor])


def dry_run(config: Config, only: Sequence[str]) -> int:
    from backupd.dry_run import dry_run as plan
    from backupd.dry_run import format_plans

    plans = plan(config, only)
    if only and not plans:
        raise UserError(f"no configured workspace matches {', '.join(only)}")
    for line in format_plans(plans):
        print(line)  # noqa: T201
    return EXIT_FAILED if any(p.error for p in plans) else EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    from backupd.check import run_checks
    from backupd.table import render_table

    config = load_config(args.config)
    sources = len(config.sources)
    listed = sum(len(s.listed_workspaces) for s in config.sources)
    found = f"{sources} source(s), {listed} listed workspace(s)"
    if any(s.discovers for s in config.sources):
        found += " and discovered ones"
    lines = run_checks(config)
    rows = [
        ("RESULT", "WHAT", "CHECK", "DETAIL"),
        ("OK", "config", "valid", f"{args.config}: {found}"),
    ]
    rows += [(line.verdict, line.subject, line.check, line.detail) for line in lines]
    for text in render_table(rows):
        print(text)  # noqa: T201
    failed = [line for line in lines if line.failed]
    if failed:
        print(f"backupd check: {len(failed)} of {len(rows) - 1} checks FAILED", file=sys.stderr)  # noqa: T201
        return EXIT_FAILED
    print(f"backupd check: all {len(rows) - 1} checks passed")  # noqa: T201
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from backupd.status_command import format_rows, rows_json, status_rows

    config = load_config(args.config)
    now = datetime.now(UTC)
    rows = status_rows(config, now)
    if args.json:
        print(json.dumps(rows_json(rows, config), indent=2, ensure_ascii=False))  # noqa: T201
    else:
        for line in format_rows(rows, now):
            print(line)  # noqa: T201
    return EXIT_FAILED if any(row.stale for row in rows) else EXIT_OK


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


def cmd_restore(args: argparse.Namespace) -> int:
    from backupd.restore_command import run_restore

    return run_restore(args)


def cmd_run(args: argparse.Namespace) -> int:
    from backupd.service.daemon import run_daemon

    return run_daemon(args.config, load_config(args.config))


def cmd_push(args: argparse.Namespace) -> int:
    from backupd.publish import push_snapshots
    from backupd.store.gitrepo import GitRepo

    config = load_config(args.config)
    if config.remote is None:
        raise ConfigError("remote", "is not configured: there is nowhere to push to")
    with GitRepo.open_existing(config.repository.path, branch=config.repository.branch) as repo:
        result = push_snapshots(repo, config)
    if not result.ok:
        print(f"backupd: {result.error}", file=sys.stderr)  # noqa: T201
        return EXIT_FAILED
    updated = f"{len(result.updated)} ref(s) updated" if result.updated else "already up to date"
    print(f"pushed to {result.remote}: {updated}")  # noqa: T201
    return EXIT_OK


def cmd_log(args: argparse.Namespace) -> int:
    from backupd.history import changes, format_changes, resolve_scope
    from backupd.store.gitrepo import GitRepo

    config = load_config(args.config)
    if args.max_count is not None and args.max_count < 1:
        raise UsageError("--max-count must be at least 1")
    scope = resolve_scope(config, source=args.source, workspace=args.workspace, job=args.job)
    with GitRepo.open_existing(config.repository.path, branch=config.repository.branch) as repo:
        found = changes(repo, scope, max_count=args.max_count)
    if not found and scope.job is not None:
        raise UserError(f"no recorded change of job {scope.job!r} in {', '.join(scope.folders)}")
    for line in format_changes(found, scope):
        print(line)  # noqa: T201
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    from backupd.history import format_time, resolve_scope, show_job
    from backupd.store.gitrepo import GitRepo

    config = load_config(args.config)
    scope = resolve_scope(config, source=args.source, workspace=args.workspace, job=args.job)
    with GitRepo.open_existing(config.repository.path, branch=config.repository.branch) as repo:
        view = show_job(repo, scope, at=args.at, with_scripts=args.scripts)
    if args.at is not None:
        when = format_time(view.commit.time)
        print(  # noqa: T201
            f"backupd: {scope.job_folder(view.folder)} as of {view.commit.sha[:10]} ({when})",
            file=sys.stderr,
        )
    output = sys.stdout.buffer
    for index, (path, content) in enumerate(view.files):
        if args.scripts:
            separator = "" if index == 0 else "\n"
            output.write(f"{separator}==> {path} <==\n".encode())
        output.write(content)
    output.flush()
    return EXIT_OK


def cmd_workspaces(args: argparse.Namespace) -> int:
    from backupd.discovery import preview
    from backupd.runner import make_client

    config = load_config(args.config)
    rows = [("SOURCE", "ID", "NAME", "FOLDER", "STATUS")]
    for source in config.sources:
        if not source.discovers:
            rows += [
                (source.name, w.id, w.name or "-", w.folder, "listed in config")
                for w in source.listed_workspaces
            ]
            continue
        with make_client(source) as client:
            found = preview(client, config.repository.path, source)
        rows += [(source.name, w.id, w.name, w.folder or "-", w.status) for w in found.workspaces]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[4]]))  # noqa: T201
    return EXIT_OK


def cmd_config(args: argparse.Namespace) -> int:
    if args.action == "generate":
        from backupd.config_doc import render_example

        sys.stdout.write(render_example())
        return EXIT_OK
    load_config(args.config)
    print(f"{args.config}: valid")  # noqa: T201
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from backupd.demo import run_demo

    run_demo(args.directory)
    return EXIT_OK


def cmd_simulator(args: argparse.Namespace) -> int:
    from backupd.dataarts.simulator import serve

    serve(args.port, args.host, workspaces=args.workspaces, jobs=args.jobs)
    return EXIT_OK


COMMANDS = {
    "snapshot": cmd_snapshot,
    "restore": cmd_restore,
    "run": cmd_run,
    "check": cmd_check,
    "status": cmd_status,
    "push": cmd_push,
    "log": cmd_log,
    "show": cmd_show,
    "workspaces": cmd_workspaces,
    "config": cmd_config,
    "demo": cmd_demo,
    "simulator": cmd_simulator,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    configure_malloc()
    try:
        return COMMANDS[args.command](args)
    except ClockSkewError as error:
        print(f"backupd: clock problem: {error}", file=sys.stderr)  # noqa: T201
        return EXIT_FAILED
    except (ConfigError, CredentialError, CredentialsRejected) as error:
        print(f"backupd: {error}", file=sys.stderr)  # noqa: T201
        return EXIT_CONFIG
    except UsageError as error:
        print(f"backupd: {error}", file=sys.stderr)  # noqa: T201
        return EXIT_USAGE
    except UserError as error:
        print(f"backupd: {error}", file=sys.stderr)  # noqa: T201
        return EXIT_FAILED
    except BackupdError as error:
        logger.debug("traceback", exc_info=True)
        print(f"backupd: {error}", file=sys.stderr)  # noqa: T201
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("backupd: interrupted", file=sys.stderr)  # noqa: T201
        return 130
    except Exception as error:
        logger.debug("traceback", exc_info=True)
        print(f"backupd: internal error: {type(error).__name__}: {error}", file=sys.stderr)  # noqa: T201
        return EXIT_FAILED
