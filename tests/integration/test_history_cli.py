"""`backupd log` and `backupd show` answer from the git history of several snapshots."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from backupd.cli import main
from backupd.commands.snapshot import run_snapshots
from backupd.config import load_config
from backupd.simulator.server import Simulator
from backupd.store.normalise import canonical_json
from tests.helpers import backupd_cli, git, make_config, workspace_id

DAYS = [f"2026-11-0{day}T10:00:00Z" for day in range(1, 6)]


class History:
    """Five snapshots a day apart; job X: added, changed (alice), untouched, changed, deleted."""

    def __init__(self, tmp_path: Path, simulator: Simulator, monkeypatch: pytest.MonkeyPatch):
        self.sales, self.finance = workspace_id(51), workspace_id(52)
        simulator.add_workspace(self.sales, "sales")
        simulator.add_workspace(self.finance, "finance")
        simulator.populate(self.sales, 8)
        simulator.populate(self.finance, 3)
        self.config = make_config(
            tmp_path, simulator, {"sales": self.sales, "finance": self.finance}
        )
        self.repo = tmp_path / "repo"
        jobs = sorted(simulator.jobs(self.sales))
        self.job, other = jobs[0], jobs[1]
        self.commits: list[str] = []
        self.contents: list[bytes] = []  # job X as the service held it at each snapshot

        def snapshot(day: int) -> None:
            # The recorded commit time is the snapshot time: pin it to the scenario's days.
            monkeypatch.setenv("GIT_COMMITTER_DATE", DAYS[day])
            monkeypatch.setenv("GIT_AUTHOR_DATE", DAYS[day])
            results = run_snapshots(load_config(self.config))
            assert all(r.ok for r in results)
            (sales,) = [r.commit for r in results if r.target.folder == "sales"]
            assert sales is not None
            self.commits.append(sales)
            definition = simulator.jobs(self.sales).get(self.job)
            self.contents.append(canonical_json(definition) if definition else b"")

        snapshot(0)
        simulator.modify_job(self.sales, self.job, user="alice")
        snapshot(1)
        simulator.modify_job(self.sales, other, user="bob")
        snapshot(2)
        simulator.modify_job(self.sales, self.job, user="carol")
        snapshot(3)
        simulator.delete_job(self.sales, self.job)
        snapshot(4)
        monkeypatch.delenv("GIT_COMMITTER_DATE")
        monkeypatch.delenv("GIT_AUTHOR_DATE")

    def process(self, *args: str) -> tuple[int, str, str]:
        """``backupd <args> -c <config>`` as a real process."""
        result = backupd_cli(*args, "-c", str(self.config))
        return result.returncode, result.stdout, result.stderr

    def main(self, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
        """The same, in this process (``backupd.cli.main``)."""
        code = main([*args, "-c", str(self.config)])
        captured = capsys.readouterr()
        return code, captured.out, captured.err


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[History]:
    """Built once: the tests below only read it."""
    with Simulator() as simulator, pytest.MonkeyPatch.context() as monkeypatch:
        yield History(tmp_path_factory.mktemp("history"), simulator, monkeypatch)


def test_log_of_a_job_lists_its_changes_with_dates_authors_and_commits(
    history: History, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = history.process("log", "--job", history.job)  # a real process, once

    assert code == 0, err
    job, c = history.job, history.commits
    assert out.splitlines() == [
        f"2026-11-05 10:00:00Z  {c[4][:10]}  backupd <backupd@localhost>  "
        f"prod/sales: {job} removed",
        f"2026-11-04 10:00:00Z  {c[3][:10]}  carol <carol@dataarts.invalid>  "
        f"prod/sales: {job} changed",
        f"2026-11-02 10:00:00Z  {c[1][:10]}  alice <alice@dataarts.invalid>  "
        f"prod/sales: {job} changed",
        f"2026-11-01 10:00:00Z  {c[0][:10]}  backupd <backupd@localhost>  prod/sales: {job} added",
    ]
    code, out, _ = history.main(capsys, "log", "--job", history.job, "-n", "1")
    assert code == 0 and len(out.splitlines()) == 1 and "removed" in out


def test_log_of_a_workspace_lists_every_snapshot_that_changed_it(
    history: History, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = history.main(capsys, "log", "--workspace", "sales")

    assert code == 0, err
    lines = out.splitlines()
    assert [line.split()[2] for line in lines] == [c[:10] for c in reversed(history.commits)]
    assert lines[2].endswith("prod/sales: 0 added, 1 changed, 0 removed")
    code, out, _ = history.main(capsys, "log", "--source", "prod", "--workspace", "finance")
    assert code == 0 and len(out.splitlines()) == 1  # its first snapshot only


def test_show_prints_the_job_as_it_was_at_a_date_or_revision(
    history: History, capsys: pytest.CaptureFixture[str]
) -> None:
    contents = history.contents
    cases = {
        "2026-11-01": contents[0],  # a date alone: the last snapshot of that day
        "2026-11-03": contents[1],  # the third snapshot did not touch the job
        "2026-11-04T09:59:59Z": contents[2],
        "2026-11-04T10:00:00Z": contents[3],
        "2026-11-04 18:00+08:00": contents[3],  # = 10:00 UTC
        history.commits[1]: contents[1],
        history.commits[0][:8]: contents[0],
    }
    assert len(set(contents[:4])) == 3  # the job really changed twice
    for at, expected in cases.items():
        code, out, err = history.main(capsys, "show", history.job, "--at", at)
        assert code == 0, (at, err)
        assert out.encode() == expected, at
        assert json.loads(out)["name"] == history.job
        assert "as of" in err
    # A real process writes the same bytes to its stdout.
    code, out, err = history.process("show", history.job, "--at", "2026-11-04 18:00+08:00")
    assert code == 0, err
    assert out.encode() == contents[3] and "as of" in err


def test_show_with_scripts_and_its_errors(
    history: History, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = history.main(capsys, "show", history.job, "--at", "2026-11-02", "--scripts")
    assert code == 0
    headers = [line for line in out.splitlines() if line.startswith("==> ")]
    assert headers[0] == f"==> prod/sales/jobs/{history.job}/{history.job}.job <=="
    stored = git(history.repo, "ls-tree", "-r", "--name-only", history.commits[1])
    in_folder = [p for p in stored.splitlines() if p.startswith(f"prod/sales/jobs/{history.job}/")]
    assert sorted(h[4:-4] for h in headers) == sorted(in_folder)

    code, _, err = history.main(capsys, "show", history.job)  # deleted by now
    assert code == 1 and "did not exist" in err
    code, _, err = history.main(capsys, "show", history.job, "--at", "2026-10-01")
    assert code == 1 and "no snapshot at or before 2026-10-01 23:59:59Z" in err
    code, _, err = history.main(capsys, "show", history.job, "--at", "no-such-rev")
    assert code == 1 and "neither a date nor a known revision" in err
    code, _, err = history.main(capsys, "show", history.job, "--workspace", "nope")
    assert code == 2 and "no workspace matches" in err
    code, _, err = history.main(capsys, "log", "--job", "never_existed")
    assert code == 1 and "no recorded change" in err
