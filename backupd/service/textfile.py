"""The Prometheus textfile a one-shot `backupd snapshot` leaves for node_exporter.

Timer-driven snapshots have no process to scrape: after each run, the state of every
configured workspace (from the status file, so workspaces a ``--workspace`` run skipped are
there too) and the run's result go to ``metrics_textfile``, which node_exporter's textfile
collector serves until the next run replaces it. Staleness is written as the moment each
workspace turns stale (``backupd_workspace_stale_after_timestamp_seconds``), so Prometheus
sees it arrive even when no run ever comes again.

The file is replaced atomically (temporary file in the same folder, fsync, rename) and made
readable by others (0644) whatever the umask: node_exporter runs as another user, and the
units' ``UMask=0077`` would otherwise hide it. (prometheus_client's ``write_to_textfile``
does the rename but leaves the mode to the umask.) The temporary name does not end in
``.prom``, so the collector never reads half a file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from backupd.config import Config
from backupd.errors import UserError
from backupd.logs import log
from backupd.model import SnapshotResult
from backupd.service.plan import schedule_of
from backupd.service.status import StatusStore, stale_after

if TYPE_CHECKING:
    from backupd.service.metrics import RunResult, WorkspaceState

logger = logging.getLogger(__name__)

TEXTFILE_MODE = 0o644


def run_result(results: Sequence[SnapshotResult] | None) -> RunResult:
    """ok: every workspace succeeded; partial: some did; failed: none did (or none ran)."""
    tried = [result for result in results or () if not result.gone]
    succeeded = sum(1 for result in tried if result.ok)
    if tried and succeeded == len(tried):
        return "ok"
    return "partial" if succeeded else "failed"


def workspace_states(config: Config, now: datetime) -> list[WorkspaceState]:
    """Every configured workspace the status file knows, with its staleness at ``now``."""
    from backupd.service.metrics import WorkspaceState  # imported late: see write_textfile

    states = []
    for label, record in sorted(StatusStore(config.status_dir).read().items()):
        spec = schedule_of(config, label)
        if spec is None:
            continue  # no longer configured: not ours to alert on
        deadline = stale_after(record, spec)
        states.append(WorkspaceState(record, deadline is not None and now > deadline, deadline))
    return states


def write_textfile(
    config: Config,
    results: Sequence[SnapshotResult] | None,
    *,
    ended: datetime,
    duration: float,
) -> bool:
    """Write ``config.metrics_textfile`` (if set) after a run; ``results`` None: the run
    could not run at all. Never raises: the snapshot itself is done; False if not written."""
    path = config.metrics_textfile
    if path is None:
        return False
    # Here, not at the top: prometheus_client takes 0.1 s to import, which every
    # `backupd snapshot` paid before its first call, textfile or not.
    from backupd.service.metrics import render_textfile

    result = run_result(results)
    try:
        text = render_textfile(
            workspace_states(config, ended), result=result, ended=ended, duration=duration
        )
        write_atomically(path, text, TEXTFILE_MODE)
    except (OSError, UserError) as error:
        log(
            logger,
            "metrics.textfile_failed",
            level=logging.ERROR,
            file=str(path),
            error=error.strerror or str(error) if isinstance(error, OSError) else str(error),
        )
        return False
    log(logger, "metrics.textfile_written", file=str(path), result=result)
    return True


def write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Replace ``path`` with ``data``: readers see the old file or the new one, never half."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        Path(temporary).replace(path)
    except BaseException:
        with contextlib.suppress(OSError):
            Path(temporary).unlink()
        raise
