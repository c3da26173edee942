"""How git reaches the remote: URLs that would put a password on a command line, git's
credential store, and ssh's command — all holding paths only, never a secret."""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
from pathlib import Path

import pytest

from backupd.secret import Secret
from backupd.store.remote import (
    GitAccess,
    RemoteAuth,
    credential_line,
    git_access,
    ssh_command,
    ssh_option_path,
    url_problem,
)

PASSWORD = "pw: /@%ä+#?-remote-access-3e9d"


@pytest.mark.parametrize(
    "url",
    [
        "https://backup:hunter2-secret@git.example.com/team/backup.git",
        "http://backup:hunter2-secret@127.0.0.1:8080/backup.git",
        "https://:hunter2-secret@git.example.com/backup.git",
        "ssh://git:hunter2-secret@git.example.com/backup.git",
    ],
)
def test_a_url_with_a_password_is_refused_without_quoting_it(url: str) -> None:
    problem = url_problem(url)
    assert problem is not None
    assert "hunter2" not in problem and "\n" not in problem
    assert "must not hold a password" in problem
    if url.startswith("http"):
        assert "remote.password_file" in problem and "remote.password_credential" in problem
    else:
        assert "remote.ssh_key_file" in problem


@pytest.mark.parametrize(
    "url",
    [
        "https://git.example.com/team/backup.git",
        "https://backup@git.example.com/team/backup.git",
        "ssh://git@git.example.com/backup.git",
        "git@git.example.com:team/backup.git",
        "file:///srv/git/backup.git",
        "/srv/git/backup.git",
        "git://127.0.0.1:9418/backup.git",
    ],
)
def test_urls_without_a_password_are_fine(url: str) -> None:
    assert url_problem(url) is None


def test_a_password_needs_an_http_url_with_a_user_name() -> None:
    assert url_problem("https://backup@git.example.com/b.git", password_given=True) is None
    no_user = url_problem("https://git.example.com/b.git", password_given=True)
    assert no_user is not None and "https://USER@git.example.com/..." in no_user
    ssh = url_problem("git@git.example.com:b.git", password_given=True)
    assert ssh is not None and "is for http:// and https:// URLs only" in ssh


def test_the_credential_line_is_bound_to_scheme_user_host_and_path() -> None:
    line = credential_line("https://back%40up@git.example.com:8443/team/b.git", "p:w/@ x")
    assert line == "https://back%40up:p%3Aw%2F%40%20x@git.example.com:8443/team/b.git\n"


def _store_of(access: GitAccess) -> Path:
    """The file the credential helper (the last -c option) reads."""
    helper = shlex.split(access.options[-1].removeprefix("credential.helper="))
    assert helper[0] == "store"
    return Path(helper[1].removeprefix("--file="))


def _fill(access_options: tuple[str, ...], request: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["git", *access_options, "credential", "fill"],
        input=request,
        capture_output=True,
        text=True,
        env={**os.environ, "GIT_TERMINAL_PROMPT": "0"},
        timeout=30,
        check=False,
    )


def test_git_reads_the_password_from_a_private_file_that_is_removed_after() -> None:
    url = "https://back%40up@git.example.com/team/b.git"
    with git_access(url, RemoteAuth(password=Secret(PASSWORD)), 10) as access:
        store = _store_of(access)
        folder = store.parent
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        assert stat.S_IMODE(store.stat().st_mode) == 0o600
        # What git asks for when it pushes (path only with credential.useHttpPath).
        for request in (
            "protocol=https\nhost=git.example.com\nusername=back@up\n\n",
            "protocol=https\nhost=git.example.com\npath=team/b.git\nusername=back@up\n\n",
        ):
            answer = _fill(access.options, request)
            assert answer.returncode == 0, answer.stderr
            assert f"password={PASSWORD}\n" in answer.stdout
        other_host = _fill(access.options, "protocol=https\nhost=evil.example.com\n\n")
        assert f"password={PASSWORD}" not in other_host.stdout
        # Paths only: nothing git sees on its command line or in its environment.
        assert not any(PASSWORD in option for option in access.options)
        assert not any(PASSWORD in value for value in access.environment.values())
        assert access.options[:2] == ("-c", "credential.helper=")  # the user's helpers are off
    assert not folder.exists()


def test_the_private_folder_is_removed_when_git_fails_too() -> None:
    with (
        pytest.raises(RuntimeError),
        git_access("https://u@h/r.git", RemoteAuth(password=Secret(PASSWORD)), 10) as access,
    ):
        folder = _store_of(access).parent
        assert folder.is_dir()
        raise RuntimeError("git failed")
    assert not folder.exists()


def test_without_a_password_the_users_git_setup_stays_and_nothing_is_written() -> None:
    with git_access("ssh://git@h/r.git", RemoteAuth(ssh_key=Path("/k")), 10) as access:
        assert access.options == ()
        assert "-i /k" in access.environment["GIT_SSH_COMMAND"]
        assert access.environment["GIT_TERMINAL_PROMPT"] == "0"


def test_ssh_checks_the_host_key_against_the_configured_known_hosts() -> None:
    command = shlex.split(ssh_command(Path("/etc/backupd/push key"), 60, Path("/etc/k h%")))
    assert command[:3] == ["ssh", "-i", "/etc/backupd/push key"]
    assert 'UserKnownHostsFile="/etc/k h%%"' in command
    assert "StrictHostKeyChecking=yes" in command and "BatchMode=yes" in command
    default = shlex.split(ssh_command(None, 60))
    assert "StrictHostKeyChecking=yes" in default
    assert not any(part.startswith("UserKnownHostsFile") for part in default)
    assert ssh_option_path(Path("/a b/%k")) == '"/a b/%%k"'


def test_ssh_parses_the_known_hosts_option_as_the_path_given(tmp_path: Path) -> None:
    known_hosts = tmp_path / "known hosts %h"
    command = shlex.split(ssh_command(None, 5, known_hosts))
    result = subprocess.run(
        [*command, "-G", "git.example.com"], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:  # pragma: no cover - an ssh without -G
        pytest.skip(f"ssh -G failed: {result.stderr.strip()}")
    settings = result.stdout.splitlines()
    assert f"userknownhostsfile {known_hosts}" in settings
    assert "stricthostkeychecking true" in settings
