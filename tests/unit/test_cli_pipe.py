"""A BrokenPipeError is a quiet end only when stdout's own reader has gone."""

from __future__ import annotations

import argparse
import os

import pytest

from backupd import cli


def broken_pipe(args: argparse.Namespace) -> int:
    raise BrokenPipeError(32, "Broken pipe")


def test_a_broken_pipe_elsewhere_is_still_a_failure(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli, "dispatch", broken_pipe)  # e.g. a child's stdin closed early
    assert cli.main(["status", "-c", "/nonexistent"]) == 1
    assert "internal error: BrokenPipeError" in capsys.readouterr().err


def test_a_reader_that_left_is_told_apart_from_one_that_reads() -> None:
    read_end, write_end = os.pipe()
    with open(write_end, "w") as stdout:
        try:
            assert not cli.stdout_reader_gone(stdout)
        finally:
            os.close(read_end)
        assert cli.stdout_reader_gone(stdout)
