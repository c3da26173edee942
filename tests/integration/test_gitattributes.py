"""The repository's .gitattributes: derived views and bookkeeping marked as generated.

Written into a new repository, added once to an existing one (in a commit of its own),
never over one that someone edited or removed; and it never changes what backupd stores.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from backupd.commands.snapshot import run_snapshots
from backupd.config import load_config
from backupd.simulator.server import Simulator
from backupd.store.gitrepo import (
    _README_BEFORE_GITATTRIBUTES,
    REPOSITORY_GITATTRIBUTES,
    REPOSITORY_README,
    GitRepo,
    Identity,
)
from backupd.store.normalise import VIEW_SUFFIXES
from tests.helpers import git, make_config, workspace_id

WS = workspace_id(71)
IDENTITY = Identity("backupd", "backupd@example.com")


def attributes(repo: Path, path: str) -> dict[str, str]:
    """``git check-attr -a`` of one path: attribute → value."""
    found = {}
    for line in git(repo, "check-attr", "-a", "--", path).splitlines():
        _path, name, value = line.rsplit(": ", 2)
        found[name] = value
    return found


def snapshot(config: Path) -> str | None:
    (result,) = run_snapshots(load_config(config))
    assert result.ok, result.error
    return result.commit


def test_a_new_repository_marks_views_and_bookkeeping_as_generated(
    tmp_path: Path, simulator: Simulator
) -> None:
    simulator.add_workspace(WS, "sales")
    simulator.populate(WS, 8)
    config = make_config(tmp_path, simulator, {"sales": WS})
    repo = tmp_path / "repo"

    snapshot(config)

    assert (repo / ".gitattributes").read_text() == REPOSITORY_GITATTRIBUTES
    first = git(repo, "rev-list", "--max-parents=0", "HEAD").strip()
    assert git(repo, "ls-tree", "--name-only", first).split() == [".gitattributes", "README.md"]
    stored = git(repo, "ls-files").splitlines()
    views = [p for p in stored if p.endswith(tuple(VIEW_SUFFIXES))]
    assert views
    for view in views:
        assert attributes(repo, view)["linguist-generated"] == "true", view
        assert attributes(repo, view).get("diff") != "unset", view  # diffable locally
    index = "prod/sales/.backupd/index.json"
    assert index in stored
    for bookkeeping in (index, "prod/.backupd/workspaces.json"):
        assert attributes(repo, bookkeeping)["linguist-generated"] == "true"
        assert attributes(repo, bookkeeping)["diff"] == "unset"
    job = next(p for p in stored if p.endswith(".job"))
    assert "linguist-generated" not in attributes(repo, job)
    # Clones keep definitions in LF line ends; backupd's own repository stores bytes as
    # they are (its .git/info/attributes), so that nothing it stores is ever converted.
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    definitions = [next(p for p in stored if p.endswith(s)) for s in (".job", ".script")]
    for path in [*definitions, "prod/sales/resources/r.resource"]:
        assert attributes(clone, path)["text"] == "set"
        assert attributes(clone, path)["eol"] == "lf"
        assert attributes(repo, path)["text"] == "unset"
    assert git(clone, "status", "--porcelain") == ""
    assert "gitattributes" in (repo / "README.md").read_text()


def test_every_view_suffix_is_marked() -> None:
    marked = {
        line.split()[0].removeprefix("*")
        for line in REPOSITORY_GITATTRIBUTES.splitlines()
        if "linguist-generated=true" in line
    }
    assert set(VIEW_SUFFIXES) <= marked


def _older_repository(path: Path) -> GitRepo:
    """A repository as an older backupd left it: its README, no .gitattributes ever."""
    path.mkdir()
    git(path, "init", "-q", "--initial-branch=main")
    (path / "README.md").write_text(_README_BEFORE_GITATTRIBUTES)
    git(path, "add", "README.md")
    git(path, "-c", "user.name=b", "-c", "user.email=b@example.com", "commit", "-q", "-m", "init")
    return GitRepo.open(path, branch="main")


def subjects(path: Path) -> list[str]:
    return git(path, "log", "--format=%s").splitlines()


def test_an_existing_repository_gets_it_once_in_a_commit_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "repo"
    repo = _older_repository(path)

    repo.prepare(IDENTITY)
    repo.prepare(IDENTITY)

    assert (path / ".gitattributes").read_text() == REPOSITORY_GITATTRIBUTES
    assert (path / "README.md").read_text() == REPOSITORY_README
    assert subjects(path) == [  # each in a commit of its own, once
        "backupd: .gitattributes: views and bookkeeping marked as generated",
        "backupd: README brought up to date",
        "init",
    ]
    assert git(path, "show", "--name-only", "--format=", "HEAD").split() == [".gitattributes"]

    # Removed on purpose afterwards: not added again.
    git(path, "rm", "-q", ".gitattributes")
    git(path, "commit", "-q", "-m", "we do not want it")
    repo.prepare(IDENTITY)
    assert not (path / ".gitattributes").exists()
    assert subjects(path)[0] == "we do not want it"


@pytest.mark.parametrize("edited", ["*.sql -linguist-generated\n", ""])
def test_a_gitattributes_someone_wrote_is_theirs(tmp_path: Path, edited: str) -> None:
    path = tmp_path / "repo"
    repo = _older_repository(path)
    (path / ".gitattributes").write_text(edited)
    git(path, "add", ".gitattributes")
    git(path, "commit", "-q", "-m", "ours")

    repo.prepare(IDENTITY)

    assert (path / ".gitattributes").read_text() == edited
    assert git(path, "log", "--format=%s", "--", ".gitattributes").splitlines() == ["ours"]


def _export_with_a_raw_job(
    simulator: Simulator, monkeypatch: pytest.MonkeyPatch, job: str, raw: bytes
) -> None:
    export_files = simulator.export_files

    def exported(workspace: str, names: Sequence[str], **options: bool) -> dict[str, bytes]:
        files = export_files(workspace, names, **options)
        files[f"jobs/{job}/{job}.job"] = raw
        return files

    monkeypatch.setattr(simulator, "export_files", exported)


def test_backupd_stores_every_file_as_exported_whatever_the_attributes_say(
    tmp_path: Path, simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    simulator.add_workspace(WS, "sales")
    simulator.populate(WS, 4)
    job = sorted(simulator.jobs(WS))[0]
    config = make_config(tmp_path, simulator, {"sales": WS})
    repo = tmp_path / "repo"
    snapshot(config)
    # A definition that does not parse is stored byte for byte, CRLF line ends included,
    # although .gitattributes asks for LF in .job files.
    raw = b'{"name": "' + job.encode() + b'",\r\n "broken": \r\n'
    _export_with_a_raw_job(simulator, monkeypatch, job, raw)
    simulator.modify_job(WS, job)

    assert snapshot(config) is not None

    path = f"prod/sales/jobs/{job}/{job}.job"
    stored = subprocess.run(
        ["git", "-C", str(repo), "cat-file", "blob", f"HEAD:{path}"],
        check=True,
        capture_output=True,
    ).stdout
    assert stored == raw
    assert (repo / path).read_bytes() == raw
    assert git(repo, "status", "--porcelain") == ""
    simulator.modify_job(WS, job)
    assert snapshot(config) is None  # the same bytes again: nothing to commit
