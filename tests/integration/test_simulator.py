"""The DataArts simulator, exercised over real HTTP on loopback."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from backupd.simulator.server import (
    DEFAULT_PROJECT_ID,
    DEFAULT_TOKEN,
    AuthRequest,
    CallRecord,
    Simulator,
)

WS = "a1" * 16
OTHER_WS = "b2" * 16
JOBS = f"/v1/{DEFAULT_PROJECT_ID}/jobs"
SCRIPTS = f"/v1/{DEFAULT_PROJECT_ID}/scripts"
EXPORT = f"/v1/{DEFAULT_PROJECT_ID}/jobs/batch-export"


def _simulator(**options: Any) -> Simulator:
    simulator = Simulator(**options)
    simulator.add_workspace(WS, "sales")
    simulator.add_workspace(OTHER_WS, "finance")
    simulator.populate(WS, 40, realtime_fraction=0.25, chinese_fraction=0.3)
    return simulator


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with _simulator() as simulator:
        yield simulator


@pytest.fixture
def client(sim: Simulator) -> Iterator[httpx.Client]:
    headers = {"X-Auth-Token": DEFAULT_TOKEN, "workspace": WS}
    with httpx.Client(base_url=sim.url, headers=headers, timeout=5) as http:
        yield http


def _list_all(
    client: httpx.Client, path: str, key: str, limit: int, step: int
) -> tuple[list[str], set[int]]:
    """Page through a list; ``step`` is how far ``offset`` moves per page."""
    names: list[str] = []
    totals: set[int] = set()
    offset = 0
    while True:
        response = client.get(path, params={"limit": limit, "offset": offset})
        assert response.status_code == 200, response.text
        body = response.json()
        totals.add(body["total"])
        names += [row["name"] for row in body[key]]
        if len(body[key]) < limit:
            return names, totals
        offset += step


def _export(client: httpx.Client, names: list[str], **body: Any) -> httpx.Response:
    return client.post(EXPORT, json={"jobList": names, **body})


def _unzip(content: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        return {info.filename: archive.read(info) for info in archive.infolist()}


def _batch_names(sim: Simulator, job_type: str = "BATCH") -> list[str]:
    return sorted(name for name, job in sim.jobs(WS).items() if job["processType"] == job_type)


# ---- listing ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("offset_mode", "step"), [("page", 1), ("record", 7)])
def test_paging_walks_every_job_once_with_a_stable_total(offset_mode: str, step: int) -> None:
    with _simulator(offset_mode=offset_mode) as simulator:
        headers = {"X-Auth-Token": DEFAULT_TOKEN, "workspace": WS}
        with httpx.Client(base_url=simulator.url, headers=headers) as http:
            names, totals = _list_all(http, JOBS, "jobs", limit=7, step=step)
            expected = _batch_names(simulator)
            assert names == expected
            assert totals == {len(expected)}


def test_offset_modes_differ_as_documented() -> None:
    results = {}
    for mode in ("page", "record"):
        with _simulator(offset_mode=mode) as simulator:
            headers = {"X-Auth-Token": DEFAULT_TOKEN, "workspace": WS}
            with httpx.Client(base_url=simulator.url, headers=headers) as http:
                response = http.get(JOBS, params={"limit": 5, "offset": 1})
                results[mode] = [row["name"] for row in response.json()["jobs"]]
            expected = _batch_names(simulator)
    assert results["page"] == expected[5:10]
    assert results["record"] == expected[1:6]


def test_job_types_are_listed_separately(sim: Simulator, client: httpx.Client) -> None:
    batch = client.get(JOBS, params={"limit": 1000}).json()
    realtime = client.get(JOBS, params={"jobType": "REAL_TIME", "limit": 1000}).json()
    assert {row["jobType"] for row in batch["jobs"]} == {"BATCH"}
    assert {row["jobType"] for row in realtime["jobs"]} == {"REAL_TIME"}
    assert realtime["total"] > 0
    assert batch["total"] + realtime["total"] == len(sim.jobs(WS))
    assert [row["name"] for row in realtime["jobs"]] == _batch_names(sim, "REAL_TIME")


def test_default_limit_is_ten_and_rows_carry_the_documented_fields(client: httpx.Client) -> None:
    rows = client.get(JOBS).json()["jobs"]
    assert len(rows) == 10
    for field in ("name", "jobType", "owner", "priority", "status", "createUser", "createTime"):
        assert field in rows[0]
    assert {"lastUpdateTime", "lastUpdateUser", "path", "singleNodeJobFlag"} <= set(rows[0])
    assert {"lastInstanceStatus", "lastInstanceEndTime"} <= set(rows[0])


@pytest.mark.parametrize(
    "query",
    [{"limit": 1001}, {"limit": 0}, {"limit": "ten"}, {"offset": -1}, {"jobType": "STREAM"}],
)
def test_bad_list_parameters_are_rejected(client: httpx.Client, query: dict[str, Any]) -> None:
    response = client.get(JOBS, params=query)
    assert response.status_code == 400
    assert response.json() == {
        "error_code": "DLF.3051",
        "error_msg": "The request parameter is invalid.",
    }


def test_max_page_size_is_configurable() -> None:
    with _simulator(max_page_size=100) as simulator:
        headers = {"X-Auth-Token": DEFAULT_TOKEN, "workspace": WS}
        with httpx.Client(base_url=simulator.url, headers=headers) as http:
            assert http.get(JOBS, params={"limit": 100}).status_code == 200
            assert http.get(JOBS, params={"limit": 101}).status_code == 400


def test_script_list_pages_full_definitions(sim: Simulator, client: httpx.Client) -> None:
    names, totals = _list_all(client, SCRIPTS, "scripts", limit=4, step=1)
    assert names == sorted(sim.scripts(WS))
    assert totals == {len(names)}
    first = client.get(SCRIPTS, params={"limit": 1}).json()["scripts"][0]
    assert first == sim.scripts(WS)[names[0]]
    assert client.get(SCRIPTS, params={"limit": 101}).status_code == 400


def test_populate_makes_shared_and_standalone_scripts(sim: Simulator) -> None:
    usage: dict[str, int] = dict.fromkeys(sim.scripts(WS), 0)
    for name in sim.jobs(WS):
        for script in sim.job_scripts(WS, name):
            usage[script] += 1
    assert max(usage.values()) >= 2
    assert min(usage.values()) == 0
    assert any(not name.isascii() for name in sim.jobs(WS))


def test_populate_is_deterministic_for_a_seed() -> None:
    first, second = _simulator(seed=7), _simulator(seed=7)
    assert first.jobs(WS) == second.jobs(WS)
    assert first.scripts(WS) == second.scripts(WS)
    names = sorted(first.jobs(WS))[:5]
    assert first.export_files(WS, names) == second.export_files(WS, names)


# ---- workspace header and auth ---------------------------------------------------------------


@pytest.mark.parametrize("workspace", [None, "f" * 32])
def test_workspace_header_is_required_and_must_exist(sim: Simulator, workspace: str | None) -> None:
    headers = {"X-Auth-Token": DEFAULT_TOKEN}
    if workspace:
        headers["workspace"] = workspace
    with httpx.Client(base_url=sim.url, headers=headers) as http:
        for response in (http.get(JOBS), http.get(SCRIPTS), http.post(EXPORT, json={})):
            assert response.status_code == 400
            assert response.json()["error_code"] == "DLF.3051"


def test_workspaces_are_isolated(client: httpx.Client) -> None:
    response = client.get(JOBS, headers={"workspace": OTHER_WS})
    assert response.json() == {"total": 0, "jobs": []}


@pytest.mark.parametrize("token", [None, "wrong"])
def test_requests_without_a_valid_token_get_401(sim: Simulator, token: str | None) -> None:
    headers = {"workspace": WS} | ({"X-Auth-Token": token} if token else {})
    with httpx.Client(base_url=sim.url, headers=headers) as http:
        response = http.get(JOBS)
    assert response.status_code == 401
    assert response.json()["error_code"] == "APIGW.0301"
    assert sim.calls == []


def test_authenticate_hook_replaces_the_token_check() -> None:
    seen: list[AuthRequest] = []

    def authenticate(request: AuthRequest) -> str | None:
        seen.append(request)
        return None if request.headers.get("Authorization") == "SDK-HMAC-SHA256 ok" else "bad sig"

    with (
        _simulator(authenticate=authenticate) as simulator,
        httpx.Client(base_url=simulator.url, headers={"workspace": WS}) as http,
    ):
        rejected = http.get(JOBS, params={"limit": 3})
        accepted = http.get(JOBS, headers={"Authorization": "SDK-HMAC-SHA256 ok"})
    assert rejected.status_code == 401
    assert rejected.json() == {"error_code": "APIGW.0301", "error_msg": "bad sig"}
    assert accepted.status_code == 200
    assert seen[0].raw_path == f"{JOBS}?limit=3"
    assert seen[0].method == "GET"
    assert seen[0].body == b""


def test_wrong_project_id_is_an_apig_404(sim: Simulator, client: httpx.Client) -> None:
    response = client.get("/v1/" + "9" * 32 + "/jobs")
    assert response.status_code == 404
    assert response.json()["error_code"] == "APIGW.0101"
    assert client.get(f"/v1/{DEFAULT_PROJECT_ID}/nothing").status_code == 404


def test_no_auth_when_auth_is_not_required() -> None:
    with (
        _simulator(require_auth=False) as simulator,
        httpx.Client(base_url=simulator.url) as http,
    ):
        assert http.get(JOBS, headers={"workspace": WS}).status_code == 200


# ---- batch export ----------------------------------------------------------------------------


def test_export_zip_holds_exactly_export_files(sim: Simulator, client: httpx.Client) -> None:
    names = sorted(sim.jobs(WS))[:12]
    response = _export(client, names, exportDepend=True)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.headers["content-disposition"] == "attachment; filename=jobs.zip"
    assert _unzip(response.content) == sim.export_files(WS, names)
    job = json.loads(sim.export_files(WS, names[:1])[f"jobs/{names[0]}/{names[0]}.job"])
    assert job == sim.jobs(WS)[names[0]]


def test_export_is_compact_unsorted_utf8_json(sim: Simulator) -> None:
    name = next(name for name in sim.jobs(WS) if not name.isascii())
    raw = sim.export_files(WS, [name])[f"jobs/{name}/{name}.job"]
    text = raw.decode("utf-8")
    assert text.startswith('{"name":') and "\n" not in text and ": " not in text
    assert name in text  # not \\u-escaped


def test_export_without_depend_has_only_job_files(sim: Simulator, client: httpx.Client) -> None:
    names = sorted(sim.jobs(WS))[:5]
    files = _unzip(_export(client, names, exportDepend=False).content)
    assert sorted(files) == sorted(f"jobs/{name}/{name}.job" for name in names)


def test_shared_script_is_repeated_in_each_job_folder(sim: Simulator, client: httpx.Client) -> None:
    sim.add_job(WS, "job_one", scripts=["shared_sql"])
    sim.add_job(WS, "job-two.v2", scripts=["shared_sql", "only_two_sql"])
    files = _unzip(_export(client, ["job_one", "job-two.v2"]).content)
    script = json.dumps(sim.scripts(WS)["shared_sql"], separators=(",", ":"), ensure_ascii=False)
    assert files["jobs/job_one/shared_sql.script"] == script.encode()
    assert files["jobs/job-two.v2/shared_sql.script"] == script.encode()
    assert "jobs/job-two.v2/only_two_sql.script" in files
    assert "jobs/job_one/only_two_sql.script" not in files


def test_chinese_names_round_trip_with_the_utf8_flag(sim: Simulator, client: httpx.Client) -> None:
    sim.add_job(WS, "每日销售汇总_12", scripts=["清洗脚本_3"])
    response = _export(client, ["每日销售汇总_12"])
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        infos = archive.infolist()
    assert [info.filename for info in infos] == [
        "jobs/每日销售汇总_12/每日销售汇总_12.job",
        "jobs/每日销售汇总_12/清洗脚本_3.script",
    ]
    assert all(info.flag_bits & 0x800 for info in infos)


@pytest.mark.parametrize(
    "body",
    [
        {"jobList": [f"job_{index}" for index in range(101)]},
        {"jobList": []},
        {"jobList": "job_1"},
        {"exportDepend": True},
        {"jobList": ["x"], "exportDepend": "yes"},
    ],
)
def test_bad_export_requests_are_dlf_3051(client: httpx.Client, body: dict[str, Any]) -> None:
    response = client.post(EXPORT, json=body)
    assert response.status_code == 400
    assert response.json()["error_code"] == "DLF.3051"


def test_malformed_export_json_is_dlf_3051(client: httpx.Client) -> None:
    response = client.post(EXPORT, content=b'{"jobList": [', headers={"Content-Type": "json"})
    assert response.status_code == 400
    assert response.json()["error_code"] == "DLF.3051"


def test_one_unknown_name_fails_the_whole_export(sim: Simulator, client: httpx.Client) -> None:
    names = [*sorted(sim.jobs(WS))[:3], "no_such_job"]
    response = _export(client, names)
    assert response.status_code == 400
    assert response.json() == {"error_code": "DLF.0100", "error_msg": "The job does not exist."}


def test_a_full_batch_of_100_exports() -> None:
    simulator = Simulator()
    simulator.add_workspace(WS, "big")
    names = simulator.populate(WS, 100, scripts=10)
    with (
        simulator,
        httpx.Client(
            base_url=simulator.url, headers={"X-Auth-Token": DEFAULT_TOKEN, "workspace": WS}
        ) as http,
    ):
        response = _export(http, names)
    assert response.status_code == 200
    assert _unzip(response.content) == simulator.export_files(WS, names)


# ---- mutations -------------------------------------------------------------------------------


def _row(client: httpx.Client, name: str, job_type: str = "BATCH") -> dict[str, Any]:
    rows = client.get(JOBS, params={"limit": 1000, "jobType": job_type}).json()["jobs"]
    return next(row for row in rows if row["name"] == name)


def test_modify_job_changes_definition_and_list_row(sim: Simulator, client: httpx.Client) -> None:
    sim.add_job(WS, "etl_orders", scripts=["orders_sql"], user="alice")
    before, row_before = sim.jobs(WS)["etl_orders"], _row(client, "etl_orders")
    sim.modify_job(WS, "etl_orders", user="bob")
    after, row_after = sim.jobs(WS)["etl_orders"], _row(client, "etl_orders")
    assert after != before
    assert after["version"] == before["version"] + 1
    assert after["lastUpdateUser"] == row_after["lastUpdateUser"] == "bob"
    assert row_after["lastUpdateTime"] > row_before["lastUpdateTime"]
    sim.modify_job(WS, "etl_orders")  # the next edit changes something else, still a change
    assert sim.jobs(WS)["etl_orders"] != after
    exported = _unzip(_export(client, ["etl_orders"]).content)
    assert json.loads(exported["jobs/etl_orders/etl_orders.job"]) == sim.jobs(WS)["etl_orders"]


def test_set_script_does_not_touch_the_job(sim: Simulator, client: httpx.Client) -> None:
    sim.add_job(WS, "etl_users", scripts=["users_sql"])
    row_before = _row(client, "etl_users")
    sim.set_script(WS, "users_sql", "SELECT 1;\n-- 新的注释\n")
    assert _row(client, "etl_users")["lastUpdateTime"] == row_before["lastUpdateTime"]
    files = _unzip(_export(client, ["etl_users"]).content)
    assert json.loads(files["jobs/etl_users/users_sql.script"])["content"].endswith("新的注释\n")


def test_delete_and_rename_are_reflected(sim: Simulator, client: httpx.Client) -> None:
    victim, renamed = sorted(sim.jobs(WS))[:2]
    sim.delete_job(WS, victim)
    sim.rename_job(WS, renamed, "renamed_job")
    rows = client.get(JOBS, params={"limit": 1000, "jobType": "BATCH"}).json()
    realtime = client.get(JOBS, params={"limit": 1000, "jobType": "REAL_TIME"}).json()
    names = {row["name"] for row in rows["jobs"] + realtime["jobs"]}
    assert victim not in names and renamed not in names and "renamed_job" in names
    assert rows["total"] + realtime["total"] == len(sim.jobs(WS))
    assert _export(client, [victim]).json()["error_code"] == "DLF.0100"
    assert sim.jobs(WS)["renamed_job"]["name"] == "renamed_job"


def test_getters_return_copies(sim: Simulator) -> None:
    name = next(iter(sim.jobs(WS)))
    sim.jobs(WS)[name]["nodes"].clear()
    sim.scripts(WS).clear()
    assert sim.jobs(WS)[name]["nodes"]
    assert sim.scripts(WS)


def test_mutation_errors(sim: Simulator) -> None:
    with pytest.raises(KeyError):
        sim.modify_job(WS, "missing")
    with pytest.raises(KeyError):
        sim.jobs("f" * 32)
    sim.add_job(WS, "dup")
    with pytest.raises(ValueError, match="already exists"):
        sim.add_job(WS, "dup")


# ---- control API and call log ----------------------------------------------------------------


def test_control_api_mutates_and_reports_state(sim: Simulator) -> None:
    with httpx.Client(base_url=sim.url) as http:  # no token needed
        added = http.post(
            "/_sim/mutate",
            json={"op": "add_job", "args": {"workspace_id": WS, "name": "via_http"}},
        )
        populated = http.post(
            "/_sim/mutate", json={"op": "populate", "args": {"workspace_id": OTHER_WS, "jobs": 3}}
        )
        bad = http.post("/_sim/mutate", json={"op": "drop_tables", "args": {}})
        missing = http.post(
            "/_sim/mutate", json={"op": "delete_job", "args": {"workspace_id": WS, "name": "no"}}
        )
        state = http.get("/_sim/state", params={"workspace": OTHER_WS}).json()
    assert added.json() == {"ok": True, "result": None}
    assert "via_http" in sim.jobs(WS)
    assert populated.json()["ok"] is True
    assert sorted(populated.json()["result"]) == sorted(state["jobs"])
    assert state == {"jobs": sim.jobs(OTHER_WS), "scripts": sim.scripts(OTHER_WS)}
    assert bad.status_code == missing.status_code == 400
    assert bad.json()["ok"] is False


def test_calls_are_recorded(sim: Simulator, client: httpx.Client) -> None:
    names = sorted(sim.jobs(WS))[:2]
    response = client.get(JOBS, params={"limit": 5, "offset": 0})
    _export(client, names)
    _export(client, ["missing"])
    client.get(JOBS, headers={"workspace": ""})
    assert response.headers["x-request-id"]
    assert sim.calls == [
        CallRecord("GET", JOBS, {"limit": "5", "offset": "0"}, WS, (), 200),
        CallRecord("POST", EXPORT, {}, WS, tuple(names), 200),
        CallRecord("POST", EXPORT, {}, WS, ("missing",), 400),
        CallRecord("GET", JOBS, {}, "", (), 400),
    ]
    with httpx.Client(base_url=sim.url) as http:
        recorded = http.get("/_sim/calls").json()
    assert recorded[1]["job_names"] == names
    assert recorded[1]["status"] == 200
    sim.clear_calls()
    assert sim.calls == []


def test_list_noise_does_not_change_exports(sim: Simulator, client: httpx.Client) -> None:
    names = sorted(sim.jobs(WS))[:5]
    first = _unzip(_export(client, names).content)
    for _ in range(3):
        client.get(JOBS, params={"limit": 1000})
    assert _unzip(_export(client, names).content) == first


def test_concurrent_requests_while_mutating(sim: Simulator) -> None:
    names = sorted(sim.jobs(WS))[:10]
    headers = {"X-Auth-Token": DEFAULT_TOKEN, "workspace": WS}

    def export_and_list(index: int) -> int:
        with httpx.Client(base_url=sim.url, headers=headers, timeout=5) as http:
            sim.modify_job(WS, names[index % len(names)])
            assert http.get(JOBS, params={"limit": 1000}).status_code == 200
            return _export(http, names).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(export_and_list, range(16)))
    assert statuses == [200] * 16
    assert len(sim.calls) == 32


def test_faults_throttle_fail_truncate_and_empty_listings() -> None:
    with Simulator() as sim:
        sim.add_workspace("a" * 32, "ws")
        sim.populate("a" * 32, 3)
        headers = {"X-Auth-Token": DEFAULT_TOKEN, "workspace": "a" * 32}
        base = f"{sim.url}/v1/{sim.project_id}"
        with httpx.Client(headers=headers) as http:
            reply = http.post(f"{sim.url}/_sim/faults", json={"empty_listings": 1})
            assert reply.json()["ok"] is True
            assert http.get(f"{base}/jobs").json() == {"total": 0, "jobs": []}
            assert http.get(f"{base}/jobs").json()["total"] > 0
            sim.faults.error_rate = 1.0
            assert http.get(f"{base}/jobs").status_code in (500, 503)
            sim.faults.error_rate = 0.0
            sim.faults.throttle_rps = 2
            statuses = [http.get(f"{base}/jobs").status_code for _ in range(4)]
            assert 429 in statuses
            sim.faults.throttle_rps = 0
            names = sorted(sim.jobs("a" * 32))
            sim.faults.export_throttle_rps = 1  # exports have a limit of their own
            export = {"jobList": names[:1]}
            first = http.post(f"{base}/jobs/batch-export", json=export).status_code
            second = http.post(f"{base}/jobs/batch-export", json=export).status_code
            assert (first, second) == (200, 429)
            assert http.get(f"{base}/jobs").status_code == 200  # listing is not counted
            sim.faults.export_throttle_rps = 0
            sim.faults.truncate_rate = 1.0
            with pytest.raises(httpx.RemoteProtocolError):
                http.post(f"{base}/jobs/batch-export", json={"jobList": names})
            assert http.post(f"{sim.url}/_sim/faults", json={"nope": 1}).status_code == 400


def test_each_api_has_a_throttle_of_its_own(sim: Simulator, client: httpx.Client) -> None:
    """dlf-api.md §7.1, §12: the limits are per API, so a full job-list budget leaves the
    script list and the export answering."""
    sim.faults.throttle_per_api = {"jobs_list": 2, "export": 1}
    names = sorted(sim.jobs(WS))
    assert [client.get(JOBS).status_code for _ in range(3)] == [200, 200, 429]
    assert [client.get(SCRIPTS).status_code for _ in range(3)] == [200, 200, 200]
    export = {"jobList": names[:1]}
    assert [client.post(EXPORT, json=export).status_code for _ in range(2)] == [200, 429]
    throttled = client.get(JOBS)
    assert throttled.status_code == 429
    assert throttled.json()["error_code"] == "APIGW.0308"
    assert throttled.headers["Retry-After"] == "1"
    served = [(r.api, r.status) for r in sim.served]
    assert served.count(("jobs_list", 429)) == 2
    assert served.count(("scripts_list", 200)) == 3
    assert served.count(("export", 429)) == 1
    answer = client.post(f"{sim.url}/_sim/faults", json={"throttle_per_api": {"nope": 1}})
    assert answer.status_code == 400


def test_every_request_is_served_on_record_faults_and_refusals_included(sim: Simulator) -> None:
    sim.faults.throttle_rps = 1
    sim.faults.retry_after = 0.25
    with httpx.Client(base_url=sim.url, headers={"workspace": WS}) as http:
        ok = http.get(JOBS, headers={"X-Auth-Token": DEFAULT_TOKEN})
        throttled = http.get(JOBS, headers={"X-Auth-Token": DEFAULT_TOKEN})
        sim.faults.throttle_rps = 0
        refused = http.get(JOBS, headers={"X-Auth-Token": "wrong"})
        http.get("/_sim/calls")  # the control API is not part of the service
    assert (ok.status_code, throttled.status_code, refused.status_code) == (200, 429, 401)
    assert throttled.headers["Retry-After"] == "0.25"
    served = sim.served
    assert [(r.method, r.path, r.status) for r in served] == [
        ("GET", JOBS, s) for s in (200, 429, 401)
    ]
    assert all(r.received <= r.answered for r in served)
    assert [r.status for r in sim.calls] == [200]  # calls: what reached the DLF handlers


def test_jobs_can_vanish_right_after_a_listing(sim: Simulator, client: httpx.Client) -> None:
    doomed = sorted(sim.jobs(WS))[:2]
    reply = client.post("/_sim/faults", json={"delete_after_listing": [*doomed, "not_here"]})
    assert reply.json()["result"]["delete_after_listing"] == [*doomed, "not_here"]
    client.get(SCRIPTS)  # not a job listing: nothing happens
    assert set(doomed) <= set(sim.jobs(WS))

    listed = client.get(JOBS, params={"limit": 1000}).json()["jobs"]

    assert set(doomed) <= {row["name"] for row in listed}  # listed, then gone
    assert not set(doomed) & set(sim.jobs(WS))
    assert sim.faults.delete_after_listing == ["not_here"]  # waits for a workspace holding it
    assert _export(client, doomed[:1]).json()["error_code"] == "DLF.0100"
