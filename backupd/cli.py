"""Command line: argparse sub-commands; every error becomes one readable line and an exit code.

Exit codes: 0 ok, 1 a snapshot failed (or the repository is busy), 2 usage, 78 bad config.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from backupd import __version__
from backupd.config import load_config
from backupd.errors import BackupdError, ConfigError, CredentialError, UserError
from backupd.logs import log, setup_logging

if TYPE_CHECKING:
    from backupd.snapshot import SnapshotResult

logger = logging.getLogger("backupd")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CONFIG = 78  # EX_CONFIG from sysexits.h; systemd's RestartPreventExitStatus= uses it

DEFAULT_CONFIG = "/etc/backupd/config.yaml"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="backupd",
        description="Back up Huawei Cloud DataArts Studio (DataArts Factory) jobs into git.",
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
        "snapshot", help="snapshot every configured workspace once, then exit"
    )
    with_config(snapshot)
    snapshot.add_argument(
        "-w",
        "--workspace",
        action="append",
        default=[],
        metavar="NAME",
        help="only this workspace ('source/folder' or folder name; repeatable)",
    )
    snapshot.add_argument(
        "--allow-mass-delete",
        action="store_true",
        help="record deletions even when the service lists no jobs or more than "
        "safety.max_delete_fraction of them vanished",
    )

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
    from backupd.runner import run_snapshots

    config = load_config(args.config)
    results = run_snapshots(config, only=args.workspace, allow_mass_delete=args.allow_mass_delete)
    if args.workspace and not results:
        raise UserError(f"no configured workspace matches {', '.join(args.workspace)}")
    failed = [r.target.label for r in results if not r.ok]
    if failed:
        log(
            logger,
            "snapshot.summary",
            level=logging.ERROR,
            failed=",".join(failed),
            ok=len(results) - len(failed),
        )
        print(f"backupd: snapshot failed for {failure_report(results)}", file=sys.stderr)  # noqa: T201
        return EXIT_FAILED
    return EXIT_OK


def failure_report(results: Sequence[SnapshotResult]) -> str:
    """'prod/a, prod/b: <why>; prod/c: <why>' — failed workspaces grouped by their error."""
    by_error: dict[str, list[str]] = {}
    for result in results:
        if not result.ok:
            by_error.setdefault(result.error or "unknown error", []).append(result.target.label)
    return "; ".join(f"{', '.join(labels)}: {error}" for error, labels in by_error.items())


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
    "config": cmd_config,
    "demo": cmd_demo,
    "simulator": cmd_simulator,
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    try:
        return COMMANDS[args.command](args)
    except (ConfigError, CredentialError) as error:
        print(f"backupd: {error}", file=sys.stderr)  # noqa: T201
        return EXIT_CONFIG
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
