"""A job renamed in DataArts reads as renamed: in the commit, to git, and in `backupd log`.

Through the real pipeline: the simulator over HTTP (``rename_job`` keeps the job's id, as
DataArts does), real git, and the command line; in the default export layout, the flat one,
and with exports that carry no job id (then the definition tells).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from backupd.commands.history import Scope, changes, renames_in
from backupd.commands.snapshot import run_snapshots
from backupd.config import load_config
from backupd.simulator.server import VARIANTS, Simulator
from backupd.store.gitrepo import GitRepo, Identity
from backupd.store.index import JobRecord, WorkspaceIndex
from backupd.store.layout import INDEX_FILE
from backupd.store.normalise import canonical_json
from backupd.store.summary import renamed_line
from tests.helpers import backupd_cli, backupd_in_process, git, make_config, workspace_id

WS = workspace_id(61)
DAYS = [f"2026-12-0{day}T10:00:00Z" for day in range(1, 4)]
NEW = "订单日报_renamed"  # the mapping stores it as it is
UNRELATED = "brand_new_job"


class Renamed:
    """Three snapshots a day apart: all jobs; OLD changed; OLD renamed to NEW while another
    job is deleted and an unrelated one added."""

    def __init__(
        self,
        tmp_path: Path,
        simulator: Simulator,
        monkeypatch: pytest.MonkeyPatch,
        layout: str,
        ids: bool,
    ) -> None:
        VARIANTS[layout].apply(simulator)
        simulator.add_workspace(WS, "sales")
        simulator.populate(WS, 6)
        if not ids:
            _export_without_ids(simulator, monkeypatch)
        self.config = make_config(tmp_path, simulator, {"sales": WS})
        self.repo = tmp_path / "repo"
        self.old, self.deleted = sorted(simulator.jobs(WS))[:2]
        self.commits: list[str] = []
        self.old_definition = b""

        def snapshot(day: int) -> None:
            monkeypatch.setenv("GIT_COMMITTER_DATE", DAYS[day])
            monkeypatch.setenv("GIT_AUTHOR_DATE", DAYS[day])
            results = run_snapshots(load_config(self.config))
            assert all(r.ok for r in results), [r.error for r in results]
            (result,) = results
            assert result.commit is not None
            self.commits.append(result.commit)

        snapshot(0)
        simulator.modify_job(WS, self.old, user="alice")
        snapshot(1)
        self.old_definition = git(self.repo, "show", f"HEAD:{self.job_file(self.old)}").encode()
        simulator.rename_job(WS, self.old, NEW, user="bob")
        simulator.delete_job(WS, self.deleted)
        simulator.add_job(WS, UNRELATED, user="carol")
        snapshot(2)
        monkeypatch.delenv("GIT_COMMITTER_DATE")
        monkeypatch.delenv("GIT_AUTHOR_DATE")

    @staticmethod
    def job_file(job: str) -> str:
        return f"prod/sales/jobs/{job}/{job}.job"

    def log(self, job: str) -> list[tuple[str, str]]:
        """(commit, what) of each line of `backupd log --job JOB`."""
        result = backupd_in_process("log", "--job", job, "-c", str(self.config))
        assert result.returncode == 0, result.stderr
        return [_commit_and_what(line) for line in result.stdout.splitlines()]


def _commit_and_what(line: str) -> tuple[str, str]:
    _time, commit, _author, what = line.split("  ", 3)
    return commit, what


def _export_without_ids(simulator: Simulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Exports whose job files carry no ``id`` (as a service version might)."""
    export_files = simulator.export_files

    def without_ids(workspace: str, names: Sequence[str], **options: bool) -> dict[str, bytes]:
        files = export_files(workspace, names, **options)
        for path, content in files.items():
            if path.endswith(".job"):
                definition = json.loads(content)
                definition.pop("id", None)
                files[path] = json.dumps(definition, ensure_ascii=False).encode()
        return files

    monkeypatch.setattr(simulator, "export_files", without_ids)


@pytest.fixture(
    scope="module",
    params=[("folders", True), ("flat", True), ("folders", False)],
    ids=["folders", "flat", "folders-without-ids"],
)
def renamed(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Renamed]:
    """Built once per layout: the tests below only read it."""
    layout, ids = request.param
    with Simulator() as simulator, pytest.MonkeyPatch.context() as monkeypatch:
        yield Renamed(tmp_path_factory.mktemp("renamed"), simulator, monkeypatch, layout, ids)


def test_the_commit_names_the_rename_and_pairs_nothing_else(renamed: Renamed) -> None:
    message = git(renamed.repo, "log", "-1", "--format=%B", renamed.commits[2])
    lines = message.splitlines()

    assert lines[0] == "prod/sales: 1 added, 0 changed, 1 removed, 1 renamed"
    assert f"renamed: {renamed.old} → {NEW} (by bob)" in lines
    assert f"  + {UNRELATED} (by carol)" in lines  # deleted + added: not a rename
    assert f"  - {renamed.deleted}" in lines
    assert sum(line.startswith("renamed: ") for line in lines) == 1


