"""`restore --import` reads the import task as the service may answer it, over real HTTP.

The system task's per-job list is ``subtasks`` on the API page and ``subTasks`` in the SDKs;
each job's status is its own subtask's (matched by exact name), and a job whose status is
failed or not known makes the restore fail, naming it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest

from backupd.cli import main
from backupd.commands.snapshot import run_snapshots
from backupd.config import load_config
from backupd.dataarts.auth import StaticTokenAuth
from backupd.dataarts.client import ClientSettings, DataArtsClient
from backupd.dataarts.obs import ObsClient, ObsCredentials
from backupd.dataarts.retry import RetryPolicy
from backupd.errors import ApiError
from backupd.secret import Secret
from backupd.simulator.gateway import DEFAULT_TOKEN
from backupd.simulator.server import (
    DEFAULT_OBS_AK,
    DEFAULT_OBS_SK,
    DEFAULT_PROJECT_ID,
    Simulator,
)
from tests.helpers import make_config, workspace_id
from tests.import_polls import instant_import_polls

BUCKET = "dr-bucket"
SALES = workspace_id(7)
# Short names that are words of the service's prose ("Import the <job> job.") and a name that
# holds another: the old substring match handed such jobs each other's subtasks.
JOBS = ("job", "the", "job_batch", "x", "daily_load")
Shape = Literal["subtasks", "subTasks"]
SHAPES: list[Shape] = ["subtasks", "subTasks"]


@pytest.fixture(autouse=True)
def import_polls(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits before each poll of an import task, recorded instead of slept."""
    return instant_import_polls(monkeypatch)


def restore_config(tmp_path: Path, simulator: Simulator, repo: Path, **restore: object) -> Path:
    simulator.add_bucket(BUCKET)
    sk_file = tmp_path / "obs-sk"
    sk_file.write_text(DEFAULT_OBS_SK)
    section = {
        "obs_bucket": BUCKET,
        "obs_endpoint": f"{simulator.url}/obs",
        "obs_ak": DEFAULT_OBS_AK,
        "obs_sk_file": str(sk_file),
        **restore,
    }
    return make_config(
        tmp_path,
        simulator,
        {"sales": SALES},
        extra_source={"restore": section},
        extra={"repository": {"path": str(repo)}},
    )


@pytest.fixture(scope="module")
def snapshot_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository with one snapshot of a workspace holding JOBS. Built once: a restore only
    reads it."""
    tmp_path = tmp_path_factory.mktemp("snapshot")
    with Simulator() as simulator:
        simulator.add_workspace(SALES, "sales")
        for name in JOBS:
            simulator.add_job(SALES, name)
        config = restore_config(tmp_path, simulator, tmp_path / "repo")
        results = run_snapshots(load_config(config))
    assert results and all(r.ok for r in results)
    return tmp_path / "repo"


@pytest.fixture
def backed_up(tmp_path: Path, simulator: Simulator, snapshot_repo: Path) -> Path:
    """The snapshot of a workspace holding JOBS, and that workspace now empty (the disaster)."""
    simulator.add_workspace(SALES, "sales")
    return restore_config(tmp_path, simulator, snapshot_repo)


def restore_import(
    capsys: pytest.CaptureFixture[str], config: Path, *args: str
) -> tuple[int, dict[str, str], str]:
    """Exit code, each job's reported status, stderr."""
    code = main(["--log-level", "warning", "restore", "-c", str(config), "--import", *args])
    captured = capsys.readouterr()
    statuses: dict[str, str] = {}
    for line in captured.out.splitlines():
        # "  <status>  <action>  <job>[  <message>]"; the names in JOBS hold no spaces
        words = line.split()
        if line.startswith("  ") and len(words) > 2 and words[1:2] == ["created"]:
            statuses[words[2]] = words[0]
    return code, statuses, captured.err


@pytest.mark.parametrize("shape", SHAPES)
def test_each_job_gets_its_own_status_in_either_shape_of_the_task(
    simulator: Simulator,
    backed_up: Path,
    capsys: pytest.CaptureFixture[str],
    shape: Shape,
) -> None:
    simulator.imports.subtask_key = shape

    code, statuses, stderr = restore_import(capsys, backed_up)

    assert code == 0, stderr
    assert statuses == dict.fromkeys(JOBS, "SUCCESSFUL")
    assert set(simulator.jobs(SALES)) == set(JOBS)


