"""Pushing to a remote that needs a password: while git runs, the password is on no process's
command line and in no process's environment (``ps`` shows command lines to every user), and
a secret backupd got from its own environment reaches none of its children. A remote URL with
a password in it is refused when the config is loaded.

The remote is real: git's smart HTTP (``git http-backend``) behind Basic auth on loopback,
slowed down a little so that a thread reading /proc surely sees the git processes.
"""

from __future__ import annotations

import base64
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from backupd.store.gitrepo import GitRepo, Identity
from tests.e2e.daemon_process import clean_environment
from tests.gitserver import bare_repository
from tests.helpers import git, secret_file, workspace_id
from tests.httpgitserver import GitHttpServer
from tests.procwatch import Findings, ProcessWatch

USER = "backup"
ME = Identity("backupd", "backupd@example.invalid")


@dataclass(frozen=True)
class Secrets:
    password: str  # the remote's, in a 0600 file the config names
    token: str  # the DataArts token, which the config takes from ${BACKUPD_TEST_TOKEN}

    def never_anywhere(self) -> list[bytes]:
        basic = base64.b64encode(f"{USER}:{self.password}".encode()).decode()
        return [self.password.encode(), basic.encode()]  # as itself, as an HTTP header


@pytest.fixture
def keys() -> Secrets:
    # Random: no other process on the machine can hold them by chance.
    return Secrets(f"push-pw-{secrets.token_hex(12)}", f"env-token-{secrets.token_hex(12)}")


@dataclass
class Setup:
    config: Path
    repo: Path
    remote: Path
    server: GitHttpServer
    tmp: Path  # backupd's temporary folder


@pytest.fixture
def setup(tmp_path: Path, keys: Secrets) -> Any:
    repo = tmp_path / "repo"
    with GitRepo.open(repo, branch="main") as opened:
        opened.prepare(ME)  # a first commit to push
    served = tmp_path / "served"
    served.mkdir()
    remote = bare_repository(served / "backup.git")
    with GitHttpServer(served, user=USER, password=keys.password, delay=0.3) as server:
        config = write_config(
            tmp_path,
            url=server.url("backup.git", user=USER),
            password_file=str(secret_file(tmp_path / "push-password", keys.password)),
        )
        tmp = tmp_path / "tmp"
        tmp.mkdir()
        yield Setup(config, repo, remote, server, tmp)


def write_config(tmp_path: Path, **remote: Any) -> Path:
    data = {
        "repository": {"path": str(tmp_path / "repo")},
        "sources": [
            {
                "name": "prod",
                "endpoint": "http://127.0.0.1:9",  # never answers: these tests only push
                "project_id": workspace_id(7),
                "auth": {"type": "token", "token": "${BACKUPD_TEST_TOKEN}"},
                "workspaces": [{"id": workspace_id(1), "name": "sales"}],
            }
        ],
        "remote": {"timeout": 60, **remote},
    }
    path = tmp_path / "config.yaml"
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(data))
    return path


def watched_backupd(
    setup: Setup, keys: Secrets, *args: str
) -> tuple[subprocess.CompletedProcess[str], Findings]:
    """Run ``backupd ARGS`` with the token in its environment, watching every process."""
    environment = clean_environment({"BACKUPD_TEST_TOKEN": keys.token, "TMPDIR": str(setup.tmp)})
    command = [sys.executable, "-m", "backupd", *args]
    with (
        subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=environment
        ) as process,
        ProcessWatch(
            keys.never_anywhere(),
            inherited=[keys.token.encode()],
            owners={process.pid},  # backupd itself was given the token; its children not
            marker=f"127.0.0.1:{setup.server.port}".encode(),
        ) as watch,
    ):
        try:
            stdout, stderr = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
    result = subprocess.CompletedProcess(command, process.returncode, stdout, stderr)
    return result, watch.findings


def assert_no_secret_seen(findings: Findings, result: subprocess.CompletedProcess[str]) -> None:
    assert findings.leaks == []
    # Not vacuous: the watch saw git working against the server, and read its environment.
    git_processes = [
        argv for argv in findings.marked.values() if Path(argv[0]).name.startswith("git")
    ]
    assert git_processes, (findings.rounds, findings.marked)
    assert findings.marked_environ_read & set(findings.marked)


def test_a_password_protected_push_shows_the_password_to_no_process(
    setup: Setup, keys: Secrets
) -> None:
    result, findings = watched_backupd(setup, keys, "push", "-c", str(setup.config))

    assert result.returncode == 0, result.stderr
    assert "ref(s) updated" in result.stdout
    remote_head = git(setup.remote, "rev-parse", "refs/heads/main").strip()
    assert remote_head == git(setup.repo, "rev-parse", "HEAD").strip()
    assert setup.server.refused >= 1 and setup.server.authenticated >= 1  # asked and given
    assert_no_secret_seen(findings, result)
    assert keys.password not in result.stdout + result.stderr
    assert list(setup.tmp.iterdir()) == []  # the private credentials folder is gone


def test_check_reaches_the_remote_with_its_password_shown_to_no_process(
    setup: Setup, keys: Secrets
) -> None:
    result, findings = watched_backupd(setup, keys, "check", "-c", str(setup.config))

    remote_lines = [line for line in result.stdout.splitlines() if line.split()[1:2] == ["remote"]]
    assert len(remote_lines) == 1 and remote_lines[0].startswith("OK"), result.stdout
    assert_no_secret_seen(findings, result)
    assert keys.password not in result.stdout + result.stderr
    assert list(setup.tmp.iterdir()) == []


def test_a_wrong_password_fails_the_push_without_a_prompt_or_an_echo(
    setup: Setup, keys: Secrets, tmp_path: Path
) -> None:
    wrong = f"wrong-pw-{secrets.token_hex(8)}"
    secret_file(tmp_path / "push-password", wrong)

    result, findings = watched_backupd(setup, keys, "push", "-c", str(setup.config))

    assert result.returncode == 1
    assert "push to http://***@127.0.0.1" in result.stderr
    assert wrong not in result.stdout + result.stderr
    assert findings.leaks == []
    assert list(setup.tmp.iterdir()) == []


def test_a_remote_url_with_a_password_is_refused_at_load(tmp_path: Path) -> None:
    password = f"inline-pw-{secrets.token_hex(8)}"
    config = write_config(tmp_path, url=f"https://{USER}:{password}@git.example.com/b.git")

    result = subprocess.run(
        [sys.executable, "-m", "backupd", "push", "-c", str(config)],
        capture_output=True,
        text=True,
        env=clean_environment({"BACKUPD_TEST_TOKEN": "t"}),
        timeout=60,
        check=False,
    )

    assert result.returncode == 78
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("backupd: config: remote.url: must not hold a password")
    assert "remote.password_file" in lines[0]
    assert password not in result.stdout + result.stderr
