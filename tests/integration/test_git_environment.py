"""The git processes of the repository never inherit a secret backupd holds."""

from __future__ import annotations

from pathlib import Path

import pytest

from backupd.secret import Secret
from backupd.store.gitrepo import GitRepo, Identity, git_environment
from tests.helpers import git

ME = Identity("backupd", "backupd@example.invalid")
SECRET = "gitrepo-env-secret-5c1e0b9d"


def test_local_git_commands_run_without_our_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = Secret(SECRET)  # as if the config had read it from ${BACKUPD_TEST_SK}
    monkeypatch.setenv("BACKUPD_TEST_SK", secret.reveal())
    monkeypatch.setenv("BACKUPD_TEST_PLAIN", "plain-value")
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    dump = tmp_path / "hook-environment"
    hook = hooks / "reference-transaction"  # git runs it for every ref update
    hook.write_text(f"#!/bin/sh\nenv >> '{dump}'\ncat > /dev/null\n")
    hook.chmod(0o755)

    with GitRepo.open(tmp_path / "repo", branch="main") as repo:
        repo.prepare(ME)
        git(repo.path, "config", "core.hooksPath", str(hooks))
        (repo.path / "a.txt").write_text("a\n")
        repo.stage(["a.txt"])
        assert repo.commit("add a", author=ME, committer=ME) is not None

    seen = dump.read_text()
    assert "BACKUPD_TEST_PLAIN=plain-value" in seen  # the hook did run, with our environment
    assert SECRET not in seen


def test_git_environment_adds_the_extra_variables_and_c_messages() -> None:
    environment = git_environment({"GIT_AUTHOR_NAME": "x"})
    assert environment["GIT_AUTHOR_NAME"] == "x"
    assert environment["LC_ALL"] == "C"


def test_the_repository_settings_are_made_true_at_every_open(tmp_path: Path) -> None:
    """Signing (which would block an unattended run), quoted paths and a whole-index rewrite
    per commit are turned off in the repository, also when someone turned them back on."""
    wanted = {
        "commit.gpgsign": "false",
        "core.quotepath": "false",
        "core.splitindex": "true",
        "splitindex.sharedindexexpire": "now",
    }
    with GitRepo.open(tmp_path / "repo", branch="main") as repo:
        repo.prepare(ME)
        for key, value in wanted.items():
            assert git(repo.path, "config", "--local", key).strip() == value
        git(repo.path, "config", "commit.gpgsign", "true")
        git(repo.path, "config", "--unset", "core.splitIndex")
    with GitRepo.open(tmp_path / "repo", branch="main") as repo:
        repo.prepare(ME)
        for key, value in wanted.items():
            assert git(repo.path, "config", "--local", key).strip() == value


def test_a_growing_index_leaves_one_shared_index(tmp_path: Path) -> None:
    """Each commit that grows the index by more than a fifth writes it whole (a shared index
    of the split index); the ones it replaces are removed, not left for two weeks."""
    with GitRepo.open(tmp_path / "repo", branch="main") as repo:
        repo.prepare(ME)
        for round_ in range(4):
            names = [f"r{round_}/{n}.txt" for n in range(40 * (round_ + 1))]
            for name in names:
                (repo.path / name).parent.mkdir(exist_ok=True)
                (repo.path / name).write_text(name)
            repo.stage(names)
            assert repo.commit(f"round {round_}", author=ME, committer=ME) is not None
        shared = list((repo.path / ".git").glob("sharedindex.*"))
    assert len(shared) == 1, shared