@pytest.mark.parametrize("shape", SHAPES)
def test_a_failed_job_is_its_own_and_fails_the_restore(
    simulator: Simulator,
    backed_up: Path,
    capsys: pytest.CaptureFixture[str],
    shape: Shape,
) -> None:
    simulator.imports.subtask_key = shape
    simulator.imports.fail_jobs = ["x"]

    code, statuses, stderr = restore_import(capsys, backed_up)

    assert code == 1
    # 'job' and 'the' appear in x's subtask name ("Import the x job.") and keep their own.
    assert statuses == {**dict.fromkeys(JOBS, "SUCCESSFUL"), "x": "FAILED"}
    assert "1 job(s) failed to import: x" in stderr
    assert "import task" in stderr and "ended FAILED" in stderr
    assert set(simulator.jobs(SALES)) == set(JOBS) - {"x"}


ODD_NAMES: list[object] = [
    None,
    "",
    42,
    "Import the job.",
    "Import the daily_load job",
    "导入作业 daily_load",
]


# Each name once, the two shapes in turn: the key that holds the list has no say in how a name
# is read (tests/unit/test_import_status.py reads every name and every key on its own).
@pytest.mark.parametrize(
    ("odd_name", "shape"), [(name, SHAPES[i % 2]) for i, name in enumerate(ODD_NAMES)]
)
def test_a_job_whose_subtask_has_no_usable_name_is_unknown_and_fails_the_restore(
    simulator: Simulator,
    backed_up: Path,
    capsys: pytest.CaptureFixture[str],
    shape: Shape,
    odd_name: object,
) -> None:
    simulator.imports.subtask_key = shape
    simulator.imports.subtask_names = {"daily_load": odd_name}

    code, statuses, stderr = restore_import(capsys, backed_up)

    # The task itself succeeded and the job was imported, but nothing says so for it.
    assert set(simulator.jobs(SALES)) == set(JOBS)
    assert code == 1
    assert statuses == {**dict.fromkeys(JOBS, "SUCCESSFUL"), "daily_load": "UNKNOWN"}
    assert "1 job(s) with no known import status" in stderr
    assert "daily_load (UNKNOWN)" in stderr
    assert "failed to import" not in stderr


