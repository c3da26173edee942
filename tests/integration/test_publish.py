"""Snapshot tags and pushing to real bare repositories (file:// and a git daemon)."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from backupd.commands.snapshot import run
from backupd.config import load_config
from backupd.simulator.server import Simulator
from backupd.snapshot.run import RunReport
from tests.gitserver import GitDaemon, bare_repository
from tests.helpers import backupd_cli as backupd
from tests.helpers import git, make_config, workspace_id

DAY1 = datetime(2026, 11, 29, 3, 0, 12, tzinfo=UTC)


def snapshot(config_path: Path, now: datetime | None = None) -> RunReport:
    clock: Callable[[], datetime] = (lambda: now) if now else (lambda: datetime.now(UTC))
    report = run(load_config(config_path), clock=clock)
    assert all(r.ok for r in report.results), [r.error for r in report.results]
    return report


@pytest.fixture
def workspace(simulator: Simulator) -> str:
    wid = workspace_id(41)
    simulator.add_workspace(wid, "ops")
    simulator.populate(wid, 10)
    return wid


def setup(
    tmp_path: Path, simulator: Simulator, wid: str, *, tags: str = "none", **remote: Any
) -> Path:
    extra: dict[str, Any] = {"history": {"tags": tags}}
    if remote:
        extra["remote"] = {"timeout": 20, **remote}
    return make_config(tmp_path, simulator, {"ops": wid}, extra=extra)


def edit(simulator: Simulator, wid: str, number: int = 0) -> None:
    simulator.modify_job(wid, sorted(simulator.jobs(wid))[number], user="carol")


def tags(repo: Path) -> dict[str, str]:
    """Tag name → commit it marks."""
    lines = git(repo, "for-each-ref", "--format=%(refname:strip=2) %(*objectname)", "refs/tags")
    return dict(line.split() for line in lines.splitlines())


def head(repo: Path, ref: str = "HEAD") -> str:
    return git(repo, "rev-parse", ref).strip()


# --- tags -------------------------------------------------------------------------------------


def test_daily_tags_mark_the_first_run_of_each_utc_day_even_without_a_commit(
    tmp_path: Path, simulator: Simulator, workspace: str
) -> None:
    config_path = setup(tmp_path, simulator, workspace, tags="daily")
    repo = tmp_path / "repo"

    assert snapshot(config_path, DAY1).tag == "snapshot/2026-11-29T0300Z"
    first = head(repo)
    edit(simulator, workspace)
    assert snapshot(config_path, DAY1 + timedelta(hours=20)).tag is None  # same UTC day
    second = head(repo)
    assert second != first
    report = snapshot(config_path, DAY1 + timedelta(days=1))  # next day, nothing changed

    assert report.results[0].commit is None
    assert report.tag == "snapshot/2026-11-30T0300Z"
    assert tags(repo) == {"snapshot/2026-11-29T0300Z": first, "snapshot/2026-11-30T0300Z": second}
    assert git(repo, "cat-file", "-t", "snapshot/2026-11-30T0300Z").strip() == "tag"
    annotation = git(
        repo,
        "tag",
        "-l",
        "--format=%(taggername)|%(taggerdate:iso-strict)|%(contents)",
        "snapshot/2026-11-30T0300Z",
    )
    assert annotation.startswith("backupd|2026-11-30T03:00:12+00:00|backupd snapshot")
    assert "prod/ops: unchanged, 10 jobs" in annotation


def test_every_tags_each_run_that_committed_and_names_stay_unique(
    tmp_path: Path, simulator: Simulator, workspace: str
) -> None:
    config_path = setup(tmp_path, simulator, workspace, tags="every")
    repo = tmp_path / "repo"

    assert snapshot(config_path, DAY1).tag == "snapshot/2026-11-29T0300Z"
    assert snapshot(config_path, DAY1 + timedelta(seconds=5)).tag is None  # nothing new
    edit(simulator, workspace)
    assert snapshot(config_path, DAY1 + timedelta(seconds=30)).tag == "snapshot/2026-11-29T0300Z-2"
    assert tags(repo)["snapshot/2026-11-29T0300Z-2"] == head(repo)
    assert len(tags(repo)) == 2
    newest = backupd("log", "-n", "1", "-c", str(config_path)).stdout
    assert newest.rstrip().endswith("[snapshot/2026-11-29T0300Z-2]")


def test_tags_none_creates_no_tag(tmp_path: Path, simulator: Simulator, workspace: str) -> None:
    config_path = setup(tmp_path, simulator, workspace)
    assert snapshot(config_path, DAY1).tag is None
    assert tags(tmp_path / "repo") == {}


# --- push -------------------------------------------------------------------------------------


def test_push_to_a_file_remote_sends_commits_and_tags(
    tmp_path: Path, simulator: Simulator, workspace: str
) -> None:
    remote = bare_repository(tmp_path / "remote.git")
    config_path = setup(
        tmp_path, simulator, workspace, tags="every", url=remote.as_uri(), branch="backup"
    )
    repo = tmp_path / "repo"

    report = snapshot(config_path, DAY1)

    assert report.push is not None and report.push.ok, report.push
    assert head(remote, "refs/heads/backup") == head(repo)
    assert tags(remote) == tags(repo) == {"snapshot/2026-11-29T0300Z": head(repo)}
    edit(simulator, workspace)
    report = snapshot(config_path, DAY1 + timedelta(hours=1))
    assert report.push is not None and report.push.ok
    assert head(remote, "refs/heads/backup") == head(repo)
    assert set(tags(remote)) == {"snapshot/2026-11-29T0300Z", "snapshot/2026-11-29T0400Z"}


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[GitDaemon]:
    served = tmp_path / "served"
    served.mkdir()
    bare_repository(served / "backup.git")
    with GitDaemon(served) as running:
        yield running


def test_unreachable_remote_keeps_commits_and_the_next_run_pushes_them(
    tmp_path: Path, simulator: Simulator, workspace: str, daemon: GitDaemon
) -> None:
    config_path = setup(tmp_path, simulator, workspace, tags="every", url=daemon.url("backup.git"))
    repo, remote = tmp_path / "repo", tmp_path / "served" / "backup.git"
    assert snapshot(config_path, DAY1).push.ok  # type: ignore[union-attr]
    assert head(remote, "refs/heads/main") == head(repo)

    daemon.stop()
    edit(simulator, workspace, 1)
    missed = snapshot(config_path, DAY1 + timedelta(hours=1))

    assert missed.results[0].commit is not None  # committed locally all the same
    assert missed.push is not None and not missed.push.ok
    assert "Connection refused" in (missed.push.error or "")
    assert head(remote, "refs/heads/main") != head(repo)

    daemon.start()
    edit(simulator, workspace, 2)
    caught_up = snapshot(config_path, DAY1 + timedelta(hours=2))

    assert caught_up.push is not None and caught_up.push.ok
    assert head(remote, "refs/heads/main") == head(repo)
    assert git(remote, "rev-list", "--count", "refs/heads/main") == git(
        repo, "rev-list", "--count", "HEAD"
    )
    assert missed.results[0].commit in git(remote, "rev-list", "refs/heads/main")
    assert tags(remote) == tags(repo) and len(tags(repo)) == 3


def test_a_remote_that_moved_ahead_is_reported_and_never_overwritten(
    tmp_path: Path, simulator: Simulator, workspace: str, daemon: GitDaemon
) -> None:
    config_path = setup(tmp_path, simulator, workspace, url=daemon.url("backup.git"))
    repo, remote = tmp_path / "repo", tmp_path / "served" / "backup.git"
    snapshot(config_path, DAY1)
    # Someone else pushes to the remote branch.
    other = tmp_path / "other"
    git(tmp_path, "clone", "-q", "-b", "main", daemon.url("backup.git"), str(other))
    (other / "NOTE.md").write_text("hand-made\n")
    git(other, "add", "NOTE.md")
    git(other, "-c", "user.name=x", "-c", "user.email=x@x", "commit", "-q", "-m", "by hand")
    git(other, "push", "-q", "origin", "HEAD:main")
    theirs = head(other)
    edit(simulator, workspace)

    report = snapshot(config_path, DAY1 + timedelta(hours=1))

    assert report.results[0].commit == head(repo)  # kept locally
    assert report.push is not None and not report.push.ok
    assert "has commits this repository does not have" in (report.push.error or "")
    assert head(remote, "refs/heads/main") == theirs  # not overwritten
    result = backupd("push", "-c", str(config_path))
    assert result.returncode == 1
    assert "never force-pushes" in result.stderr
    assert head(remote, "refs/heads/main") == theirs


def test_a_push_that_hangs_is_abandoned_after_the_timeout(
    tmp_path: Path, simulator: Simulator, workspace: str
) -> None:
    with socket.socket() as silent:  # accepts connections (backlog) and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        port = silent.getsockname()[1]
        config_path = setup(
            tmp_path, simulator, workspace, url=f"git://127.0.0.1:{port}/x.git", timeout=1
        )
        started = time.monotonic()
        report = snapshot(config_path, DAY1)
        elapsed = time.monotonic() - started

    assert report.results[0].commit is not None
    assert report.push is not None and not report.push.ok
    assert report.push.error == f"push to git://127.0.0.1:{port}/x.git timed out after 1s"
    assert elapsed < 10


def test_backupd_push_pushes_now_after_a_failed_push(
    tmp_path: Path, simulator: Simulator, workspace: str
) -> None:
    remote = tmp_path / "later.git"  # does not exist yet
    config_path = setup(tmp_path, simulator, workspace, tags="every", url=remote.as_uri())
    first = backupd("snapshot", "-c", str(config_path))
    assert first.returncode == 0, first.stderr  # the snapshot itself succeeded
    assert f"backupd: push to {remote.as_uri()} failed" in first.stderr
    assert "will retry on the next run" in first.stderr
    bare_repository(remote)

    result = backupd("push", "-c", str(config_path))

    assert result.returncode == 0, result.stderr
    assert "ref(s) updated" in result.stdout
    assert head(remote, "refs/heads/main") == head(tmp_path / "repo")
    assert tags(remote) == tags(tmp_path / "repo") and len(tags(remote)) == 1
    again = backupd("push", "-c", str(config_path))
    assert again.returncode == 0 and "already up to date" in again.stdout


def test_ssh_push_problems_are_reported_without_prompting(
    tmp_path: Path, simulator: Simulator, workspace: str
) -> None:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    url = f"ssh://git@127.0.0.1:{closed.getsockname()[1]}/backup.git"
    closed.close()
    key = tmp_path / "push_key"
    config_path = setup(tmp_path, simulator, workspace, url=url, ssh_key_file=str(key))

    missing = snapshot(config_path, DAY1).push
    assert missing is not None and not missing.ok
    assert missing.error == f"SSH key {key} does not exist or is no file"

    key.write_text("not really a key\n")
    key.chmod(0o600)
    edit(simulator, workspace)
    refused = snapshot(config_path, DAY1 + timedelta(hours=1))

    assert refused.results[0].commit is not None
    assert refused.push is not None and not refused.push.ok
    assert "Connection refused" in (refused.push.error or "")
