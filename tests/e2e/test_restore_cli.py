"""`backupd restore` as a subprocess: one line and an exit code for every refusal, no file."""

from __future__ import annotations

from pathlib import Path

import pytest

from backupd.commands.snapshot import run_snapshots
from backupd.config import load_config
from backupd.simulator.server import Simulator
from tests.e2e.test_cli import backupd
from tests.helpers import git, make_config, workspace_id

WID = workspace_id(4)


@pytest.fixture
def backed_up(tmp_path: Path, simulator: Simulator, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repository with two snapshots of prod/sales (2026-11-20 and -21, 03:00 UTC)."""
    simulator.add_workspace(WID, "sales")
    simulator.populate(WID, 10)
    config = make_config(tmp_path, simulator, {"sales": WID})
    for day, change in ((20, None), (21, sorted(simulator.jobs(WID))[0])):
        if change is not None:
            simulator.delete_job(WID, change)
        monkeypatch.setenv("GIT_COMMITTER_DATE", f"2026-11-{day}T03:00:00Z")
        results = run_snapshots(load_config(config))
        assert all(r.ok for r in results)
    return config


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


def test_deleted_job_names_the_commit_that_deleted_it(backed_up: Path, tmp_path: Path) -> None:
    out = tmp_path / "jobs.zip"
    repo = tmp_path / "repo"
    latest = git(repo, "ls-tree", "--name-only", "HEAD:prod/sales/jobs").splitlines()
    first = git(repo, "ls-tree", "--name-only", "HEAD~1:prod/sales/jobs").splitlines()
    [gone] = sorted(set(first) - set(latest))
    result = backupd("restore", "-c", str(backed_up), "-j", gone, "-o", str(out))
    assert result.returncode == 1
    assert "it was deleted by commit" in refused(result, out)

    result = backupd(
        "restore", "-c", str(backed_up), "-j", gone, "--at", "2026-11-20", "-o", str(out)
    )
    assert result.returncode == 1  # midnight: before the first snapshot at 03:00
    result = backupd(
        "restore", "-c", str(backed_up), "-j", gone, "--at", "2026-11-20 04:00", "-o", str(out)
    )
    assert result.returncode == 0, result.stderr
    assert out.exists()


def test_a_date_before_the_first_snapshot_is_one_line_exit_1_and_no_file(
    backed_up: Path, tmp_path: Path
) -> None:
    out = tmp_path / "jobs.zip"
    result = backupd("restore", "-c", str(backed_up), "--at", "2026-11-20 02:59", "-o", str(out))
    assert result.returncode == 1
    line = refused(result, out)
    assert "no snapshot of prod/sales at or before 2026-11-20 02:59:00Z" in line
    assert "the first is" in line and "2026-11-20 03:00:00Z" in line  # naive dates are UTC


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["--at", "2026-13-40", "-o", "OUT"], 1, "not a valid date"),
        (["--at", "nonsense-rev", "-o", "OUT"], 1, "neither a commit, a tag nor"),
        (["-w", "nowhere", "-o", "OUT"], 2, "no workspace matches"),
        (["--list", "-j", "x"], 2, "--list takes only"),
        ([], 2, "--out FILE, --import, --dry-run or --list"),
        (["--overwrite", "-o", "OUT"], 2, "--overwrite goes with --import"),
        (["--import"], 2, "restore.obs_bucket"),
    ],
)
def test_refusals(backed_up: Path, tmp_path: Path, args: list[str], code: int, text: str) -> None:
    out = tmp_path / "jobs.zip"
    args = [str(out) if arg == "OUT" else arg for arg in args]
    result = backupd("restore", "-c", str(backed_up), *args)
    assert result.returncode == code, result.stderr
    assert text in refused(result, out)


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


def test_help_says_naive_dates_are_utc() -> None:
    result = backupd("restore", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "without an offset is UTC" in text and "--with-dependents" in text
    assert "restore" in backupd("--help").stdout
