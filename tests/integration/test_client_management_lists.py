"""Client: resource list, instance list and workspace list against the simulator."""

from __future__ import annotations

import pytest

from backupd.dataarts.auth import StaticTokenAuth
from backupd.dataarts.client import ClientSettings, DataArtsClient
from backupd.dataarts.retry import RetryPolicy
from backupd.errors import ApiError
from backupd.secret import Secret
from backupd.simulator.server import DEFAULT_INSTANCE_ID, DEFAULT_TOKEN, Simulator
from tests.helpers import workspace_id

WID = workspace_id(5)


def client_for(simulator: Simulator, *, page_size: int = 100) -> DataArtsClient:
    settings = ClientSettings(
        endpoint=simulator.url,
        project_id=simulator.project_id,
        management_endpoint=simulator.url,
        page_size=page_size,
        timeout=10,
        retry=RetryPolicy(attempts=2, base_delay=0.01),
        requests_per_second=1000,
        exports_per_second=1000,
    )
    return DataArtsClient(settings, StaticTokenAuth(Secret(DEFAULT_TOKEN)))


@pytest.mark.parametrize("offset_mode", ["page", "record"])
def test_workspaces_and_resources_are_paged_whatever_offset_means(offset_mode: str) -> None:
    with Simulator(offset_mode=offset_mode) as simulator:  # type: ignore[arg-type]
        for number in range(11):
            simulator.add_workspace(workspace_id(100 + number), f"ws{number:02}")
        simulator.add_workspace(WID, "ws")
        simulator.populate(WID, 1, resources=23)
        with client_for(simulator, page_size=4) as client:
            workspaces = client.list_workspaces(DEFAULT_INSTANCE_ID)
            resources = client.list_resources(WID)
        calls = simulator.calls

    assert [w.name for w in workspaces] == sorted(simulator.workspaces().values())
    assert {w.instance_id for w in workspaces} == {DEFAULT_INSTANCE_ID}
    assert [r["name"] for r in resources] == sorted(simulator.resources(WID))
    assert resources[0] == simulator.resources(WID)[resources[0]["name"]]  # every field kept
    workspace_calls = [c for c in calls if "/workspaces/" in c.path]
    assert len(workspace_calls) <= 12 // 4 + 3
    # Management calls carry no workspace header; resource calls carry the workspace's.
    assert all(c.workspace is None for c in workspace_calls)
    assert all(c.workspace == WID for c in calls if c.path.endswith("/resources"))


def test_resource_pages_never_exceed_the_documented_100() -> None:
    with Simulator() as simulator:
        simulator.add_workspace(WID, "ws")
        simulator.populate(WID, 1, resources=3)
        with client_for(simulator, page_size=1000) as client:
            assert len(client.list_resources(WID)) == 3
        (call,) = [c for c in simulator.calls if c.path.endswith("/resources")]
    assert call.query["limit"] == "100"


@pytest.mark.parametrize("key", ["commodity_orders", "commodity_order_lists"])
def test_instances_are_read_from_either_documented_array(key: str) -> None:
    with Simulator() as simulator:
        simulator.add_instance("c3" * 16, "frozen", status=4)
        simulator.instance_list_key = key
        with client_for(simulator) as client:
            instances = client.list_instances()
    assert [(i.id, i.effective) for i in instances] == [
        (DEFAULT_INSTANCE_ID, True),
        ("c3" * 16, False),
    ]


def test_a_client_without_management_endpoint_cannot_discover(simulator: Simulator) -> None:
    settings = ClientSettings(endpoint=simulator.url, project_id=simulator.project_id)
    with (
        DataArtsClient(settings, StaticTokenAuth(Secret(DEFAULT_TOKEN))) as client,
        pytest.raises(ApiError, match="no management endpoint"),
    ):
        client.list_instances()
