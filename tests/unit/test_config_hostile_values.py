"""Every key of the schema, given every kind of value YAML can produce: a ConfigError or a
config, never another exception, and the error always one line.

The keys are found by walking the schema's dataclasses, so a key added later is covered.
"""

from __future__ import annotations

import dataclasses
import datetime
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Union

import pytest

import backupd.config
from backupd.config import (
    AkSkAuthConfig,
    Config,
    PasswordAuthConfig,
    TokenAuthConfig,
    load_config,
    parse_config,
)
from backupd.errors import ConfigError

VALID_AUTH: dict[Any, dict[str, str]] = {
    AkSkAuthConfig: {"type": "aksk", "ak": "EXAMPLEAK0123456789A", "sk": "${SK}"},
    PasswordAuthConfig: {"type": "password", "user": "u", "domain": "d", "password": "${SK}"},
    TokenAuthConfig: {"type": "token", "token": "${SK}"},
}

HOSTILE: list[Any] = [
    None,
    True,
    0,
    -1,
    2**70,
    10**400,
    1.5,
    float("nan"),
    float("inf"),
    "",
    " ",
    "x",
    "~no-such-user-here/x",
    "a\x00b",
    "a\nb\rc",
    "\ud800",
    "${",
    "${SK",
    "a${}b",
    "${1X}",
    "$${SK}",
    "${UNSET}",
    "\u0669\u0664",  # digits, but not ASCII ones
    "127.0.0.1:" + "9" * 5000,
    "9" * 5000 + " * * * *",
    "*/00 * * * *",
    "x" * 100_000,
    [],
    [None],
    [[[]]],
    ["x", 1],
    [{}],
    {},
    {"type": ["token"]},
    {"x": 1},
    {None: None},
    {1: 2},
    datetime.date(2026, 1, 1),
    datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC),
    b"\x00binary",
    {1, 2},
]


def key_paths(tp: Any, path: tuple[Any, ...], auth: Any) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """(path, auth kind) of every key below type ``tp``; lists and tables by one element."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        for option in typing.get_args(tp):
            yield from key_paths(option, path, option if option in VALID_AUTH else auth)
    elif origin is tuple:
        yield from key_paths(typing.get_args(tp)[0], (*path, 0), auth)
    elif origin in (dict, Mapping):
        yield from key_paths(typing.get_args(tp)[1], (*path, "li.wei"), auth)
    elif dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        for spec in dataclasses.fields(tp):
            yield (*path, spec.name), auth
            yield from key_paths(hints[spec.name], (*path, spec.name), auth)


KEYS = sorted(set(key_paths(Config, (), None)), key=repr)


def base(auth: Any) -> dict[str, Any]:
    return {
        "repository": {"path": "/srv/backupd/repo"},
        "sources": [
            {
                "name": "prod",
                "region": "cn-north-4",
                "project_id": "0123456789abcdef0123456789abcdef",
                "auth": dict(VALID_AUTH.get(auth, VALID_AUTH[TokenAuthConfig])),
                "workspaces": [{"id": "fedcba9876543210fedcba9876543210"}],
            }
        ],
    }


def put(data: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    node: Any = data
    for step in path[:-1]:
        if isinstance(node, dict) and not isinstance(node.get(step), dict | list):
            node[step] = {}
        node = node[step]
    node[path[-1]] = value


def test_the_walk_reaches_every_corner_of_the_schema() -> None:
    dotted = {".".join(str(step) for step in path) for path, _ in KEYS}
    for key in (
        "repository.author.email",
        "sources.0.auth.sk_credential",
        "sources.0.auth.iam_endpoint",
        "sources.0.workspaces.0.schedule.cron",
        "sources.0.restore.obs_sk_file",
        "history.authors.li.wei.email",
        "metrics.listen",
        "alerts.command",
    ):
        assert key in dotted


def key_id(path: tuple[Any, ...], auth: Any) -> str:
    dotted = ".".join(str(step) for step in path)
    return f"{dotted}[{VALID_AUTH[auth]['type']}]" if auth in VALID_AUTH else dotted


@pytest.mark.parametrize(("path", "auth"), KEYS, ids=[key_id(*key) for key in KEYS])
def test_any_value_anywhere_is_a_config_or_one_line_error(
    path: tuple[Any, ...], auth: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for value in HOSTILE:
        data = base(auth)
        put(data, path, value)
        monkeypatch.setattr(backupd.config, "read_yaml", lambda _path, data=data: data)
        try:
            load_config(Path("/etc/backupd/config.yaml"), environ={"SK": "s3cret"})
        except ConfigError as error:
            message = str(error)
            assert "please report" not in message, (path, value, message)
            assert message.isprintable(), (path, value, message)
            assert len(message) < 800, (path, value)
            assert "s3cret" not in message


@pytest.mark.parametrize(
    ("path", "value", "key", "problem"),
    [
        (("schedule", "interval"), float("inf"), "schedule.interval", "must be a finite number"),
        (("daemon", "stop_timeout"), 10**400, "daemon.stop_timeout", "must be a finite number"),
        (
            ("sources", 0, "retry", "max_delay"),
            float("nan"),
            "sources[0].retry.max_delay",
            "finite",
        ),
        (("repository", "path"), "re\x00po", "repository.path", "must not contain a NUL"),
        (("state_dir",), "~no-such-user-here/s", "state_dir", "cannot expand '~'"),
        (("staging_dir",), "\ud800", "staging_dir", "holds characters no file name can have"),
        (("sources", 0, "auth", "type"), ["token"], "sources[0].auth.type", "must be one of"),
        (("metrics", "listen"), "127.0.0.1:\u0669\u0664", "metrics.listen", "host:port"),
        (("metrics", "listen"), "h:" + "9" * 5000, "metrics.listen", "host:port"),
        (("schedule", "cron"), "*/00 * * * *", "schedule.cron", "not valid cron syntax"),
        (("schedule", "cron"), "9" * 5000 + " * * * *", "schedule.cron", "is not in 0-59"),
    ],
)
def test_values_that_used_to_crash_loading_are_named(
    path: tuple[Any, ...], value: Any, key: str, problem: str
) -> None:
    data = base(None)
    put(data, path, value)
    with pytest.raises(ConfigError) as caught:
        parse_config(data, base_dir=Path("/etc/backupd"), environ={"SK": "s"})
    assert caught.value.key == key
    assert problem in caught.value.problem


def test_a_symlink_loop_is_named_by_its_key(tmp_path: Path) -> None:
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    data = base(None)
    data["repository"]["path"] = str(tmp_path / "repo")
    data["state_dir"] = str(tmp_path / "loop" / "state")
    with pytest.raises(ConfigError) as caught:
        parse_config(data, base_dir=tmp_path, environ={"SK": "s"})
    assert caught.value.key == "state_dir"
    assert "cannot be resolved" in caught.value.problem