def test_a_failed_and_an_unknown_job_are_both_named(
    simulator: Simulator, backed_up: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    simulator.imports.subtask_key = "subTasks"
    simulator.imports.fail_jobs = ["the"]
    simulator.imports.subtask_names = {"job": None}

    code, statuses, stderr = restore_import(capsys, backed_up)

    assert code == 1
    assert statuses == {**dict.fromkeys(JOBS, "SUCCESSFUL"), "the": "FAILED", "job": "UNKNOWN"}
    assert "failed to import: the" in stderr
    assert "no known import status" in stderr and "job (UNKNOWN)" in stderr


def test_the_simulated_task_uses_the_chosen_key_only(
    simulator: Simulator, backed_up: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    simulator.imports.subtask_key = "subTasks"
    assert restore_import(capsys, backed_up)[0] == 0
    [task_path] = {c.path for c in simulator.calls if "/system-tasks/" in c.path}
    settings = ClientSettings(
        endpoint=simulator.url, project_id=DEFAULT_PROJECT_ID, retry=RetryPolicy(attempts=1)
    )
    with DataArtsClient(settings, StaticTokenAuth(Secret(DEFAULT_TOKEN))) as client:
        task = client.system_task(SALES, task_path.rsplit("/", 1)[1])
    assert "subtasks" not in task
    assert sorted(s["name"] for s in task["subTasks"]) == sorted(
        f"Import the {job} job." for job in JOBS
    )


# ---- review: targetStatus and approvers ------------------------------------------------------


def test_target_status_and_approvers_are_sent_from_the_config_or_the_flags(
    tmp_path: Path,
    simulator: Simulator,
    snapshot_repo: Path,
    backed_up: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, stderr = restore_import(capsys, backed_up)
    assert code == 0, stderr
    assert "targetStatus" not in simulator.imports.requests[-1]
    assert "approvers" not in simulator.imports.requests[-1]

    configured = restore_config(
        tmp_path, simulator, snapshot_repo, target_status="SUBMITTED", approvers=["alice", "王伟"]
    )
    simulator.clear_workspace(SALES)
    code, _, stderr = restore_import(capsys, configured)
    assert code == 0, stderr
    request = simulator.imports.requests[-1]
    assert request["targetStatus"] == "SUBMITTED"
    assert request["approvers"] == [{"approverName": "alice"}, {"approverName": "王伟"}]
    assert request["sameNamePolicy"] == "SKIP"

    code, _, stderr = restore_import(
        capsys,
        configured,
        "--overwrite",
        "--target-status",
        "PRODUCTION",
        "--approver",
        "bob",
        "--approver",
        "li.na",
    )
    assert code == 0, stderr
    request = simulator.imports.requests[-1]
    assert request["targetStatus"] == "PRODUCTION"
    assert request["approvers"] == [{"approverName": "bob"}, {"approverName": "li.na"}]
    assert request["sameNamePolicy"] == "OVERWRITE"
    assert len(simulator.imports.requests) == 3


def test_the_simulator_refuses_an_undocumented_target_status(simulator: Simulator) -> None:
    simulator.add_workspace(SALES, "sales")
    simulator.add_bucket(BUCKET)
    credentials = ObsCredentials(DEFAULT_OBS_AK, Secret(DEFAULT_OBS_SK))
    settings = ClientSettings(
        endpoint=simulator.url, project_id=DEFAULT_PROJECT_ID, retry=RetryPolicy(attempts=1)
    )
    with (
        DataArtsClient(settings, StaticTokenAuth(Secret(DEFAULT_TOKEN))) as client,
        ObsClient(f"{simulator.url}/obs", credentials) as obs,
        pytest.raises(ApiError) as caught,
    ):
        path = obs.put_object(BUCKET, "jobs.zip", b"PK")
        client.import_jobs(SALES, path, target_status="DEVELOP", approvers=["alice"])
    assert caught.value.code == "DLF.3051"
    assert simulator.imports.requests == []


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["-o", "OUT", "--target-status", "SUBMITTED"], "--target-status and --approver go"),
        (["-o", "OUT", "--approver", "alice"], "--target-status and --approver go"),
        (["--import", "--approver", " "], "--approver needs a user name"),
    ],
)
def test_review_flags_need_import(
    tmp_path: Path,
    backed_up: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    text: str,
) -> None:
    out = tmp_path / "jobs.zip"
    args = [str(out) if arg == "OUT" else arg for arg in args]
    code = main(["--log-level", "warning", "restore", "-c", str(backed_up), *args])
    assert code == 2
    assert text in capsys.readouterr().err
    assert not out.exists()


def test_in_parts_an_unknown_job_goes_on_and_a_failed_one_stops_the_rest(
    tmp_path: Path,
    simulator: Simulator,
    snapshot_repo: Path,
    backed_up: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    one_job_a_part = restore_config(tmp_path, simulator, snapshot_repo, max_import_bytes=2000)
    order = sorted(JOBS)  # the parts' order: daily_load, job, job_batch, the, x
    simulator.imports.subtask_key = "subTasks"
    simulator.imports.subtask_names = {order[0]: "?"}

    code, statuses, stderr = restore_import(capsys, one_job_a_part)

    assert code == 1
    assert len(simulator.imports.requests) == len(JOBS)  # one part per job, every one sent
    assert statuses == {**dict.fromkeys(JOBS, "SUCCESSFUL"), order[0]: "UNKNOWN"}
    assert f"{order[0]} (UNKNOWN)" in stderr and "not imported" not in stderr

    simulator.clear_workspace(SALES)
    simulator.imports.requests.clear()
    simulator.imports.subtask_names = {}
    simulator.imports.fail_jobs = [order[1]]

    code, statuses, stderr = restore_import(capsys, one_job_a_part)

    assert code == 1
    assert len(simulator.imports.requests) == 2
    assert statuses == {order[0]: "SUCCESSFUL", order[1]: "FAILED"}
    assert f"failed to import: {order[1]}\n" in stderr
    assert "3 job(s) not imported (the parts after a failed one are not sent): " in stderr
    assert ", ".join(order[2:]) in stderr
    assert set(simulator.jobs(SALES)) == {order[0]}
