"""remote: a password never rides in the URL; where it comes from instead, and the SSH files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from backupd.config import parse_config
from backupd.errors import ConfigError
from backupd.secret import Secret

PASSWORD = "remote-config-pw-2b7f5d"


def data(**remote: Any) -> dict[str, Any]:
    return {
        "repository": {"path": "repo"},
        "sources": [
            {
                "name": "prod",
                "region": "cn-north-4",
                "project_id": "0123456789abcdef0123456789abcdef",
                "auth": {"type": "token", "token_file": "token"},
                "workspaces": [{"id": "fedcba9876543210fedcba9876543210", "name": "sales"}],
            }
        ],
        "remote": remote,
    }


def problem(config: dict[str, Any], environ: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_config(config, base_dir=Path("/etc/backupd"), environ=environ or {})
    return caught.value


def test_a_url_with_a_password_is_refused_naming_the_keys_to_use_instead() -> None:
    error = problem(data(url=f"https://backup:{PASSWORD}@git.example.com/b.git"))
    assert error.key == "remote.url"
    assert PASSWORD not in str(error) and "\n" not in str(error)
    assert "remote.password_file" in str(error)


def test_a_password_put_into_the_url_from_the_environment_is_refused_too() -> None:
    error = problem(
        data(url="https://backup:${PUSH_PW}@git.example.com/b.git"), {"PUSH_PW": PASSWORD}
    )
    assert error.key == "remote.url" and PASSWORD not in str(error)


@pytest.mark.parametrize(
    ("remote", "key", "words"),
    [
        (
            {"url": "https://git.example.com/b.git", "password_file": "pw"},
            "remote.url",
            "needs the user name",
        ),
        (
            {"url": "git@git.example.com:b.git", "password_credential": "push-pw"},
            "remote.url",
            "is for http:// and https:// URLs only",
        ),
        (
            {"url": "https://u@h/b.git", "password_file": "pw", "password_credential": "pw"},
            "remote",
            "set only one of password, password_file, password_credential",
        ),
        (
            {"url": "https://u@h/b.git", "password_credential": "../pw"},
            "remote.password_credential",
            "not a valid systemd credential name",
        ),
    ],
)
def test_password_sources_are_checked(remote: dict[str, Any], key: str, words: str) -> None:
    error = problem(data(**remote))
    assert error.key == key
    assert words in error.problem


def test_the_password_comes_from_a_file_a_credential_or_the_environment() -> None:
    base = Path("/etc/backupd")
    from_file = parse_config(
        data(url="https://backup@git.example.com/b.git", password_file="push-token"),
        base_dir=base,
        environ={},
    ).remote
    assert from_file is not None and from_file.password_file == base / "push-token"
    from_env = parse_config(
        data(url="https://backup@git.example.com/b.git", password="${PUSH_PW}"),
        base_dir=base,
        environ={"PUSH_PW": PASSWORD},
    ).remote
    assert from_env is not None and from_env.password == Secret(PASSWORD)
    assert PASSWORD not in repr(from_env)


def test_ssh_files_are_paths_from_the_config_folder() -> None:
    remote = parse_config(
        data(url="git@h:b.git", ssh_key_file="push_key", known_hosts_file="known_hosts"),
        base_dir=Path("/etc/backupd"),
        environ={},
    ).remote
    assert remote is not None
    assert remote.ssh_key_file == Path("/etc/backupd/push_key")
    assert remote.known_hosts_file == Path("/etc/backupd/known_hosts")
