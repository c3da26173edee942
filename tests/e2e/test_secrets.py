"""Secrets hygiene: distinctive credentials never reach logs, errors, reprs, commits or the repo.

One account with an AK/SK (temporary, with a security token) and an IAM user; snapshots run
in-process (caplog at DEBUG) and through the CLI (``--log-level debug``), with successes and
failing requests (a wrong SK, a wrong password, a skewed clock, an expired token). Then every
text we can get hold of is searched for every secret value.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from backupd.commands.snapshot import run_snapshots
from backupd.config import load_config
from backupd.simulator.server import AccessKey, IamUser, Simulator
from backupd.wiring import AuthCache, make_auth, make_client
from tests.helpers import FAST_RATES, git, secret_file, workspace_id

AK = "HYGIENEAKQ7X2M9P4W1Z"
SK = "hygiene-SK-9f8e7d6c5b4a-do-not-leak"
STS = "hygiene-STS-1a2b3c4d-do-not-leak"
PASSWORD = "hygiene-PW-5e6f7a8b-do-not-leak"
WRONG_SK = "hygiene-WRONG-SK-0c0d0e0f-do-not-leak"
WRONG_PASSWORD = "hygiene-WRONG-PW-babe-do-not-leak"
DOMAIN, USER = "hygiene-account", "hygiene-user"
SALES, FINANCE = workspace_id(1), workspace_id(2)


@pytest.fixture
def account() -> Iterator[Simulator]:
    with Simulator(
        token=None,
        access_keys=(AccessKey(AK, SK, security_token=STS),),
        iam_users=(IamUser(DOMAIN, USER, PASSWORD),),
    ) as simulator:
        simulator.add_workspace(SALES, "sales")
        simulator.add_workspace(FINANCE, "finance")
        simulator.populate(SALES, 12, chinese_fraction=0.3)
        simulator.populate(FINANCE, 12)
        yield simulator


def write_config(tmp_path: Path, simulator: Simulator, *, password: str) -> Path:
    """Two sources of the same account: AK/SK (SK from ${ENV}, token from a file) and IAM."""
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir(exist_ok=True)
    common = {"endpoint": simulator.url, "project_id": simulator.project_id}
    limits = {"rates": FAST_RATES}
    data: dict[str, Any] = {
        "repository": {"path": str(tmp_path / "repo")},
        "staging_dir": str(tmp_path / "staging"),
        "sources": [
            {
                "name": "signed",
                **common,
                **limits,
                "auth": {
                    "type": "aksk",
                    "ak": AK,
                    "sk": "${HYGIENE_SK}",
                    "security_token_file": str(secret_file(secrets_dir / "sts", STS)),
                },
                "workspaces": [{"id": SALES, "name": "sales"}],
            },
            {
                "name": "iam",
                **common,
                **limits,
                "auth": {
                    "type": "password",
                    "user": USER,
                    "domain": DOMAIN,
                    "password_file": str(secret_file(secrets_dir / "password", password)),
                    "iam_endpoint": simulator.url,
                },
                "workspaces": [{"id": FINANCE, "name": "finance"}],
            },
        ],
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def cli(config: Path, sk: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backupd", "--log-level", "debug", "snapshot", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "HYGIENE_SK": sk},
    )


def secrets(simulator: Simulator) -> list[str]:
    issued = simulator.auth.issued_tokens
    assert issued, "the IAM source should have obtained tokens"
    return [AK, SK, STS, PASSWORD, WRONG_SK, WRONG_PASSWORD, *issued]


def assert_absent(texts: dict[str, str], values: list[str]) -> None:
    for where, text in texts.items():
        for value in values:
            assert value not in text, f"a secret appears in {where}"


def repository_texts(repo: Path) -> dict[str, str]:
    """Commit messages, every file of every commit, and every byte of the folder (incl. .git)."""
    texts = {"commit messages": git(repo, "log", "--format=%B", "--all")}
    for commit in git(repo, "rev-list", "--all").split():
        files = git(repo, "ls-tree", "-r", "--name-only", "-z", commit).strip("\0").split("\0")
        texts[f"commit {commit}"] = "\n".join(
            git(repo, "show", f"{commit}:{name}") for name in files if name
        )
    for path in repo.rglob("*"):
        if path.is_file():
            texts[str(path)] = path.read_bytes().decode("latin-1")
    return texts


def git_grep_finds(repo: Path, value: str) -> bool:
    commits = git(repo, "rev-list", "--all").split()
    found = subprocess.run(
        ["git", "-C", str(repo), "grep", "-F", "-q", "-e", value, *commits],
        check=False,
        capture_output=True,
    )
    assert found.returncode in (0, 1), found.stderr
    return found.returncode == 0


def test_no_secret_escapes_in_process(
    tmp_path: Path, account: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    texts: dict[str, str] = {}
    good = write_config(tmp_path, account, password=PASSWORD)
    config = load_config(good, environ={"HYGIENE_SK": SK})
    cache = AuthCache()
    results = run_snapshots(config, auth_cache=cache)
    assert [r.ok for r in results] == [True, True]

    # Failures: an expired token (refreshed), a skewed clock, a wrong SK, a wrong password.
    account.auth.expire_tokens()
    account.modify_job(FINANCE, sorted(account.jobs(FINANCE))[0])
    results += run_snapshots(config, auth_cache=cache)
    account.auth.clock_offset = timedelta(minutes=30)
    results += run_snapshots(config)
    account.auth.clock_offset = timedelta(0)
    bad_path = write_config(tmp_path, account, password=WRONG_PASSWORD)
    bad = load_config(bad_path, environ={"HYGIENE_SK": WRONG_SK})
    failed = run_snapshots(bad)
    assert [r.ok for r in failed] == [False, False]
    results += failed

    texts["log"] = caplog.text
    for index, record in enumerate(caplog.records):
        texts[f"record {index}"] = f"{record.getMessage()} {record.args!r} {record.__dict__!r}"
    texts["results"] = repr(results)
    texts["errors"] = "\n".join(r.error or "" for r in results)
    texts["config reprs"] = repr(config) + repr(bad) + str(config.sources)
    with make_client(config.sources[0]) as client:
        texts["client"] = repr(client) + repr(make_auth(config.sources[0]))
    texts["auth"] = repr(make_auth(config.sources[1], cache=cache))
    texts |= repository_texts(tmp_path / "repo")
    assert_absent(texts, secrets(account))
    assert len(account.auth.failures) >= 3 and len(account.auth.token_requests) >= 3


def test_no_secret_escapes_through_the_cli_at_debug_level(
    tmp_path: Path, account: Simulator
) -> None:
    good = write_config(tmp_path, account, password=PASSWORD)
    runs = [cli(good, SK)]
    assert runs[0].returncode == 0, runs[0].stderr
    account.auth.clock_offset = timedelta(minutes=-30)
    runs.append(cli(good, SK))
    account.auth.clock_offset = timedelta(0)
    bad = write_config(tmp_path, account, password=WRONG_PASSWORD)
    runs.append(cli(bad, WRONG_SK))
    assert [run.returncode for run in runs] == [0, 1, 78]
    assert any("DEBUG" in line or '"debug"' in line for line in runs[0].stderr.splitlines())

    texts = {
        f"run {i} {stream}": getattr(run, stream)
        for i, run in enumerate(runs)
        for stream in ("stdout", "stderr")
    }
    texts |= repository_texts(tmp_path / "repo")
    values = secrets(account)
    assert_absent(texts, values)
    repo = tmp_path / "repo"
    assert int(git(repo, "rev-list", "--count", "--all")) >= 3
    for value in values:
        assert not git_grep_finds(repo, value)
    assert not list((tmp_path / "staging").iterdir())
