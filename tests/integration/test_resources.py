"""Resource definitions end to end: backed up, committed like jobs, guarded against glitches."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backupd.commands.snapshot import run_snapshots
from backupd.config import load_config
from backupd.simulator.server import Simulator
from tests.helpers import expected_tree, git, make_config, read_tree, workspace_id

WID = workspace_id(1)


@pytest.fixture
def config_path(tmp_path: Path, simulator: Simulator) -> Path:
    simulator.add_workspace(WID, "sales")
    simulator.populate(WID, 3, resources=4)
    simulator.add_resource(
        WID,
        "udf_main",
        resource_type="jar",
        location="obs://dlf-lib/udf/udf-main-1.0.jar",
        depend_files=["obs://dlf-lib/udf/commons-1.2.jar"],
        desc="主 UDF 包",
        directory="/udf",
    )
    return make_config(tmp_path, simulator, {"sales": WID})


def test_resource_definitions_are_backed_up_and_their_changes_committed_like_jobs(
    simulator: Simulator, config_path: Path
) -> None:
    config = load_config(config_path)
    repo = config_path.parent / "repo"
    (first,) = run_snapshots(config)
    assert first.ok and first.resources == 5
    folder = repo / "prod" / "sales"
    assert read_tree(folder) == expected_tree(simulator, WID)
    stored = json.loads((folder / "resources" / "udf_main.resource").read_text("utf-8"))
    assert stored == simulator.resources(WID)["udf_main"]
    assert stored["dependFiles"] == ["obs://dlf-lib/udf/commons-1.2.jar"]
    assert "resources: 5 added" in git(repo, "log", "-1", "--format=%s")

    names = sorted(simulator.resources(WID))
    removed = next(name for name in names if name != "udf_main")
    simulator.modify_resource(WID, "udf_main")  # a new version of the jar in OBS
    simulator.add_resource(WID, "etl_conf", resource_type="file", directory="/conf")
    simulator.delete_resource(WID, removed)
    (second,) = run_snapshots(config)

    assert second.ok and second.commit
    assert read_tree(folder) == expected_tree(simulator, WID)
    message = git(repo, "log", "-1", "--format=%B")
    assert message.splitlines()[0] == (
        "prod/sales: 0 added, 0 changed, 0 removed; resources: 1 added, 1 changed, 1 removed"
    )
    assert "  + etl_conf" in message
    assert "  ~ udf_main" in message
    assert f"  - {removed}" in message
    diff = git(repo, "show", "--format=", "--", "prod/sales/resources/udf_main.resource")
    assert '-  "location": "obs://dlf-lib/udf/udf-main-1.0.jar",' in diff

    (third,) = run_snapshots(config)
    assert third.ok and third.commit is None


def test_losing_every_resource_at_once_is_refused_unless_allowed(
    simulator: Simulator, config_path: Path, tmp_path: Path
) -> None:
    config = load_config(config_path)
    repo = config_path.parent / "repo"
    run_snapshots(config)
    head = git(repo, "rev-parse", "HEAD")
    for name in list(simulator.resources(WID)):
        simulator.delete_resource(WID, name)

    (refused,) = run_snapshots(config)
    assert not refused.ok
    assert "listed no resources" in (refused.error or "")
    assert git(repo, "rev-parse", "HEAD") == head
    assert len(list((repo / "prod" / "sales" / "resources").iterdir())) == 5

    (allowed,) = run_snapshots(config, allow_mass_delete=True)
    assert allowed.ok and allowed.commit
    assert not (repo / "prod" / "sales" / "resources").exists()
    assert "resources: 5 removed" in git(repo, "log", "-1", "--format=%s")
