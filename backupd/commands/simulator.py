"""`backupd simulator`: serve the local DataArts simulator (for trying backupd out)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from backupd.errors import (
    EXIT_OK,
)

if TYPE_CHECKING:
    pass


def cmd_simulator(args: argparse.Namespace) -> int:
    from backupd.simulator.server import serve

    serve(args.port, args.host, workspaces=args.workspaces, jobs=args.jobs)
    return EXIT_OK
