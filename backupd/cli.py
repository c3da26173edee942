"""Command line: argparse sub-commands; every error becomes one readable line and an exit code.

Exit codes: 0 ok, 1 a snapshot/restore failed (or the repository is busy), 2 usage, 3 a
snapshot committed but partial, 78 bad config or credentials (unreadable, or rejected by the
service).
"""

from __future__ import annotations

import argparse
import gc
import importlib
import logging
import os
import select
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from backupd import version
from backupd.errors import (
    EXIT_CONFIG,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    BackupdError,
    ClockSkewError,
    ConfigError,
    CredentialError,
    CredentialsRejected,
    UsageError,
    UserError,
)
from backupd.logs import LOG_FORMATS, LOG_LEVELS, problem, setup_logging
from backupd.snapshot.memory import configure_malloc

if TYPE_CHECKING:
    pass

logger = logging.getLogger("backupd")


DEFAULT_CONFIG = "/etc/backupd/config.yaml"


def add_output_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """--log-level, --log-format, -v and -q. ``defaults``: the top-level parser's copy; the
    sub-commands' copies leave the namespace alone unless given (argparse.SUPPRESS), so the
    one given wins, before or after the sub-command, and the last one given if both."""

    def default(value: str) -> str:
        return value if defaults else argparse.SUPPRESS

    group = parser.add_argument_group("output options (before or after COMMAND)")
    group.add_argument(
        "--log-level",
        default=default(os.environ.get("BACKUPD_LOG_LEVEL", "info")),
        choices=LOG_LEVELS,
        help="log verbosity (default: info, or $BACKUPD_LOG_LEVEL)",
    )
    group.add_argument(
        "-v",
        "--verbose",
        dest="log_level",
        action="store_const",
        const="debug",
        default=argparse.SUPPRESS,
        help="log everything (--log-level debug)",
    )
    group.add_argument(
        "-q",
        "--quiet",
        dest="log_level",
        action="store_const",
        const="warning",
        default=argparse.SUPPRESS,
        help="log warnings and errors only (--log-level warning)",
    )
    group.add_argument(
        "--log-format",
        default=default(os.environ.get("BACKUPD_LOG_FORMAT", "text")),
        choices=LOG_FORMATS,
        help="text: 'LEVEL event key=value …' lines (under journald with priority prefixes, "
        "for journalctl -p); json: one JSON object per line (default: text, or "
        "$BACKUPD_LOG_FORMAT)",
    )


