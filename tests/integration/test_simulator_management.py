"""Simulator: instance, workspace and resource lists, and their mutations, over real HTTP."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from backupd.simulator.server import (
    DEFAULT_INSTANCE_ID,
    DEFAULT_PROJECT_ID,
    DEFAULT_TOKEN,
    Simulator,
)

WS = "a1" * 16
OTHER_WS = "b2" * 16
SECOND_INSTANCE = "c3" * 16
V1 = f"/v1/{DEFAULT_PROJECT_ID}"


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator() as simulator:
        simulator.add_workspace(WS, "sales")
        simulator.add_workspace(OTHER_WS, "finance")
        yield simulator


@pytest.fixture
def http(sim: Simulator) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=sim.url, headers={"X-Auth-Token": DEFAULT_TOKEN}, timeout=5
    ) as client:
        yield client


def test_instance_list_has_the_documented_shape(sim: Simulator, http: httpx.Client) -> None:
    sim.add_instance(SECOND_INSTANCE, "old", status=3)
    body = http.get(f"{V1}/instances").json()
    assert body["count"] == 2 and body["billing_check"] is True
    rows = {row["resource_id"]: row for row in body["commodity_orders"]}
    assert rows[DEFAULT_INSTANCE_ID]["status"] == 2
    assert rows[SECOND_INSTANCE]["status"] == 3
    assert {"resource_name", "project_id", "region_id", "resource_spec_code"} <= set(
        rows[SECOND_INSTANCE]
    )
    sim.instance_list_key = "commodity_order_lists"
    assert "commodity_order_lists" in http.get(f"{V1}/instances").json()


def test_workspace_list_is_per_instance_and_paged(sim: Simulator, http: httpx.Client) -> None:
    sim.add_instance(SECOND_INSTANCE, "second")
    sim.add_workspace("d4" * 16, "elsewhere", instance_id=SECOND_INSTANCE)
    for number in range(5):
        sim.add_workspace(f"{number:032x}", f"ws{number}")
    path = f"{V1}/workspaces/{DEFAULT_INSTANCE_ID}"
    body = http.get(path).json()
    assert body["count"] == 7 and len(body["data"]) == 7
    assert [row["name"] for row in body["data"]][:2] == ["sales", "finance"]  # creation order
    assert {"id", "name", "instance_id", "is_default", "create_time"} <= set(body["data"][0])
    page = http.get(path, params={"limit": 3, "offset": 2}).json()  # offset = page number
    assert [row["name"] for row in page["data"]] == ["ws4"]
    assert page["total_page"] == 3
    other = http.get(f"{V1}/workspaces/{SECOND_INSTANCE}").json()
    assert [row["name"] for row in other["data"]] == ["elsewhere"]
    assert http.get(f"{V1}/workspaces/nope").status_code == 400
    assert http.get(path, params={"limit": 101}).status_code == 400


def test_resource_list_is_paged_per_workspace(sim: Simulator, http: httpx.Client) -> None:
    sim.populate(WS, 1, resources=12)
    sim.add_resource(OTHER_WS, "only_one", resource_type="file")
    path = f"{V1}/resources"
    names: list[str] = []
    for offset in range(3):
        body = http.get(
            path, params={"limit": 5, "offset": offset}, headers={"workspace": WS}
        ).json()
        assert body["total"] == 12
        names += [row["name"] for row in body["resources"]]
    assert names == sorted(sim.resources(WS)) and len(set(names)) == 12
    row = sim.resources(WS)[names[0]]
    assert set(row) == {"id", "name", "type", "location", "dependFiles", "desc", "directory"}
    assert row["location"].startswith("obs://")
    other = http.get(path, headers={"workspace": OTHER_WS}).json()
    assert [r["name"] for r in other["resources"]] == ["only_one"]
    too_big = http.get(path, params={"limit": 101}, headers={"workspace": WS})
    assert too_big.status_code == 400


def test_resource_and_workspace_mutations_work_in_python_and_over_http(sim: Simulator) -> None:
    sim.add_resource(WS, "udf", location="obs://b/udf.jar", depend_files=["obs://b/dep.jar"])
    sim.modify_resource(WS, "udf")
    assert sim.resources(WS)["udf"]["location"] != "obs://b/udf.jar"
    sim.modify_resource(WS, "udf", desc="main UDFs")
    assert sim.resources(WS)["udf"]["desc"] == "main UDFs"
    with pytest.raises(ValueError):
        sim.add_resource(WS, "udf")
    with pytest.raises(ValueError):
        sim.add_resource(WS, "x", resource_type="exe")
    with httpx.Client(base_url=sim.url, timeout=5) as control:

        def mutate(op: str, **args: object) -> httpx.Response:
            return control.post("/_sim/mutate", json={"op": op, "args": args})

        assert mutate("add_resource", workspace_id=WS, name="cfg", resource_type="file").is_success
        assert mutate("delete_resource", workspace_id=WS, name="udf").is_success
        assert mutate("modify_resource", workspace_id=WS, name="cfg", desc="d").is_success
        assert mutate("rename_workspace", workspace_id=OTHER_WS, name="finance_eu").is_success
        assert mutate("add_instance", instance_id=SECOND_INSTANCE, name="two").is_success
        assert mutate("set_instance_status", instance_id=SECOND_INSTANCE, status=4).is_success
        assert mutate("add_workspace", workspace_id="e5" * 16, name="new").is_success
        assert mutate("remove_workspace", workspace_id=WS).is_success
        assert mutate("delete_resource", workspace_id=OTHER_WS, name="no").status_code == 400
        workspaces = control.get("/_sim/workspaces").json()
        resources = control.get("/_sim/resources", params={"workspace": OTHER_WS}).json()
        missing = control.get("/_sim/resources", params={"workspace": WS})
    assert workspaces == {OTHER_WS: "finance_eu", "e5" * 16: "new"}
    assert resources == {}
    assert missing.status_code == 404
    with pytest.raises(KeyError):
        sim.resources(WS)


def test_management_and_dlf_apis_can_be_told_apart_by_host(sim: Simulator) -> None:
    sim.management_hostname = "localhost"
    port = sim.url.rsplit(":", 1)[1]
    headers = {"X-Auth-Token": DEFAULT_TOKEN, "workspace": WS}
    with httpx.Client(headers=headers, timeout=5) as http:
        on_dlf_host = http.get(f"http://127.0.0.1:{port}{V1}/instances")
        on_management_host = http.get(f"http://localhost:{port}{V1}/instances")
        jobs_on_management_host = http.get(f"http://localhost:{port}{V1}/jobs")
        jobs_on_dlf_host = http.get(f"http://127.0.0.1:{port}{V1}/jobs")
    assert on_dlf_host.status_code == 404
    assert on_dlf_host.json()["error_code"] == "APIGW.0101"
    assert on_management_host.status_code == 200
    assert jobs_on_management_host.status_code == 404  # the pitfall of dlf-api.md §1.1
    assert jobs_on_dlf_host.status_code == 200
