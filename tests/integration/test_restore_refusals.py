"""`backupd restore` refuses with one line and an exit code, and writes no file; its help.

In process (``backupd.cli.main``); tests/e2e/test_restore_cli.py runs a few of these as real
processes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from backupd.cli import main
from backupd.commands.snapshot import run_snapshots
from backupd.config import load_config
from backupd.simulator.server import Simulator
from tests.helpers import git, make_config, workspace_id

WID = workspace_id(4)


def two_snapshots(tmp_path: Path, simulator: Simulator) -> Path:
    """Config of a repository with two snapshots of prod/sales (2026-11-20 and -21, 03:00
    UTC); the second lacks one job of the first."""
    simulator.add_workspace(WID, "sales")
    simulator.populate(WID, 10)
    config = make_config(tmp_path, simulator, {"sales": WID})
    with pytest.MonkeyPatch.context() as monkeypatch:
        for day, change in ((20, None), (21, sorted(simulator.jobs(WID))[0])):
            if change is not None:
                simulator.delete_job(WID, change)
            monkeypatch.setenv("GIT_COMMITTER_DATE", f"2026-11-{day}T03:00:00Z")
            results = run_snapshots(load_config(config))
            assert all(r.ok for r in results)
    return config


@pytest.fixture(scope="module")
def backed_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Built once: the tests below only read the repository."""
    with Simulator() as simulator:
        yield two_snapshots(tmp_path_factory.mktemp("restore"), simulator)


def restore(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["restore", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def refused(stderr: str, out: Path) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    assert not out.exists()
    assert not list(out.parent.glob(f".{out.name}*"))  # no temporary left either
    return lines[0]


def test_deleted_job_names_the_commit_that_deleted_it(
    backed_up: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "jobs.zip"
    repo = backed_up.parent / "repo"
    latest = git(repo, "ls-tree", "--name-only", "HEAD:prod/sales/jobs").splitlines()
    first = git(repo, "ls-tree", "--name-only", "HEAD~1:prod/sales/jobs").splitlines()
    [gone] = sorted(set(first) - set(latest))
    code, _, err = restore(capsys, "-c", str(backed_up), "-j", gone, "-o", str(out))
    assert code == 1
    assert "it was deleted by commit" in refused(err, out)

    code, _, err = restore(
        capsys, "-c", str(backed_up), "-j", gone, "--at", "2026-11-20", "-o", str(out)
    )
    assert code == 1  # midnight: before the first snapshot at 03:00
    refused(err, out)
    code, _, err = restore(
        capsys, "-c", str(backed_up), "-j", gone, "--at", "2026-11-20 04:00", "-o", str(out)
    )
    assert code == 0, err
    assert out.exists()


def test_a_date_before_the_first_snapshot_is_one_line_exit_1_and_no_file(
    backed_up: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "jobs.zip"
    code, _, err = restore(capsys, "-c", str(backed_up), "--at", "2026-11-20 02:59", "-o", str(out))
    assert code == 1
    line = refused(err, out)
    assert "no snapshot of prod/sales at or before 2026-11-20 02:59:00Z" in line
    assert "the first is" in line and "2026-11-20 03:00:00Z" in line  # naive dates are UTC


@pytest.mark.parametrize(
    ("args", "code", "text"),
    [
        (["-j", "no_such_job", "-o", "OUT"], 1, "no snapshot ever held it"),
        (["--at", "2026-13-40", "-o", "OUT"], 1, "not a valid date"),
        (["--at", "nonsense-rev", "-o", "OUT"], 1, "neither a commit, a tag nor"),
        (["-w", "nowhere", "-o", "OUT"], 2, "no workspace matches"),
        (["--list", "-j", "x"], 2, "--list takes only"),
        ([], 2, "--out FILE, --import, --dry-run or --list"),
        (["--overwrite", "-o", "OUT"], 2, "--overwrite goes with --import"),
        (["--import"], 2, "restore.obs_bucket"),
    ],
)
def test_refusals(
    backed_up: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    code: int,
    text: str,
) -> None:
    out = tmp_path / "jobs.zip"
    args = [str(out) if arg == "OUT" else arg for arg in args]
    exit_code, _, err = restore(capsys, "-c", str(backed_up), *args)
    assert exit_code == code, err
    assert text in refused(err, out)


def test_help_says_naive_dates_are_utc(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["restore", "--help"])
    assert exited.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "without an offset is UTC" in text and "--with-dependents" in text
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    assert "restore" in capsys.readouterr().out