class _ShowVersion(argparse.Action):
    """``--version``: argparse's own, with the version read only when it is asked for."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS) -> None:
        super().__init__(
            option_strings,
            dest,
            nargs=0,
            default=argparse.SUPPRESS,
            help="show the version and exit",
        )

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        sys.stdout.write(f"backupd {version()}\n")
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="backupd",
        description="Back up Huawei Cloud DataArts Studio (DataArts Factory) jobs into git.",
        epilog="Exit codes: 0 ok, 1 a snapshot failed, 2 usage error, 3 a snapshot committed "
        "but partial (named items not recorded), 78 configuration or "
        "credential error (including credentials the service rejected).",
    )
    parser.add_argument("--version", action=_ShowVersion)
    add_output_options(parser, defaults=True)
    # Every sub-command takes the same options after its name too (`backupd snapshot -v`).
    shared = argparse.ArgumentParser(add_help=False)
    add_output_options(shared, defaults=False)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add_command(name: str, **kwargs: Any) -> argparse.ArgumentParser:
        return commands.add_parser(name, parents=[shared], **kwargs)

    def with_config(sub: argparse.ArgumentParser) -> None:
        sub.add_argument(
            "-c",
            "--config",
            type=Path,
            default=Path(os.environ.get("BACKUPD_CONFIG", DEFAULT_CONFIG)),
            help=f"config file (default: $BACKUPD_CONFIG or {DEFAULT_CONFIG})",
        )

    snapshot = add_command(
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

    restore = add_command(
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
    check = add_command(
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
    status = add_command(
        "status",
        help="the last snapshot of every workspace (from the status file); STALE when its "
        "last success is older than twice its schedule's period",
        description="Show, per workspace, the last attempt and success, duration, jobs, "
        "changes, last commit and last error, as recorded by `backupd snapshot` and `backupd "
        "run`. A workspace is STALE when its last success is older than twice the period of "
        "its schedule (for cron: the longest gap between runs). Reads only; no API call. "
        "Exit code 1 when a workspace is stale or has never run (NEVER RUN).",
    )
    with_config(status)
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    run = add_command(
        "run",
        help="run as a daemon: snapshot each workspace on its schedule until stopped",
        description="Snapshot each workspace on its schedule (config 'schedule:', 'daemon:') "
        "until SIGTERM or SIGINT, which let a running commit finish. SIGHUP reloads the "
        "config (an invalid one is logged and the running one kept). Holds the repository "
        "lock while it runs. Under systemd (Type=notify) it reports READY, STATUS, RELOADING "
        "and STOPPING and feeds the watchdog.",
    )
    with_config(run)
    push = add_command("push", help="push commits and snapshot tags to the configured remote now")
    with_config(push)

    def with_scope(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--source", metavar="S", help="only this source (config name)")
        sub.add_argument(
            "--workspace",
            metavar="W",
            help="only this workspace (folder, id, DataArts name or S/folder)",
        )

    history_log = add_command(
        "log", help="list the recorded changes of a job or workspace: date, author, commit"
    )
    with_config(history_log)
    with_scope(history_log)
    history_log.add_argument("--job", metavar="J", help="only the changes of this job")
    history_log.add_argument(
        "-n", "--max-count", type=int, metavar="N", help="show at most N changes (newest first)"
    )

    show = add_command("show", help="print a job's .job file as it was at a date or commit")
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
    workspaces = add_command(
        "workspaces",
        help="show the workspaces each source backs up: discovered or configured, included "
        "or not and why (changes nothing)",
    )
    with_config(workspaces)

    config_command = add_command("config", help="generate or validate a config file")
    config_actions = config_command.add_subparsers(dest="action", metavar="ACTION", required=True)
    config_actions.add_parser(
        "generate",
        parents=[shared],
        help="print a complete commented sample config (config.example.yaml)",
    )
    validate = config_actions.add_parser(
        "validate", parents=[shared], help="check a config file and exit"
    )
    with_config(validate)

    demo = add_command(
        "demo", help="run a local simulator, snapshot it twice and show the git history"
    )
    demo.add_argument(
        "directory",
        nargs="?",
        type=Path,
        default=Path("backupd-demo"),
        help="empty folder for the demo repository (default: ./backupd-demo)",
    )

    simulator = add_command(
        "simulator", help="serve a local DataArts Studio simulator (for trying backupd out)"
    )
    simulator.add_argument("--port", type=int, default=8080, help="TCP port (default 8080)")
    simulator.add_argument("--host", default="127.0.0.1", help="address (default 127.0.0.1)")
    simulator.add_argument("--jobs", type=int, default=20, help="jobs per workspace")
    simulator.add_argument("--workspaces", type=int, default=2, help="number of workspaces")

    # --- install-units (backupd/commands/install.py) ---
    install_units = add_command(
        "install-units",
        help="write the systemd units (daemon, timer, per-instance templates) and the "
        "credential drop-ins, running the backupd installed here",
        description="Write the shipped systemd units, with ExecStart= naming PREFIX/bin/backupd, "
        "and a drop-in per service loading the credentials of --auth (and --push-key) from "
        "/etc/backupd/credentials/ (per instance: /etc/backupd/credentials/NAME/). Then run "
        "`systemctl daemon-reload` and enable a unit.",
    )
    install_units.add_argument(
        "--prefix",
        type=Path,
        default=Path(sys.prefix),
        help=f"the venv or prefix whose bin/backupd the units run (default: this one, "
        f"{sys.prefix})",
    )
    install_units.add_argument(
        "--dest",
        type=Path,
        default=Path("/etc/systemd/system"),
        help="folder for the units (default: /etc/systemd/system)",
    )
    install_units.add_argument(
        "--auth",
        choices=["aksk", "password", "token"],
        default="aksk",
        help="credential the services load: aksk = dlf-sk, password = dlf-password, "
        "token = dlf-token (default: aksk)",
    )
    install_units.add_argument(
        "--push-key", action="store_true", help="also load the SSH push key (push-key)"
    )
    install_units.add_argument(
        "--print",
        dest="print_units",
        action="store_true",
        help="print the files instead of writing them",
    )
    return parser


# Sub-command → module under backupd.commands with a ``cmd_<name>(args) -> int``. Imported
# when run, so `backupd status` never loads the scheduler or the HTTP stack.
COMMANDS = {
    "snapshot": "snapshot",
    "restore": "restore",
    "run": "run",
    "check": "check",
    "status": "status",
    "push": "push",
    "log": "history",
    "show": "history",
    "workspaces": "workspaces",
    "config": "config",
    "demo": "demo",
    "simulator": "simulator",
    "install-units": "install",
}


def dispatch(args: argparse.Namespace) -> int:
    module = importlib.import_module(f"backupd.commands.{COMMANDS[args.command]}")
    name = args.command.replace("-", "_")  # install-units → cmd_install_units
    command: Callable[[argparse.Namespace], int] = getattr(module, f"cmd_{name}")
    return command(args)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Defaults from the environment are not checked by argparse's choices.
    if args.log_level not in LOG_LEVELS:
        parser.error(f"BACKUPD_LOG_LEVEL: invalid choice: {args.log_level!r}")
    if args.log_format not in LOG_FORMATS:
        parser.error(f"BACKUPD_LOG_FORMAT: invalid choice: {args.log_format!r}")
    setup_logging(args.log_level, args.log_format)
    configure_malloc()
    try:
        code = run_command(args)
        sys.stdout.flush()  # here, where a closed pipe can still be told apart
    except BrokenPipeError:
        return reader_went_away()
    return code


def process_main() -> int:
    """:func:`main` as the whole process (``backupd``, ``python -m backupd``), which ends with
    it: the objects left are frozen out of the collector, so that the interpreter's exit
    does not search them for garbage (60-100 ms after a snapshot of 10,000 jobs, measured;
    2-14 ms frozen). Not in :func:`main`, which tests call in their own process."""
    code = main()
    gc.freeze()
    return code


def stdout_reader_gone(stdout: TextIO | None = None) -> bool:
    """Is stdout a pipe (or socket) whose reader has closed it? (Linux reports POLLERR on the
    writing end of a pipe that has no reader left.) A BrokenPipeError from anything else — a
    child's stdin, say — is a failure like any other, not a reader that had enough."""
    try:
        poller = select.poll()
        poller.register((stdout or sys.stdout).fileno(), select.POLLOUT)
        events = poller.poll(0)
    except (OSError, ValueError, AttributeError):
        return False
    return any(event & (select.POLLERR | select.POLLHUP) for _, event in events)


