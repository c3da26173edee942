"""${NAME} references in config strings: a "${" that does not form one is an error naming the
key, never text taken literally (an AK of "${DLF_AK" would only fail at the first request)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from backupd.config import TokenAuthConfig, parse_config
from backupd.errors import ConfigError
from backupd.secret import Secret


def config(auth: dict[str, Any] | None = None, **source: Any) -> dict[str, Any]:
    return {
        "repository": {"path": "/srv/repo"},
        "sources": [
            {
                "name": "prod",
                "region": "cn-north-4",
                "project_id": "0123456789abcdef0123456789abcdef",
                "auth": auth or {"type": "token", "token": "t0ken"},
                "workspaces": [{"id": "fedcba9876543210fedcba9876543210"}],
                **source,
            }
        ],
    }


ENVIRON = {"A": "alpha", "B": "beta", "TOKEN": "${NOT_AGAIN"}


def refused(data: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, base_dir=Path("/"), environ=ENVIRON)
    return caught.value


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("${A}", "alpha"),
        ("${A}${B}", "alphabeta"),
        ("x-${A}-y", "x-alpha-y"),
        ("$${A}", "${A}"),
        ("$${A", "${A"),
        ("pa$word", "pa$word"),
        ("cost: $5 {each}", "cost: $5 {each}"),
        ("$", "$"),
        ("${TOKEN}", "${NOT_AGAIN"),  # a variable's value is not read for references again
    ],
)
def test_references_escapes_and_lone_dollars(text: str, value: str) -> None:
    data = config({"type": "token", "token": text})
    auth = parse_config(data, base_dir=Path("/"), environ=ENVIRON).sources[0].auth
    assert isinstance(auth, TokenAuthConfig)
    assert auth.token == Secret(value)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("${TOKEN", "'${' at character 1 is not closed: write ${NAME}, or $${ for a literal ${"),
        ("s3cr${et", "'${' at character 5 is not closed"),
        ("${A}${", "'${' at character 5 is not closed"),
        ("${}", "'${' at character 1 is not followed by a name (letters, digits, '_') and '}'"),
        ("${1A}", "'${' at character 1 is not followed by a name"),
        ("${A:-default}", "'${' at character 1 is not followed by a name"),
        ("${A B}", "'${' at character 1 is not followed by a name"),
        ("x${A-B}", "'${' at character 2 is not followed by a name"),
    ],
)
def test_a_dollar_brace_that_is_no_reference_is_named_by_key(text: str, problem: str) -> None:
    error = refused(config({"type": "token", "token": text}))
    assert error.key == "sources[0].auth.token"
    assert error.problem.startswith(problem)


def test_the_text_around_a_broken_reference_is_never_shown() -> None:
    error = refused(config({"type": "aksk", "ak": "AKID", "sk": "very-s3cret${"}))
    assert error.key == "sources[0].auth.sk"
    assert "s3cret" not in str(error)


@pytest.mark.parametrize(
    ("data", "key"),
    [
        (config({"type": "aksk", "ak": "${DLF_AK", "sk": "x"}), "sources[0].auth.ak"),
        (config(workspaces="${WORKSPACES"), "sources[0].workspaces"),
        (config(region="${REGION"), "sources[0].region"),
        (config(include=["${PATTERN"]), "sources[0].include[0]"),
        ({**config(), "repository": {"path": "${STATE_DIRECTORY/repo"}}, "repository.path"),
    ],
)
def test_every_kind_of_string_checks_its_references(data: dict[str, Any], key: str) -> None:
    error = refused(data)
    assert error.key == key
    assert "is not closed" in error.problem
