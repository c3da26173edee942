"""`backupd workspaces`: the workspaces of every source, listed or discovered."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from backupd.config import load_config
from backupd.errors import (
    EXIT_OK,
)

if TYPE_CHECKING:
    pass


def cmd_workspaces(args: argparse.Namespace) -> int:
    from backupd.snapshot.discovery import preview
    from backupd.wiring import make_client

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
