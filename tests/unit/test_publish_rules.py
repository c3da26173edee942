"""Pure rules of tagging and pushing: tag names and periods, push environment and answers."""

from __future__ import annotations

import shlex
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from backupd.store.gitrepo import PushOutput
from backupd.store.remote import interpret, push_environment, redact_url, refspecs, ssh_command
from backupd.store.tags import tag_due, tag_name

SUNDAY = datetime(2026, 11, 29, 23, 59, tzinfo=UTC)


def test_tag_names_are_utc_minutes_and_unique() -> None:
    local = datetime(2026, 11, 29, 11, 0, 59, tzinfo=timezone(timedelta(hours=8)))
    assert tag_name(local) == "snapshot/2026-11-29T0300Z"
    taken = {"snapshot/2026-11-29T0300Z", "snapshot/2026-11-29T0300Z-2"}
    assert tag_name(local, taken) == "snapshot/2026-11-29T0300Z-3"


@pytest.mark.parametrize(
    ("policy", "last", "now", "head_tagged", "due"),
    [
        ("none", None, SUNDAY, False, False),
        ("every", SUNDAY, SUNDAY, False, True),
        ("every", None, SUNDAY, True, False),
        ("daily", None, SUNDAY, True, True),
        ("daily", SUNDAY - timedelta(hours=23), SUNDAY, False, False),
        ("daily", SUNDAY, SUNDAY + timedelta(minutes=1), True, True),  # next UTC day
        ("weekly", SUNDAY - timedelta(days=6), SUNDAY, False, False),  # Monday .. Sunday
        ("weekly", SUNDAY, SUNDAY + timedelta(minutes=1), True, True),  # Monday: new week
        ("weekly", SUNDAY + timedelta(days=7), SUNDAY + timedelta(days=1), True, False),
    ],
)
def test_tag_due(
    policy: str, last: datetime | None, now: datetime, head_tagged: bool, due: bool
) -> None:
    assert tag_due(policy, now, last, head_tagged=head_tagged) is due  # type: ignore[arg-type]


def test_push_never_forces_and_sends_branch_and_snapshot_tags() -> None:
    assert refspecs("main", "backup") == [
        "refs/heads/main:refs/heads/backup",
        "refs/tags/snapshot/*:refs/tags/snapshot/*",
    ]
    assert not any(spec.startswith("+") for spec in refspecs("main", "main"))


def test_ssh_command_offers_only_the_key_and_never_prompts() -> None:
    command = shlex.split(ssh_command(Path("/etc/backupd/my key"), 120))
    assert command[:3] == ["ssh", "-i", "/etc/backupd/my key"]
    assert "IdentitiesOnly=yes" in command and "BatchMode=yes" in command
    assert "ConnectTimeout=30" in command
    assert "-i" not in shlex.split(ssh_command(None, 5))
    environment = push_environment({"PATH": "/bin"}, None, 5)
    assert environment["GIT_TERMINAL_PROMPT"] == "0"
    assert environment["PATH"] == "/bin"
    assert "BatchMode=yes" in environment["GIT_SSH_COMMAND"]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:s3cret@git.example.com/a.git", "https://***@git.example.com/a.git"),
        ("https://ghp_token@git.example.com/a.git", "https://***@git.example.com/a.git"),
        ("ssh://git:pw@host:22/a.git", "ssh://git:***@host:22/a.git"),
        ("ssh://git@host/a.git", "ssh://git@host/a.git"),
        ("git@host:team/a.git", "git@host:team/a.git"),
        ("file:///srv/a.git", "file:///srv/a.git"),
    ],
)
def test_urls_are_shown_without_secrets(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_a_rejected_branch_is_explained_as_a_remote_that_moved_ahead() -> None:
    stdout = (
        "To git://h/r.git\n"
        "=\trefs/tags/snapshot/a:refs/tags/snapshot/a\t[up to date]\n"
        "!\trefs/heads/main:refs/heads/main\t[rejected] (fetch first)\n"
        "!\trefs/tags/snapshot/b:refs/tags/snapshot/b\t[rejected] (atomic push failed)\n"
        "Done\n"
    )
    result = interpret(PushOutput(1, stdout, "hint: pull first\n"), "git://h/r.git", "main", 9)
    assert not result.ok
    assert "branch 'main' has commits this repository does not have" in (result.error or "")


def test_other_answers() -> None:
    ok = interpret(
        PushOutput(0, "*\trefs/heads/main:refs/heads/main\t[new branch]\nDone\n", ""),
        "u",
        "main",
        9,
    )
    assert ok.ok and ok.updated == ("refs/heads/main",)
    tag = interpret(
        PushOutput(
            1, "!\trefs/tags/snapshot/x:refs/tags/snapshot/x\t[rejected] (already exists)\n", ""
        ),
        "u",
        "main",
        9,
    )
    assert "tag snapshot/x already exists" in (tag.error or "")
    secret = "https://u:pw@h/r.git"
    failed = interpret(
        PushOutput(128, "", f"fatal: unable to access '{secret}/': 403\n"), secret, "main", 9
    )
    assert (
        failed.error
        == "push to https://***@h/r.git failed: fatal: unable to access 'https://***@h/r.git/': 403"
    )
    assert interpret(PushOutput(None, "", ""), secret, "main", 2.5).error == (
        "push to https://***@h/r.git timed out after 2.5s"
    )
