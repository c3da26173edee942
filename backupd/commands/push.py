"""`backupd push`: push the snapshot commits and tags to the configured remote now."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from backupd.config import load_config
from backupd.errors import (
    EXIT_FAILED,
    EXIT_OK,
    ConfigError,
)

if TYPE_CHECKING:
    pass


def cmd_push(args: argparse.Namespace) -> int:
    from backupd.snapshot.publish import push_snapshots
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
