"""The progress display driven hook by hook (no threads, no clock), rendered by a terminal
emulator (pyte) at a given width."""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pyte
import pytest
from rich.console import Console

from backupd.commands.progress import ProgressDisplay, outcome_line, progress_for
from backupd.logs import log, setup_logging
from backupd.model import JobCounts, SnapshotResult, WorkspaceTarget

SALES = WorkspaceTarget("sim", "1" * 32, "sales")
FINANCE = WorkspaceTarget("sim", "2" * 32, "finance")
ORDERS = WorkspaceTarget("sim", "3" * 32, "orders")
ROW = re.compile(r"listing|exporting|\bexported\b(?!=)| batches|[━╸\u2800-\u28ff]")


class Terminal:
    """A rich console writing into a buffer, and the screen that buffer draws."""

    def __init__(self, columns: int, rows: int = 30) -> None:
        self.columns, self.rows = columns, rows
        self.stream = io.StringIO()
        self.console = Console(
            file=self.stream, force_terminal=True, width=columns, height=rows, color_system=None
        )

    def screen(self) -> list[str]:
        """The lines on the screen that hold anything."""
        screen = pyte.Screen(self.columns, self.rows)
        pyte.Stream(screen).feed(self.stream.getvalue().replace("\n", "\r\n"))
        return [line.rstrip() for line in screen.display if line.strip()]

    def lines(self) -> list[str]:
        """The screen's lines, a line the terminal wrapped put back together."""
        lines: list[str] = []
        wrapped = False
        for line in self.screen():
            lines[-1:] = [lines[-1] + line] if wrapped else [*lines[-1:], line]
            wrapped = len(line) == self.columns
        return lines


def clock() -> float:
    return 1000.0  # a stopped clock: nothing here depends on time


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def done(target: WorkspaceTarget, **fields: object) -> SnapshotResult:
    return SnapshotResult(target, ok=True, **fields)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("result", "line"),
    [
        (
            done(SALES, commit="abc1234def", changed_jobs=JobCounts(added=3, changed=1)),
            "sim/sales committed 3 added, 1 changed (abc1234)",
        ),
        (
            done(SALES, commit="abc1234def", changed_jobs=JobCounts(removed=2)),
            "sim/sales committed 2 removed (abc1234)",
        ),
        (
            done(SALES, commit="abc1234def", changed_jobs=JobCounts(added=1, renamed=2)),
            "sim/sales committed 1 added, 2 renamed (abc1234)",
        ),
        (
            done(SALES, commit="abc1234def"),
            "sim/sales committed scripts or resources changed (abc1234)",
        ),
        (done(SALES), "sim/sales no change"),
        (done(SALES, gone=True), "sim/sales gone from DataArts (its folder is kept)"),
        (
            SnapshotResult(SALES, ok=False, error="list jobs: HTTP 403: DLF.6888"),
            "sim/sales FAILED: list jobs: HTTP 403: DLF.6888",
        ),
    ],
)
def test_outcome_lines(result: SnapshotResult, line: str) -> None:
    assert outcome_line(result) == line


@pytest.mark.parametrize("columns", [40, 70, 120])
def test_rows_per_workspace_in_flight_then_one_line_each_and_nothing_left(
    columns: int, restore_root: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    terminal = Terminal(columns)
    setup_logging("info", stream=terminal.stream)
    display = ProgressDisplay(terminal.console, clock=clock, auto_refresh=False)
    logger = logging.getLogger("backupd.test")

    with display.attached():
        display.started(SALES)
        display.started(FINANCE)
        display.listed(SALES, 3000, 30)
        display.exported(SALES, 1, 30, 100, 5000)
        log(logger, "snapshot.listed", workspace="sim/sales", jobs=3000)  # redraws the rows
        middle = terminal.screen()
        display.listed(FINANCE, 20, 1)
        display.exported(FINANCE, 1, 1, 20, 900)
        display.finished(done(FINANCE))
        display.started(ORDERS)
        for batch in range(2, 31):
            display.exported(SALES, batch, 30, 100, 5000)
        display.listed(ORDERS, 0, 0)  # an incremental snapshot with nothing to export
        counts = JobCounts(added=3, changed=1)
        display.finished(done(SALES, commit="abc1234def", changed_jobs=counts))
        display.finished(SnapshotResult(ORDERS, ok=False, error="export: HTTP 500"))
        log(logger, "snapshot.summary", level=logging.ERROR, failed="sim/orders")

    # While in flight: a row for each below the log line, within the width (cropped when
    # narrow), listing or exporting.
    assert all(len(line) <= columns for line in middle)
    rows = middle[-2:]  # below the log line
    assert "snapshot.listed" in "".join(middle[:-2])
    assert "sim/sales" in rows[0] and "sim/fina" in rows[1], middle
    if columns >= 70:
        assert "exporting" in rows[0] and "1/30 batches" in rows[0]
        assert "100/3000 jobs" in rows[0] and "listing" in rows[1]
    # At the end: the log lines and one line per workspace, no row left.
    final = terminal.lines()
    assert not [line for line in final if ROW.search(line)], final
    assert "sim/finance no change" in final
    assert "sim/sales committed 3 added, 1 changed (abc1234)" in final
    assert "sim/orders FAILED: export: HTTP 500" in final
    order = [line.split()[0] for line in final if line.startswith("sim/")]
    assert order == ["sim/finance", "sim/sales", "sim/orders"]
    assert any(" ERROR snapshot.summary failed=sim/orders" in line for line in final)


def test_a_result_for_a_workspace_that_never_started_still_gets_its_line() -> None:
    terminal = Terminal(70)
    display = ProgressDisplay(terminal.console, clock=clock, auto_refresh=False)
    with display.attached():
        display.finished(SnapshotResult(SALES, ok=False, error="credentials rejected"))
    assert terminal.screen() == ["sim/sales FAILED: credentials rejected"]


def test_no_display_unless_on_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich would take this for a terminal; we do not
    monkeypatch.setenv("TERM", "xterm")
    read_end, write_end = os.pipe()
    with open(write_end, "w") as pipe, open(tmp_path / "file", "w") as file:
        assert progress_for(pipe) is None
        assert progress_for(file) is None
    os.close(read_end)
    leader, follower = os.openpty()
    with open(follower, "w") as terminal:
        assert progress_for(terminal) is not None
        monkeypatch.setenv("TERM", "dumb")
        assert progress_for(terminal) is None
    os.close(leader)
