"""`backupd restore --import` as a subprocess: its exit code tells whether every job is known
to be imported, whichever shape the service's system task has."""

from __future__ import annotations

from pathlib import Path

from backupd.commands.snapshot import run_snapshots
from backupd.config import load_config
from backupd.simulator.server import DEFAULT_OBS_AK, DEFAULT_OBS_SK, Simulator
from tests.e2e.test_cli import backupd
from tests.helpers import make_config, workspace_id

WID = workspace_id(8)


def test_exit_code_follows_every_jobs_import_status_in_the_sdk_shape(
    tmp_path: Path, simulator: Simulator
) -> None:
    simulator.add_workspace(WID, "sales")
    for name in ("job", "the", "nightly"):
        simulator.add_job(WID, name)
    simulator.add_bucket("dr-bucket")
    (tmp_path / "obs-sk").write_text(DEFAULT_OBS_SK)
    restore = {
        "obs_bucket": "dr-bucket",
        "obs_endpoint": f"{simulator.url}/obs",
        "obs_ak": DEFAULT_OBS_AK,
        "obs_sk_file": str(tmp_path / "obs-sk"),
        "target_status": "SUBMITTED",
        "approvers": ["alice"],
    }
    config = make_config(tmp_path, simulator, {"sales": WID}, extra_source={"restore": restore})
    assert all(r.ok for r in run_snapshots(load_config(config)))
    simulator.imports.subtask_key = "subTasks"
    simulator.clear_workspace(WID)

    result = backupd("restore", "-c", str(config), "--import")

    assert result.returncode == 0, result.stderr
    assert result.stdout.count("SUCCESSFUL  created") == 3
    assert simulator.imports.requests[-1]["targetStatus"] == "SUBMITTED"
    assert simulator.imports.requests[-1]["approvers"] == [{"approverName": "alice"}]

    simulator.clear_workspace(WID)
    simulator.imports.subtask_names = {"nightly": "Import the  nightly job."}

    result = backupd("restore", "-c", str(config), "--import", "--approver", "bob")

    assert result.returncode == 1
    assert "UNKNOWN     created              nightly" in result.stdout
    assert "subtask Import the  nightly job.: SUCCESSFUL" in result.stdout
    assert "no known import status" in result.stderr and "nightly (UNKNOWN)" in result.stderr
    assert "Traceback" not in result.stderr
    assert simulator.imports.requests[-1]["approvers"] == [{"approverName": "bob"}]
