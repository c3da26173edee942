"""`backupd workspaces`: what discovery finds, run as a subprocess against the simulator."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from backupd.simulator.server import DEFAULT_INSTANCE_ID, Simulator
from tests.helpers import discover_all, make_config, workspace_id


def backupd(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backupd", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_workspaces_command_shows_each_workspace_included_or_not_and_why(
    tmp_path: Path, simulator: Simulator
) -> None:
    simulator.add_workspace(workspace_id(1), "sales")
    simulator.add_workspace(workspace_id(2), "tmp_scratch")
    simulator.add_workspace(workspace_id(3), "sandbox/alice")  # unusable as a folder name
    config = make_config(
        tmp_path, simulator, {}, extra_source=discover_all(simulator, exclude=["tmp_*"])
    )

    result = backupd("workspaces", "-c", str(config))

    assert result.returncode == 0, result.stderr
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["SOURCE", "ID", "NAME", "FOLDER", "STATUS"]
    by_id = {row.split()[1]: row for row in rows}
    assert by_id[workspace_id(1)].split()[:4] == ["prod", workspace_id(1), "sales", "sales"]
    assert "included (new" in by_id[workspace_id(1)]
    assert by_id[workspace_id(2)].split()[2:4] == ["tmp_scratch", "-"]
    assert by_id[workspace_id(2)].endswith("excluded by 'tmp_*'")
    assert by_id[workspace_id(3)].split()[3] == workspace_id(3)  # folder falls back to the id
    assert not (tmp_path / "repo").exists()  # it only looks


def test_workspaces_command_names_the_instances_when_the_choice_is_ambiguous(
    tmp_path: Path, simulator: Simulator
) -> None:
    simulator.add_instance("c3" * 16, "dataarts-eu")
    config = make_config(tmp_path, simulator, {}, extra_source=discover_all(simulator))

    result = backupd("workspaces", "-c", str(config))

    assert result.returncode == 78
    (line,) = result.stderr.strip().splitlines()
    assert "instance_id" in line
    assert DEFAULT_INSTANCE_ID in line and "c3" * 16 in line


def test_help_lists_the_workspaces_command() -> None:
    result = backupd("--help")
    assert result.returncode == 0
    assert "workspaces" in result.stdout
