"""Live progress of `backupd snapshot` on a terminal (stderr): one row per workspace in flight.

    ⠹ prod/sales    exporting   ━━━━━━━━━━╸━━━━━━━━━  12/30 batches  1200/3000 jobs  0:00:41
    ⠼ prod/finance  listing     ━━━━━━━━━━━━━━━━━━━━                                 0:00:03
    prod/orders committed 3 added, 1 changed (1a2b3c4)            ← printed above, stays

A workspace gets its row when its snapshot starts (listing), counts batches and jobs while it
exports, and ends with one line printed above the live rows: ``committed …``, ``no change``
or ``FAILED: …``. Any number of workspaces may be in flight at once.

Drawn with rich (``rich.progress``): it redraws every row in place, crops them to the
terminal's width (asked again at each redraw), and knows how many lines it drew, so nothing
stale is left behind, whatever the width. Log lines and the rows do not garble each other:
while the display is live, the log handlers writing to the same stream print through rich's
console, above the rows. When stderr is not a terminal there is no display at all (see
:func:`progress_for`): only the log lines.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TextIO

from backupd.model import SnapshotObserver, SnapshotResult, WorkspaceTarget

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import TaskID

# rich is imported where a display is made: a snapshot without a terminal (a timer's, the
# usual one) does not load it (25 ms of its start).

LISTING = "listing"
EXPORTING = "exporting"
EXPORTED = "exported"  # waiting for its commit (or for the source's other workspaces)


def outcome_line(result: SnapshotResult) -> str:
    """The line a workspace ends with: ``prod/sales committed 3 added, 1 changed (1a2b3c4)``."""
    label = result.target.label
    if not result.ok:
        return f"{label} FAILED: {result.error or 'unknown error'}"
    if result.gone:
        return f"{label} gone from DataArts (its folder is kept)"
    if not result.commit:
        return f"{label} no change"
    counts = result.changed_jobs
    parts = [
        f"{count} {what}"
        for count, what in (
            (counts.added, "added"),
            (counts.changed, "changed"),
            (counts.removed, "removed"),
            (counts.renamed, "renamed"),
        )
        if count
    ]
    changes = ", ".join(parts) if parts else "scripts or resources changed"
    return f"{label} committed {changes} ({result.commit[:7]})"


class ProgressDisplay(SnapshotObserver):
    """The rows of the workspaces in flight, on ``console`` (a terminal).

    Hooks arrive from several threads at once (each workspace's own); rich's Progress is
    thread-safe and ``_lock`` keeps each workspace's row and its final line in step. Each
    hook redraws at once (a few per export call, which takes far longer): a log line
    printed next shows the rows as they are, not as rich's last timed refresh saw them.
    """

    def __init__(
        self,
        console: Console,
        *,
        clock: Callable[[], float] = time.monotonic,
        auto_refresh: bool = True,
    ) -> None:
        from rich.progress import (
            BarColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        self.console = console
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.fields[label]}"),
            TextColumn("{task.fields[phase]}"),
            BarColumn(bar_width=20),
            TextColumn("{task.fields[batches]}"),
            TextColumn("{task.fields[jobs]}"),
            TimeElapsedColumn(),
            console=console,
            # rich's own refresh thread draws outside our lock: a line printed by another
            # thread meanwhile moves the cursor by a stale height and leaves a row behind.
            # Ours (``_redraw``) draws under the lock, like everything else.
            auto_refresh=False,
            transient=True,  # the rows go when the display stops; the final lines stay
            redirect_stdout=False,  # stdout may be a pipe: it is not ours to draw on
            redirect_stderr=True,  # a stray write to stderr goes above the rows too
            get_time=clock,
        )
        # Re-entrant: a hook that ends a row prints its final line under the same lock, and
        # every line printed above the rows (log lines from other threads) takes it too.
        self._lock = threading.RLock()
        self._rows: dict[str, TaskID] = {}
        self._auto_refresh = auto_refresh
        self._stopped = threading.Event()
        self._jobs: dict[str, tuple[int, int]] = {}  # label → (exported, to export)

    # --- snapshot hooks -----------------------------------------------------------------------

    def started(self, target: WorkspaceTarget) -> None:
        with self._lock:
            self._row(target.label)
            self._progress.refresh()

    def listed(self, target: WorkspaceTarget, jobs: int, batches: int) -> None:
        with self._lock:
            row = self._row(target.label)
            self._jobs[target.label] = (0, jobs)
            self._progress.update(
                row,
                total=max(batches, 1),
                completed=0 if batches else 1,
                phase=EXPORTING if batches else EXPORTED,
                batches=f"0/{batches} batches",
                jobs=f"0/{jobs} jobs",
            )
            self._progress.refresh()

    def exported(
        self, target: WorkspaceTarget, batch: int, batches: int, jobs: int, size: int
    ) -> None:
        with self._lock:
            row = self._row(target.label)
            done, planned = self._jobs.get(target.label, (0, 0))
            done += jobs
            self._jobs[target.label] = (done, planned)
            self._progress.update(
                row,
                total=batches,
                completed=batch,
                phase=EXPORTED if batch >= batches else EXPORTING,
                batches=f"{batch}/{batches} batches",
                jobs=f"{done}/{planned} jobs",
            )
            self._progress.refresh()

    def finished(self, result: SnapshotResult) -> None:
        label = result.target.label
        with self._lock:
            row = self._rows.pop(label, None)
            self._jobs.pop(label, None)
            if row is not None:
                self._progress.remove_task(row)
            self.print(outcome_line(result))  # drawn with the rows that remain

    # --- drawing ------------------------------------------------------------------------------

    def _row(self, label: str) -> TaskID:
        row = self._rows.get(label)
        if row is None:
            row = self._progress.add_task(
                label, total=None, label=label, phase=LISTING, batches="", jobs=""
            )
            self._rows[label] = row
        return row

    def print(self, line: str) -> None:
        """A line above the rows, as written: the terminal wraps it (rich would break it up)."""
        from rich.text import Text

        with self._lock:
            self.console.print(Text(line), soft_wrap=True)

    @contextmanager
    def attached(self) -> Iterator[ProgressDisplay]:
        """Show the rows while inside; route the root logger's lines for this console's
        stream through the console (above the rows) meanwhile."""
        stream = self.console.file
        handlers = [
            handler
            for handler in logging.getLogger().handlers
            if isinstance(handler, logging.StreamHandler) and handler.stream is stream
        ]
        self._progress.start()
        self._stopped.clear()
        redraws = threading.Thread(target=self._redraw, name="progress", daemon=True)
        if self._auto_refresh:
            redraws.start()
        for handler in handlers:
            handler.setStream(_AboveTheRows(self))
        try:
            yield self
        finally:
            for handler in handlers:
                handler.setStream(stream)
            self._stopped.set()
            if redraws.is_alive():
                redraws.join()
            with self._lock:
                self._progress.stop()

    def _redraw(self) -> None:
        """The spinners and elapsed times move between hooks: a redraw every 0.1 s."""
        while not self._stopped.wait(_REDRAW_SECONDS):
            with self._lock:
                self._progress.refresh()


_REDRAW_SECONDS = 0.1


class _AboveTheRows:
    """What a log handler writes to while the rows are shown: whole lines, printed above."""

    def __init__(self, display: ProgressDisplay) -> None:
        self._display = display
        self._partial = ""

    def write(self, text: str) -> int:
        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            self._display.print(line)
        return len(text)

    def flush(self) -> None:
        pass


def interactive(stream: TextIO) -> bool:
    """Is ``stream`` a terminal that can redraw in place? (Not a pipe, a file or the journal,
    and not TERM=dumb.)"""
    try:
        terminal = stream.isatty()
    except (AttributeError, ValueError):
        return False
    return terminal and os.environ.get("TERM", "") not in ("dumb", "unknown")


def progress_for(stream: TextIO) -> ProgressDisplay | None:
    """A display when ``stream`` is a terminal, else None (log lines only).

    The decision is ours, not rich's: rich also takes FORCE_COLOR or TTY_COMPATIBLE in the
    environment for a terminal, and a CI log would fill up with redraws.
    """
    if not interactive(stream):
        return None
    from rich.console import Console

    return ProgressDisplay(Console(file=stream, force_terminal=True, highlight=False))
