"""Commits show who changed what: the DataArts user who saved a job authors its change."""

from __future__ import annotations

from pathlib import Path

import pytest

from backupd.commands.snapshot import run_snapshots
from backupd.config import load_config
from backupd.simulator.server import Simulator
from tests.helpers import commit_count, git, make_config, workspace_id

AUTHORS = {"alice": {"name": "Alice Liu", "email": "alice@corp.example"}}


def snapshot(config_path: Path) -> None:
    results = run_snapshots(load_config(config_path))
    assert all(r.ok for r in results), [r.error for r in results]


def commits_since(repo: Path, base: str) -> list[dict[str, object]]:
    """Oldest first: author, committer, body and changed paths of each commit after base."""
    commits = []
    for sha in git(repo, "rev-list", "--reverse", f"{base}..HEAD").split():
        fields = git(repo, "show", "-s", "--format=%an <%ae>%x00%cn <%ce>%x00%B", sha)
        author, committer, body = fields.split("\0")
        paths = git(repo, "diff-tree", "--no-commit-id", "--name-only", "-r", "-z", sha)
        commits.append(
            {
                "author": author,
                "committer": committer,
                "body": body,
                "paths": set(paths.strip("\0").split("\0")),
            }
        )
    return commits


@pytest.fixture
def workspace(tmp_path: Path, simulator: Simulator) -> tuple[str, list[str]]:
    wid = workspace_id(31)
    simulator.add_workspace(wid, "team")
    simulator.populate(wid, 12)
    return wid, sorted(simulator.jobs(wid))


def _config(tmp_path: Path, simulator: Simulator, wid: str, **history: object) -> Path:
    return make_config(
        tmp_path, simulator, {"team": wid}, extra={"history": {"authors": AUTHORS, **history}}
    )


def _three_users_edit(simulator: Simulator, wid: str, jobs: list[str]) -> dict[str, set[str]]:
    simulator.modify_job(wid, jobs[0], user="alice")
    simulator.modify_job(wid, jobs[1], user="bob")
    simulator.modify_job(wid, jobs[2], user="alice")
    existing_script = simulator.job_scripts(wid, jobs[4])[:1]  # a new job, no new script
    simulator.add_job(wid, "carol_new_job", scripts=existing_script, user="carol")
    simulator.modify_job(wid, jobs[3], user="bob")
    return {"alice": {jobs[0], jobs[2]}, "bob": {jobs[1], jobs[3]}, "carol": {"carol_new_job"}}


def test_commit_per_author_makes_one_commit_per_user_touching_only_their_jobs(
    tmp_path: Path, simulator: Simulator, workspace: tuple[str, list[str]]
) -> None:
    wid, jobs = workspace
    config_path = _config(tmp_path, simulator, wid, commit_per_author=True)
    snapshot(config_path)
    repo = tmp_path / "repo"
    base = git(repo, "rev-parse", "HEAD").strip()
    by_user = _three_users_edit(simulator, wid, jobs)

    snapshot(config_path)

    commits = commits_since(repo, base)
    assert [c["author"] for c in commits] == [  # in the order they last saved
        "Alice Liu <alice@corp.example>",
        "carol <carol@dataarts.invalid>",
        "bob <bob@dataarts.invalid>",
    ]
    for commit, user in zip(commits, ("alice", "carol", "bob"), strict=True):
        assert commit["committer"] == "backupd <backupd@localhost>"
        touched = {p.split("/")[3] for p in commit["paths"] if "/jobs/" in p}  # type: ignore[attr-defined]
        assert touched == by_user[user]
        for job in by_user[user]:
            assert f"{job} (by {user})" in commit["body"]  # type: ignore[operator]
    assert "prod/team/.backupd/index.json" in commits[-1]["paths"]  # type: ignore[operator]
    assert git(repo, "log", "--format=%s", "--author=bob", f"{base}..HEAD").splitlines() == [
        "prod/team: 0 added, 2 changed, 0 removed"
    ]
    assert git(repo, "status", "--porcelain") == ""


def test_without_per_author_one_commit_lists_each_job_with_its_user(
    tmp_path: Path, simulator: Simulator, workspace: tuple[str, list[str]]
) -> None:
    wid, jobs = workspace
    config_path = _config(tmp_path, simulator, wid)
    snapshot(config_path)
    repo = tmp_path / "repo"
    before = commit_count(repo)
    by_user = _three_users_edit(simulator, wid, jobs)

    snapshot(config_path)

    assert commit_count(repo) == before + 1
    (commit,) = commits_since(repo, "HEAD~1")
    assert commit["author"] == "backupd <backupd@localhost>"  # several users: nobody alone
    for user, names in by_user.items():
        for job in names:
            assert f"{job} (by {user})" in commit["body"]  # type: ignore[operator]


def test_one_user_made_every_change_so_the_commit_is_theirs(
    tmp_path: Path, simulator: Simulator, workspace: tuple[str, list[str]]
) -> None:
    wid, jobs = workspace
    config_path = _config(tmp_path, simulator, wid)
    snapshot(config_path)
    repo = tmp_path / "repo"
    assert git(repo, "log", "-1", "--format=%an").strip() == "backupd"  # first import
    simulator.modify_job(wid, jobs[5], user="alice")
    simulator.add_job(wid, "alice_new", user="alice")

    snapshot(config_path)

    assert git(repo, "log", "-1", "--format=%an <%ae>|%cn").strip() == (
        "Alice Liu <alice@corp.example>|backupd"
    )


def test_changes_without_a_known_user_go_in_a_last_commit_by_backupd(
    tmp_path: Path, simulator: Simulator, workspace: tuple[str, list[str]]
) -> None:
    wid, jobs = workspace
    config_path = _config(tmp_path, simulator, wid, commit_per_author=True)
    snapshot(config_path)
    repo = tmp_path / "repo"
    base = git(repo, "rev-parse", "HEAD").strip()
    simulator.modify_job(wid, jobs[0], user="王伟")
    simulator.delete_job(wid, jobs[1])
    standalone = next(
        s
        for s in simulator.scripts(wid)
        if not any(s in simulator.job_scripts(wid, j) for j in simulator.jobs(wid))
    )
    simulator.set_script(wid, standalone, "SELECT 'edited';\n")

    snapshot(config_path)

    first, last = commits_since(repo, base)
    assert first["author"] == "王伟 <王伟@dataarts.invalid>"
    assert {p.split("/")[3] for p in first["paths"]} == {jobs[0]}  # type: ignore[attr-defined]
    assert last["author"] == "backupd <backupd@localhost>"
    assert f"prod/team/jobs/{jobs[1]}/{jobs[1]}.job" in last["paths"]  # type: ignore[operator]
    assert f"prod/team/scripts/{standalone}.script" in last["paths"]  # type: ignore[operator]
