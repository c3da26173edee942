"""Staging folders: one private folder per workspace snapshot, named after its process, so
that leftovers of a killed process (kill -9, a power cut) are told apart and removed."""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

from backupd.logs import log

logger = logging.getLogger(__name__)


# Staging folders are named after the process that owns them, so that a later run can tell
# the leftovers of a killed process from the folders of one still working.
STAGING_PREFIX = "backupd-staging-"


_STAGING_NAME = re.compile(rf"^{re.escape(STAGING_PREFIX)}(\d+)-")


def _staging_root(root: Path | None) -> Path:
    return root if root is not None else Path(tempfile.gettempdir())


def make_staging(root: Path | None) -> Path:
    """A new, private staging folder carrying this process's id in its name."""
    base = _staging_root(root)
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=base))


def remove_stale_staging(root: Path | None) -> list[Path]:
    """Delete staging folders left by processes that no longer run (a kill -9, a power cut).

    Folders of live processes are kept, this process's own included: a daemon may be
    snapshotting another workspace right now, and several backupd may share one root.
    """
    base = _staging_root(root)
    removed: list[Path] = []
    try:
        entries = list(base.iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _STAGING_NAME.match(entry.name)
        if match is None or _process_alive(int(match[1])) or not entry.is_dir():
            continue
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    if removed:
        log(logger, "staging.cleaned", root=str(base), folders=len(removed))
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: not ours to judge
    return True
