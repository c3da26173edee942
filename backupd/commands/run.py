"""`backupd run`: the daemon (see backupd/service/daemon.py)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from backupd.config import load_config

if TYPE_CHECKING:
    pass


def cmd_run(args: argparse.Namespace) -> int:
    from backupd.service.daemon import run_daemon

    return run_daemon(args.config, load_config(args.config))
