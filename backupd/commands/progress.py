"""A progress bar per workspace for `backupd snapshot` on a terminal (stderr).

    prod/sales    [##########..........]  3/6 batches  300/600 jobs  42 jobs/s

Standard library only: one line redrawn with a carriage return is all it takes, and
rich/tqdm would bring their own idea of the terminal and of logging. Log lines still appear:
while the bar is attached it wraps the log handlers' stream, clearing the bar before a log
line and drawing it again after. When stderr is not a terminal, there is no bar at all (see
:func:`progress_for`): only the log lines.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TextIO

from backupd.model import SnapshotObserver, SnapshotResult, WorkspaceTarget

CLEAR_LINE = "\r\x1b[K"
REDRAW_EVERY = 0.1  # seconds: often enough to look alive, rarely enough to cost nothing
BAR_WIDTH = 20


@dataclass
class _Line:
    label: str
    jobs: int
    batches: int
    started: float
    done_batches: int = 0
    done_jobs: int = 0


def render(line: _Line, now: float, outcome: str | None = None) -> str:
    """The text of one bar (no line ending)."""
    share = line.done_batches / line.batches if line.batches else 1.0
    filled = round(share * BAR_WIDTH)
    bar = "#" * filled + "." * (BAR_WIDTH - filled)
    elapsed = max(now - line.started, 1e-6)
    rate = line.done_jobs / elapsed
    text = (
        f"{line.label}  [{bar}]  {line.done_batches}/{line.batches} batches  "
        f"{line.done_jobs}/{line.jobs} jobs  {rate:.0f} jobs/s"
    )
    return f"{text}  {outcome}" if outcome else text


class ProgressBar(SnapshotObserver):
    """Draws the current workspace's bar on ``stream`` (a terminal)."""

    def __init__(self, stream: TextIO, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._stream = stream
        self._clock = clock
        self._lock = threading.RLock()
        self._line: _Line | None = None
        self._shown = False  # is a bar on the screen now (cursor at its end)?
        self._drawn_at = 0.0

    # --- snapshot hooks -----------------------------------------------------------------------

    def listed(self, target: WorkspaceTarget, jobs: int, batches: int) -> None:
        with self._lock:
            self._line = _Line(target.label, jobs, batches, self._clock())
            self._draw(force=True)

    def exported(
        self, target: WorkspaceTarget, batch: int, batches: int, jobs: int, size: int
    ) -> None:
        with self._lock:
            line = self._line
            if line is None or line.label != target.label:
                return
            line.done_batches = batch
            line.done_jobs += jobs
            self._draw(force=batch == batches)

    def finished(self, result: SnapshotResult) -> None:
        with self._lock:
            line = self._line
            if line is None or line.label != result.target.label:
                return  # never listed (failed before): the log line says why
            if not result.ok:
                outcome = "FAILED"
            elif result.commit:
                outcome = f"committed {result.commit[:10]}"
            else:
                outcome = "no change"
            self._clear()
            self._stream.write(render(line, self._clock(), outcome) + "\n")
            self._stream.flush()
            self._line = None

    # --- drawing ------------------------------------------------------------------------------

    def _draw(self, *, force: bool) -> None:
        now = self._clock()
        if self._line is None or (not force and now - self._drawn_at < REDRAW_EVERY):
            return
        self._stream.write(CLEAR_LINE + render(self._line, now))
        self._stream.flush()
        self._shown = True
        self._drawn_at = now

    def _clear(self) -> None:
        if self._shown:
            self._stream.write(CLEAR_LINE)
            self._shown = False

    def write_through(self, text: str, write: Callable[[str], object]) -> None:
        """Write a log line without tearing the bar: clear it, write, draw it again."""
        with self._lock:
            self._clear()
            write(text)
            if text.endswith("\n"):
                self._draw(force=True)

    @contextmanager
    def attached(self) -> Iterator[ProgressBar]:
        """Route the root logger's output to this stream through the bar while inside."""
        handlers = [
            handler
            for handler in logging.getLogger().handlers
            if isinstance(handler, logging.StreamHandler) and handler.stream is self._stream
        ]
        for handler in handlers:
            handler.setStream(_BarAwareStream(self._stream, self))  # type: ignore[arg-type]
        try:
            yield self
        finally:
            for handler in handlers:
                handler.setStream(self._stream)
            with self._lock:
                self._clear()
                self._stream.flush()


class _BarAwareStream:
    """What a log handler writes to while a bar is shown."""

    def __init__(self, stream: TextIO, bar: ProgressBar) -> None:
        self._stream = stream
        self._bar = bar

    def write(self, text: str) -> int:
        self._bar.write_through(text, self._stream.write)
        return len(text)

    def flush(self) -> None:
        self._stream.flush()


def progress_for(stream: TextIO) -> ProgressBar | None:
    """A bar when ``stream`` is a terminal, else None (log lines only)."""
    try:
        interactive = stream.isatty()
    except (AttributeError, ValueError):
        interactive = False
    return ProgressBar(stream) if interactive else None
