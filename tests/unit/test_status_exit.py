"""`backupd status` exit code: 1 when a workspace is STALE or NEVER RUN (as documented)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from backupd.commands.status import exit_code, status_rows
from backupd.config import Config, parse_config
from backupd.model import SnapshotResult, WorkspaceTarget
from backupd.service.status import StatusStore, recorded

NOW = datetime(2026, 11, 29, 6, 30, tzinfo=UTC)
SALES, FINANCE = "1" * 32, "2" * 32


def config_of(tmp_path: Path) -> Config:
    data = {
        "repository": {"path": str(tmp_path / "repo")},
        "schedule": {"interval": 3600},
        "sources": [
            {
                "name": "prod",
                "region": "cn-north-4",
                "project_id": "0123456789abcdef0123456789abcdef",
                "auth": {"type": "token", "token_file": str(tmp_path / "token")},
                "workspaces": [{"id": SALES, "name": "sales"}, {"id": FINANCE, "name": "finance"}],
            }
        ],
    }
    return parse_config(data, base_dir=tmp_path)


def record(config: Config, folder: str, *outcomes: tuple[bool, timedelta]) -> None:
    """Record snapshots of ``folder`` that ended ``ago`` before NOW, ok or not."""
    store = StatusStore(config.status_dir)
    records = store.read()
    label = f"prod/{folder}"
    target = WorkspaceTarget("prod", SALES if folder == "sales" else FINANCE, folder)
    for ok, ago in outcomes:
        result = SnapshotResult(target, ok=ok, error=None if ok else "list jobs: HTTP 403")
        records[label] = recorded(records.get(label), result, NOW - ago)
    store.save(records)


def states(config: Config) -> tuple[list[str], int]:
    rows = status_rows(config, NOW)
    return [row.state for row in rows], exit_code(rows)


def test_never_run_workspaces_exit_1(tmp_path: Path) -> None:
    assert states(config_of(tmp_path)) == (["NEVER RUN", "NEVER RUN"], 1)


def test_one_never_run_beside_an_ok_one_still_exits_1(tmp_path: Path) -> None:
    config = config_of(tmp_path)
    record(config, "sales", (True, timedelta(minutes=10)))
    assert states(config) == (["OK", "NEVER RUN"], 1)


@pytest.mark.parametrize(
    ("finance", "state", "code"),
    [
        ([(True, timedelta(minutes=5))], "OK", 0),
        # failed once since a recent success: FAILING, not stale yet (alerted on its own)
        ([(True, timedelta(minutes=50)), (False, timedelta(minutes=5))], "FAILING", 0),
        ([(True, timedelta(hours=3)), (False, timedelta(minutes=5))], "STALE", 1),
        ([(False, timedelta(hours=3)), (False, timedelta(minutes=5))], "STALE", 1),
    ],
)
def test_stale_exits_1_failing_alone_does_not(
    tmp_path: Path, finance: list[tuple[bool, timedelta]], state: str, code: int
) -> None:
    config = config_of(tmp_path)
    record(config, "sales", (True, timedelta(minutes=10)))
    record(config, "finance", *finance)
    assert states(config) == (["OK", state], code)
