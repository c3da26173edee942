"""Every command answers for a source with ``workspaces: all``: its workspaces come from the
repository's own map, including one DataArts deleted after it was backed up."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest

from backupd.cli import main
from backupd.simulator.server import Simulator
from tests.helpers import discover_all, make_config, workspace_id


@pytest.fixture
def discovered(tmp_path: Path, simulator: Simulator) -> tuple[Path, str, str]:
    """Two discovered workspaces snapshotted; then 'finance' is deleted and a second
    snapshot records it gone. Returns the config and one job of each workspace."""
    sales, finance = workspace_id(61), workspace_id(62)
    simulator.add_workspace(sales, "sales")
    simulator.add_workspace(finance, "finance")
    sales_job = simulator.populate(sales, 3)[0]
    finance_job = simulator.populate(finance, 2)[0]
    config = make_config(tmp_path, simulator, {}, extra_source=discover_all(simulator))
    assert main(["snapshot", "-c", str(config)]) == 0
    simulator.remove_workspace(finance)
    assert main(["snapshot", "-c", str(config)]) == 0
    return config, sales_job, finance_job


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_log_and_show_resolve_discovered_workspaces(
    discovered: tuple[Path, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config, sales_job, finance_job = discovered
    code, out, err = run(capsys, "log", "-c", str(config), "--workspace", "sales")
    assert code == 0, err
    assert "prod/sales: 3 added" in out
    code, out, err = run(capsys, "log", "-c", str(config), "--job", sales_job)
    assert code == 0, err
    assert "added" in out
    # The deleted workspace keeps its history: by folder, and by its DataArts name.
    code, out, err = run(
        capsys, "log", "-c", str(config), "--workspace", "finance", "--job", finance_job
    )
    assert code == 0, err
    assert "added" in out
    code, out, err = run(capsys, "show", "-c", str(config), "--workspace", "finance", finance_job)
    assert code == 0, err
    assert json.loads(out)["name"] == finance_job


def test_restore_works_for_a_discovered_and_a_deleted_workspace(
    discovered: tuple[Path, str, str], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config, _, finance_job = discovered
    code, out, err = run(capsys, "restore", "-c", str(config), "--list")
    assert code == 0, err
    assert "prod/sales" in out and "prod/finance" in out
    target = tmp_path / "finance.zip"
    code, out, err = run(
        capsys, "restore", "-c", str(config), "--workspace", "finance", "--out", str(target)
    )
    assert code == 0, err
    with zipfile.ZipFile(target) as archive:
        assert any(name.endswith(f"{finance_job}.job") for name in archive.namelist())
    code, out, err = run(
        capsys, "restore", "-c", str(config), "--workspace", "sales", "--dry-run", "--offline"
    )
    assert code == 0, err
    # Two workspaces match nothing narrower than the source: one must be chosen.
    code, _, err = run(capsys, "restore", "-c", str(config), "--out", str(target))
    assert code == 2
    assert "prod/finance" in err and "prod/sales" in err
    code, _, err = run(capsys, "restore", "-c", str(config), "--workspace", "nowhere", "--list")
    assert code == 2
    assert "known: prod/finance, prod/sales" in err


def test_status_lists_each_discovered_workspace_and_marks_the_deleted_one_gone(
    discovered: tuple[Path, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config, _, _ = discovered
    code, out, err = run(capsys, "status", "-c", str(config), "--json")
    states = {row["workspace"]: row["state"] for row in json.loads(out)["workspaces"]}
    assert states == {"prod/sales": "OK", "prod/finance": "GONE"}
    assert code == 0, err


def test_dry_run_and_workspaces_list_discovered_workspaces(
    discovered: tuple[Path, str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    config, _, _ = discovered
    code, out, err = run(capsys, "snapshot", "-c", str(config), "--dry-run")
    assert code == 0, err
    assert "prod/sales" in out
    code, out, err = run(capsys, "workspaces", "-c", str(config))
    assert code == 0, err
    assert "sales" in out and "finance" in out
