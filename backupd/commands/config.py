"""`backupd config generate|validate`: the sample config, or a check of one."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from backupd.config import load_config
from backupd.errors import (
    EXIT_OK,
)

if TYPE_CHECKING:
    pass


def cmd_config(args: argparse.Namespace) -> int:
    if args.action == "generate":
        from backupd.config_doc import render_example

        sys.stdout.write(render_example())
        return EXIT_OK
    load_config(args.config)
    print(f"{args.config}: valid")  # noqa: T201
    return EXIT_OK
