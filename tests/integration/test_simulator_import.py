"""The simulator's import side over real HTTP: what it refuses, as DataArts would."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator

import pytest

from backupd.dataarts.auth import StaticTokenAuth
from backupd.dataarts.client import ClientSettings, DataArtsClient
from backupd.dataarts.obs import ObsClient, ObsCredentials
from backupd.dataarts.retry import RetryPolicy
from backupd.errors import ApiError
from backupd.secret import Secret
from backupd.simulator.server import (
    DEFAULT_OBS_AK,
    DEFAULT_OBS_SK,
    DEFAULT_PROJECT_ID,
    DEFAULT_TOKEN,
    Simulator,
)
from tests.helpers import workspace_id

WID = workspace_id(5)


@pytest.fixture
def clients(simulator: Simulator) -> Iterator[tuple[DataArtsClient, ObsClient]]:
    simulator.add_workspace(WID, "sales")
    simulator.add_bucket("dr-bucket")
    settings = ClientSettings(
        endpoint=simulator.url, project_id=DEFAULT_PROJECT_ID, retry=RetryPolicy(attempts=1)
    )
    credentials = ObsCredentials(DEFAULT_OBS_AK, Secret(DEFAULT_OBS_SK))
    with (
        DataArtsClient(settings, StaticTokenAuth(Secret(DEFAULT_TOKEN))) as client,
        ObsClient(f"{simulator.url}/obs", credentials) as obs,
    ):
        yield client, obs


def _zip(entries: dict[str, object]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, value in entries.items():
            archive.writestr(name, value if isinstance(value, bytes) else json.dumps(value))
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("entries", "reason"),
    [
        ({"jobs/a/a.job": {"name": "b"}}, "does not hold job a"),
        ({"jobs/a/a.job": b"{not json"}, "not JSON"),
        ({"jobs/a/a.job": {"name": "a"}, "jobs/a/../../x": b"x"}, "unexpected entry"),
        ({"jobs/a/s.script": {"name": "t"}, "jobs/a/a.job": {"name": "a"}}, "hold script s"),
        ({"README.txt": b"hi"}, "unexpected entry"),
    ],
)
def test_an_invalid_import_file_is_refused_before_anything_changes(
    simulator: Simulator,
    clients: tuple[DataArtsClient, ObsClient],
    entries: dict[str, object],
    reason: str,
) -> None:
    client, obs = clients
    path = obs.put_object("dr-bucket", "bad.zip", _zip(entries))
    with pytest.raises(ApiError, match=reason) as caught:
        client.import_jobs(WID, path)
    assert caught.value.code == "DLF.0815"
    assert simulator.jobs(WID) == {} and simulator.scripts(WID) == {}


def test_missing_bucket_object_or_task_give_the_documented_codes(
    clients: tuple[DataArtsClient, ObsClient],
) -> None:
    client, _ = clients
    for path, code in (
        ("obs://no-bucket/x.zip", "DLF.1242"),
        ("obs://dr-bucket/missing.zip", "DLF.0815"),
        ("s3://dr-bucket/x.zip", "DLF.0803"),
    ):
        with pytest.raises(ApiError) as caught:
            client.check_file(WID, path)
        assert caught.value.code == code
    with pytest.raises(ApiError) as caught:
        client.system_task(WID, "no-such-task")
    assert caught.value.code == "DLF.0810"


def test_import_is_asynchronous_and_reports_one_subtask_per_job(
    simulator: Simulator, clients: tuple[DataArtsClient, ObsClient]
) -> None:
    client, obs = clients
    job = {"name": "作业_1", "nodes": [], "schedule": {"type": "EXECUTE_ONCE"}}
    path = obs.put_object("dr-bucket", "ok.zip", _zip({"jobs/作业_1/作业_1.job": job}))
    assert client.check_file(WID, path)["jobs"][0]["name"] == "作业_1"

    task_id = client.import_jobs(WID, path)

    first, second = client.system_task(WID, task_id), client.system_task(WID, task_id)
    assert first["status"] == "RUNNING"
    assert second["status"] == "SUCCESSFUL"
    assert [(s["name"], s["status"]) for s in second["subtasks"]] == [
        ("Import the 作业_1 job.", "SUCCESSFUL")
    ]
    assert simulator.jobs(WID) == {"作业_1": job}


def _unflagged_gb18030_zip(entries: dict[str, object]) -> bytes:
    """Member names as GB18030 bytes without the UTF-8 flag (a Chinese Windows zip tool)."""

    class Unflagged(zipfile.ZipInfo):
        def _encodeFilenameFlags(self) -> tuple[bytes, int]:
            return self.filename.encode("gb18030"), self.flag_bits & ~0x800

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, value in entries.items():
            data = value if isinstance(value, bytes) else json.dumps(value).encode()
            archive.writestr(Unflagged(name), data)
    return buffer.getvalue()


@pytest.mark.parametrize("unflagged", [False, True])
def test_an_import_file_with_extra_files_imports_its_jobs_and_scripts(
    simulator: Simulator, clients: tuple[DataArtsClient, ObsClient], unflagged: bool
) -> None:
    # What an export with exportDepend may carry besides jobs and scripts (resource and CDM
    # job definitions, beside a job or in top-level folders) comes back in a restored zip.
    client, obs = clients
    job = {"name": "誠信報表", "nodes": [], "schedule": {"type": "EXECUTE_ONCE"}}
    flat = {"name": "flat_job", "nodes": []}
    script = {"name": "誠信查詢", "type": "HiveSQL", "content": "SELECT 1"}
    entries: dict[str, object] = {
        "jobs/誠信報表/誠信報表.job": job,
        "jobs/誠信報表/誠信查詢.script": script,
        "jobs/誠信報表/维表资源.resource": {"name": "维表资源", "type": "jar"},
        "jobs/誠信報表/orders_mysql_to_obs.json": b'{\r\n    "jobs": []\r\n}',
        "jobs/flat_job.job": flat,
        "resources/lib.resource": {"name": "lib"},
        "cdm/sync_orders.json": b"{}",
    }
    data = _unflagged_gb18030_zip(entries) if unflagged else _zip(entries)
    path = obs.put_object("dr-bucket", "extras.zip", data)

    checked = client.check_file(WID, path)
    task_id = client.import_jobs(WID, path)

    assert sorted(j["name"] for j in checked["jobs"]) == ["flat_job", "誠信報表"]
    assert client.system_task(WID, task_id)["status"] == "RUNNING"
    assert client.system_task(WID, task_id)["status"] == "SUCCESSFUL"
    assert simulator.jobs(WID) == {"誠信報表": job, "flat_job": flat}
    assert simulator.scripts(WID) == {"誠信查詢": script}
