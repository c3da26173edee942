"""`backupd restore` as a subprocess: one line and an exit code for a refusal, no file; the
list and the zip on success. (Each refusal and the help, in process:
tests/integration/test_restore_refusals.py.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from backupd.simulator.server import Simulator
from tests.e2e.test_cli import backupd
from tests.integration.test_restore_refusals import two_snapshots


@pytest.fixture(scope="module")
def backed_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Two snapshots of prod/sales (2026-11-20 and -21, 03:00 UTC), built once: the tests
    below only read the repository."""
    with Simulator() as simulator:
        yield two_snapshots(tmp_path_factory.mktemp("restore-cli"), simulator)


def refused(result: object, out: Path) -> str:
    stderr: str = result.stderr  # type: ignore[attr-defined]
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}*"))  # no temporary left either
    return lines[0]


def test_unknown_job_is_one_line_exit_1_and_no_file(backed_up: Path, tmp_path: Path) -> None:
    out = tmp_path / "jobs.zip"
    result = backupd("restore", "-c", str(backed_up), "-j", "no_such_job", "-o", str(out))
    assert result.returncode == 1
    line = refused(result, out)
    assert "no job 'no_such_job' in prod/sales" in line and "no snapshot ever held it" in line


def test_a_usage_error_is_one_line_exit_2_and_no_file(backed_up: Path, tmp_path: Path) -> None:
    out = tmp_path / "jobs.zip"
    result = backupd("restore", "-c", str(backed_up), "--overwrite", "-o", str(out))
    assert result.returncode == 2, result.stderr
    assert "--overwrite goes with --import" in refused(result, out)


def test_list_and_out_from_the_command_line(backed_up: Path, tmp_path: Path) -> None:
    result = backupd("restore", "-c", str(backed_up), "--list")
    assert result.returncode == 0, result.stderr
    assert "prod/sales: 2 restore points" in result.stdout
    assert (
        "2026-11-21 03:00:00Z" in result.stdout and "0 added, 0 changed, 1 removed" in result.stdout
    )

    out = tmp_path / "jobs.zip"
    result = backupd(
        "restore", "-c", str(backed_up), "--at", "2026-11-20T03:00:00Z", "-o", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert "jobs (10)" in result.stdout and out.stat().st_size > 0