def reader_went_away() -> int:
    """stdout's reader closed the pipe (`backupd status | head -1`): what it read is all it
    wanted, which is no failure. Python's recipe: point stdout at /dev/null, so that the
    flush at exit has nowhere to fail, and end without a word."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a file descriptor (embedded use)
        pass
    finally:
        os.close(devnull)
    return EXIT_OK


def run_command(args: argparse.Namespace) -> int:
    """Dispatch; every error becomes one line on stderr and an exit code."""
    try:
        return dispatch(args)
    except BrokenPipeError as error:
        if stdout_reader_gone():
            raise  # main ends quietly
        logger.debug("traceback", exc_info=True)
        return internal_error(error)
    except ClockSkewError as error:
        problem(f"clock problem: {error}")
        return EXIT_FAILED
    except (ConfigError, CredentialError, CredentialsRejected) as error:
        problem(str(error))
        return EXIT_CONFIG
    except UsageError as error:
        problem(str(error))
        return EXIT_USAGE
    except UserError as error:
        problem(str(error))
        return EXIT_FAILED
    except BackupdError as error:
        logger.debug("traceback", exc_info=True)
        problem(str(error))
        return EXIT_FAILED
    except KeyboardInterrupt:
        problem("interrupted", level=logging.WARNING)
        return 130
    except Exception as error:
        logger.debug("traceback", exc_info=True)
        return internal_error(error)


def internal_error(error: Exception) -> int:
    problem(f"internal error: {type(error).__name__}: {error}")
    return EXIT_FAILED
