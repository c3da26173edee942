"""Reading history: which folders a command means, and how --at reads a date."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from backupd.commands.history import parse_moment, resolve_scope
from backupd.config import Config, parse_config
from backupd.errors import UsageError


def config() -> Config:
    source = {
        "region": "cn-north-4",
        "project_id": "0123456789abcdef0123456789abcdef",
        "auth": {"type": "token", "token": "t"},
    }
    data = {
        "repository": {"path": "repo"},
        "sources": [
            {**source, "name": "prod", "workspaces": [{"id": "a" * 32, "name": "sales"}]},
            {
                **source,
                "name": "test",
                "workspaces": [{"id": "b" * 32, "name": "sales"}, {"id": "c" * 32}],
            },
        ],
    }
    return parse_config(data, base_dir=Path("/"), environ={})


@pytest.mark.parametrize(
    ("options", "folders"),
    [
        ({}, ("prod/sales", "test/sales", f"test/{'c' * 32}")),
        ({"workspace": "sales"}, ("prod/sales", "test/sales")),
        ({"workspace": "test/sales"}, ("test/sales",)),
        ({"source": "prod"}, ("prod/sales",)),
        ({"workspace": "b" * 32}, ("test/sales",)),
    ],
)
def test_scope_names_the_configured_workspace_folders(
    options: dict[str, str], folders: tuple[str, ...]
) -> None:
    assert resolve_scope(config(), **options).folders == folders  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "options", [{"source": "nope"}, {"workspace": "nope"}, {"job": "a/b"}, {"job": ""}]
)
def test_scope_mistakes_are_usage_errors(options: dict[str, str]) -> None:
    with pytest.raises(UsageError):
        resolve_scope(config(), **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "moment"),
    [
        ("2026-11-29", datetime(2026, 11, 29, 23, 59, 59, 999999, tzinfo=UTC)),
        ("2026-11-29T03:00", datetime(2026, 11, 29, 3, 0, tzinfo=UTC)),
        ("2026-11-29 03:00:05Z", datetime(2026, 11, 29, 3, 0, 5, tzinfo=UTC)),
        ("2026-11-29T11:00+08:00", datetime(2026, 11, 29, 3, 0, tzinfo=UTC)),
        ("2026112", None),  # digits only: a revision, not an ordinal date
        ("snapshot/2026-11-29T0300Z", None),
        ("HEAD~2", None),
        ("2026-13-01", None),
    ],
)
def test_dates_for_at(text: str, moment: datetime | None) -> None:
    assert parse_moment(text) == moment
