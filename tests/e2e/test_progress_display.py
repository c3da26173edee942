"""The progress display of `backupd snapshot` as a person sees it: the CLI on a pseudo-terminal
70 columns wide, three workspaces with ``max_parallel: 2`` against the simulator, and what it
wrote replayed through a terminal emulator (pyte) to get the final screen."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pyte

from backupd.simulator.server import Simulator
from tests.e2e.daemon_process import clean_environment
from tests.helpers import make_config, workspace_id

COLUMNS, ROWS = 70, 40
WORKSPACES = {"sales": workspace_id(61), "finance": workspace_id(62), "orders": workspace_id(63)}
JOBS = 120
# What only a progress row shows (a phase, a count of batches, a bar, a spinner frame of
# braille cells): a stale row left on the screen would contain one of them.
ROW = re.compile(r"listing|exporting|\bexported\b(?!=)| batches|[━╸\u2800-\u28ff]")


def stale_rows(screen: list[str]) -> list[str]:
    return [line for line in screen if ROW.search(line)]


def terminal_environment() -> dict[str, str]:
    environ = clean_environment({"TERM": "xterm-256color"})
    # The terminal's size is what TIOCSWINSZ says; the logging choices are the defaults.
    for name in ("COLUMNS", "LINES", "BACKUPD_LOG_LEVEL", "BACKUPD_LOG_FORMAT", "FORCE_COLOR"):
        environ.pop(name, None)
    return environ


def run_on_terminal(*args: str, timeout: float = 120) -> tuple[int, bytes]:
    """Run the CLI with stdin, stdout and stderr on a COLUMNS x ROWS pseudo-terminal."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", ROWS, COLUMNS, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "backupd", *args],
        stdin=follower,
        stdout=follower,
        stderr=follower,
        env=terminal_environment(),
        close_fds=True,
    )
    os.close(follower)
    output = bytearray()
    deadline = time.monotonic() + timeout  # a bound on a hung run, not a measurement
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # EIO: the terminal closed with the last process
                    break
                if not chunk:
                    break
                output += chunk
            elif process.poll() is not None:
                break
        code = process.wait(timeout=10)
    finally:
        os.close(leader)
        if process.poll() is None:
            process.kill()
    return code, bytes(output)


def final_screen(output: bytes) -> list[str]:
    screen = pyte.Screen(COLUMNS, ROWS)
    pyte.ByteStream(screen).feed(output)
    return [line.rstrip() for line in screen.display]


def test_every_workspace_ends_with_its_own_line_and_no_row_is_left(
    tmp_path: Path, simulator: Simulator
) -> None:
    for name, wid in WORKSPACES.items():
        simulator.add_workspace(wid, name)
        simulator.populate(wid, JOBS)
    config = make_config(
        tmp_path,
        simulator,
        WORKSPACES,
        extra_source={"batch_size": 10},
        extra={"daemon": {"max_parallel": 2}},
    )

    code, output = run_on_terminal("snapshot", "-c", str(config))
    screen = final_screen(output)
    shown = "\n".join(screen)

    assert code == 0, shown
    for name in WORKSPACES:
        ends = [line for line in screen if line.startswith(f"prod/{name} ")]
        assert len(ends) == 1, shown
        assert re.fullmatch(rf"prod/{name} committed {JOBS} added \([0-9a-f]{{7}}\)", ends[0])
    # No stale progress rows: every row was taken back, at this width too.
    assert not stale_rows(screen), shown
    # The rows were drawn (each log line redraws them below it) …
    assert b"listing" in output and b"batches" in output
    # … and log lines were kept whole between them: text, not JSON.
    assert shown.count("INFO snapshot.done workspace=prod/") == 3, shown
    assert "{" not in shown


def test_a_workspace_that_fails_ends_with_its_reason(tmp_path: Path, simulator: Simulator) -> None:
    for name, wid in WORKSPACES.items():
        simulator.add_workspace(wid, name)
        simulator.populate(wid, 5)
    config = make_config(tmp_path, simulator, WORKSPACES, extra={"daemon": {"max_parallel": 2}})
    assert run_on_terminal("snapshot", "-c", str(config))[0] == 0
    simulator.faults.forbidden_workspaces = [WORKSPACES["finance"]]

    code, output = run_on_terminal("snapshot", "-c", str(config))
    screen = final_screen(output)
    shown = "\n".join(screen)

    assert code == 1, shown
    assert any(line.startswith("prod/sales no change") for line in screen), shown
    assert any(line.startswith("prod/orders no change") for line in screen), shown
    (failed,) = [line for line in screen if line.startswith("prod/finance FAILED: ")]
    assert failed.startswith("prod/finance FAILED: list jobs: HTTP 403"), shown
    assert not stale_rows(screen), shown
