"""What surrounds one `backupd snapshot` run for monitoring: the heartbeat pings and the
node_exporter textfile, the timer-mode counterparts of the daemon's /metrics.

Used as ``with reported_run(config) as run: ...; run.results = report.results``: the start
ping goes out on entry; on exit — whether the run returned, failed or raised — the textfile
is written and the success or failure ping sent. Neither can fail the snapshot.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from backupd.config import Config
from backupd.model import SnapshotResult
from backupd.service.heartbeat import Heartbeat
from backupd.service.textfile import run_result, write_textfile


@dataclass
class RunOutcome:
    """Filled in by the caller once the run returned (None: it raised)."""

    results: Sequence[SnapshotResult] | None = None


def summary(results: Sequence[SnapshotResult] | None) -> str:
    """The heartbeat's body: one line per workspace (errors carry no secrets)."""
    if results is None:
        return "backupd snapshot could not run (see its log)\n"
    lines = []
    for result in results:
        label = result.target.label
        if result.gone:
            lines.append(f"{label}: gone (no longer listed by DataArts)")
        elif result.ok:
            lines.append(f"{label}: ok, {result.jobs} jobs, {result.duration:.1f}s")
        else:
            lines.append(f"{label}: FAILED: {result.error or 'unknown error'}")
    return "\n".join(lines) + "\n"


@contextmanager
def reported_run(config: Config) -> Iterator[RunOutcome]:
    heartbeat = Heartbeat(config.heartbeat)
    heartbeat.start()
    started = time.monotonic()
    outcome = RunOutcome()
    try:
        yield outcome
    finally:
        ended = datetime.now(UTC)
        write_textfile(config, outcome.results, ended=ended, duration=time.monotonic() - started)
        heartbeat.finish(run_result(outcome.results) == "ok", summary(outcome.results))