def test_git_sees_the_renamed_files_and_follows_the_job_across_the_rename(
    renamed: Renamed,
) -> None:
    old_file, new_file = renamed.job_file(renamed.old), renamed.job_file(NEW)
    followed = git(
        renamed.repo, "log", "--follow", "--name-status", "--format=commit %H", "--", new_file
    )
    commits = [line.split()[1] for line in followed.splitlines() if line.startswith("commit ")]
    assert commits == list(reversed(renamed.commits))
    (rename,) = [line for line in followed.splitlines() if line.startswith("R")]
    assert rename.split("\t")[1:] == [old_file, new_file]
    # The files beside it (its scripts and their views) moved with it, unchanged.
    shown = git(renamed.repo, "show", "-M", "--name-status", "--format=", renamed.commits[2])
    renames = [line.split("\t") for line in shown.splitlines() if line.startswith("R")]
    moved = {new: (status, old) for status, old, new in renames}
    assert moved.pop(new_file)[1] == old_file
    folder = f"prod/sales/jobs/{NEW}/"
    assert all(new.startswith(folder) and status == "R100" for new, (status, _) in moved.items())
    beside = git(renamed.repo, "ls-tree", "--name-only", renamed.commits[2], folder)
    assert len(moved) == len(beside.split()) - 1


def test_log_of_the_new_name_goes_on_with_the_history_of_the_old_one(renamed: Renamed) -> None:
    c = [commit[:10] for commit in renamed.commits]
    old = renamed.old

    assert renamed.log(NEW) == [
        (c[2], f"prod/sales: {NEW} renamed from {old}"),
        (c[1], f"prod/sales: {old} changed"),
        (c[0], f"prod/sales: {old} added"),
    ]
    assert renamed.log(old) == [
        (c[2], f"prod/sales: {old} renamed to {NEW}"),
        (c[1], f"prod/sales: {old} changed"),
        (c[0], f"prod/sales: {old} added"),
    ]
    assert renamed.log(UNRELATED) == [(c[2], f"prod/sales: {UNRELATED} added")]
    assert renamed.log(renamed.deleted) == [
        (c[2], f"prod/sales: {renamed.deleted} removed"),
        (c[0], f"prod/sales: {renamed.deleted} added"),
    ]


def test_show_at_a_time_before_the_rename_finds_the_job_under_its_name_then(
    renamed: Renamed,
) -> None:
    result = backupd_cli("show", NEW, "--at", DAYS[1], "-c", str(renamed.config))

    assert result.returncode == 0, result.stderr
    assert result.stdout.encode() == renamed.old_definition
    assert json.loads(result.stdout)["name"] == renamed.old
    assert f"then named {renamed.old}" in result.stderr


IDENTITY = Identity("backupd", "backupd@localhost")


def _commit_workspace(repo: GitRepo, jobs: dict[str, bytes], message: str) -> str:
    """Commit workspace p/w holding exactly ``jobs`` (name → .job content) and its index."""
    folder = repo.path / "p" / "w"
    for stale in repo.tracked_files("p/w"):
        (repo.path / stale).unlink()
    for name, content in jobs.items():
        (folder / "jobs" / name).mkdir(parents=True, exist_ok=True)
        (folder / "jobs" / name / f"{name}.job").write_bytes(content)
    index = WorkspaceIndex(jobs={name: JobRecord(job_type="BATCH") for name in jobs})
    (folder / INDEX_FILE).parent.mkdir(parents=True, exist_ok=True)
    (folder / INDEX_FILE).write_bytes(index.to_bytes())
    paths = {*repo.tracked_files("p/w"), f"p/w/{INDEX_FILE}"}
    paths |= {f"p/w/jobs/{name}/{name}.job" for name in jobs}
    repo.stage(sorted(paths))
    sha = repo.commit(message, author=IDENTITY, committer=IDENTITY)
    assert sha is not None
    return sha


def _job(name: str, job_id: int) -> bytes:
    return canonical_json({"id": job_id, "name": name, "nodes": []})


def test_the_history_reads_renames_of_awkward_names_and_of_lists_cut_short(
    tmp_path: Path,
) -> None:
    repo = GitRepo.open(tmp_path / "repo", branch="main")
    repo.prepare(IDENTITY)
    old, new = "x → y", "y (by z)"  # what a rename line holds, inside names
    _commit_workspace(repo, {old: _job(old, 1), "keep": _job("keep", 2)}, "p/w: first\n")
    listed = _commit_workspace(
        repo,
        {new: _job(new, 1), "keep": _job("keep", 2)},
        f"p/w: 0 added, 0 changed, 0 removed, 1 renamed\n\n{renamed_line(old, new)} (by bob)\n",
    )
    assert renames_in(repo, listed, "p/w") == [(old, new)]
    assert renames_in(repo, listed, "p/other") == []

    cut = _commit_workspace(  # a list cut short: the job files decide, ids first
        repo,
        {"n1": _job("n1", 1), "n2": _job("n2", 2)},
        "p/w: 0 added, 0 changed, 0 removed, 2 renamed\n\nrenamed: … and 2 more\n",
    )
    assert renames_in(repo, cut, "p/w") == [("keep", "n2"), (new, "n1")]

    scope = Scope(("p/w",), "n1")
    assert [(c.what, c.job) for c in changes(repo, scope)] == [
        (f"renamed from {new}", None),
        (f"renamed from {old}", new),
        ("added", old),
    ]
