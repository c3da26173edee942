"""Workspace discovery end to end: real HTTP to the simulator, real git repositories."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from backupd.commands.snapshot import run_snapshots
from backupd.config import load_config
from backupd.model import SnapshotResult
from backupd.simulator.server import DEFAULT_INSTANCE_ID, Simulator
from tests.helpers import (
    commit_count,
    discover_all,
    expected_tree,
    git,
    make_config,
    read_tree,
    workspace_id,
)

SALES, FINANCE, MARKETING = workspace_id(1), workspace_id(2), workspace_id(3)


def add(simulator: Simulator, wid: str, name: str, jobs: int = 2, **options: str) -> None:
    simulator.add_workspace(wid, name, **options)
    simulator.populate(wid, jobs, resources=1)


def by_label(results: list[SnapshotResult]) -> dict[str, SnapshotResult]:
    return {r.target.label: r for r in results}


def workspace_map(repo: Path, source: str = "prod") -> dict[str, dict[str, object]]:
    data = json.loads((repo / source / ".backupd" / "workspaces.json").read_text("utf-8"))
    return data["workspaces"]  # type: ignore[no-any-return]


@pytest.fixture
def two_workspaces(tmp_path: Path, simulator: Simulator) -> Path:
    add(simulator, SALES, "sales")
    add(simulator, FINANCE, "finance")
    return make_config(tmp_path, simulator, {}, extra_source=discover_all(simulator))


def test_a_new_workspace_is_backed_up_at_the_next_snapshot_and_a_removed_one_is_kept(
    simulator: Simulator, two_workspaces: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = load_config(two_workspaces)
    repo = two_workspaces.parent / "repo"
    first = by_label(run_snapshots(config))
    assert set(first) == {"prod/sales", "prod/finance"}
    assert all(r.ok and r.commit for r in first.values())
    finance_before = read_tree(repo / "prod" / "finance")

    add(simulator, MARKETING, "marketing")
    simulator.remove_workspace(FINANCE)
    with caplog.at_level(logging.INFO):
        second = by_label(run_snapshots(config))

    # The new workspace is in the repository, complete.
    assert second["prod/marketing"].ok and second["prod/marketing"].commit
    assert read_tree(repo / "prod" / "marketing") == expected_tree(simulator, MARKETING)
    # The vanished one is reported, not snapshotted, and its folder is untouched.
    gone = second["prod/finance"]
    assert gone.gone and gone.ok and gone.commit is None
    assert read_tree(repo / "prod" / "finance") == finance_before
    assert git(repo, "status", "--porcelain") == ""
    warnings = [r for r in caplog.records if r.getMessage() == "workspace.gone"]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING
    assert any(r.getMessage() == "workspace.discovered" for r in caplog.records)
    # The repository records who is where, and the history says what happened.
    mapped = workspace_map(repo)
    assert mapped[FINANCE] == {
        "folder": "finance",
        "name": "finance",
        "instance_id": DEFAULT_INSTANCE_ID,
        "present": False,
    }
    assert mapped[MARKETING]["folder"] == "marketing"
    subjects = git(repo, "log", "--format=%s").splitlines()
    assert "prod: workspaces: 1 new, 1 gone" in subjects

    # Still gone next time: reported again, nothing committed.
    head = git(repo, "rev-parse", "HEAD")
    third = by_label(run_snapshots(config))
    assert third["prod/finance"].gone
    assert git(repo, "rev-parse", "HEAD") == head


def test_a_renamed_workspace_keeps_its_folder_and_records_the_new_name(
    simulator: Simulator, two_workspaces: Path
) -> None:
    config = load_config(two_workspaces)
    repo = two_workspaces.parent / "repo"
    run_snapshots(config)
    before = commit_count(repo)

    simulator.rename_workspace(SALES, "sales_emea")
    simulator.modify_job(SALES, sorted(simulator.jobs(SALES))[0])
    results = by_label(run_snapshots(config))

    assert set(results) == {"prod/sales", "prod/finance"}
    assert not (repo / "prod" / "sales_emea").exists()
    assert read_tree(repo / "prod" / "sales") == expected_tree(simulator, SALES)
    assert workspace_map(repo)[SALES]["name"] == "sales_emea"
    assert workspace_map(repo)[SALES]["folder"] == "sales"
    assert commit_count(repo) == before + 2  # the map, then the job change
    rename = git(repo, "log", "-1", "--format=%B", "--", "prod/.backupd/workspaces.json")
    assert rename.splitlines()[0] == "prod: workspaces: 1 renamed"
    assert f"sales -> sales_emea (id {SALES}) in prod/sales/" in rename


def test_exclude_keeps_workspaces_out(tmp_path: Path, simulator: Simulator) -> None:
    add(simulator, SALES, "sales")
    add(simulator, FINANCE, "tmp_scratch")
    config = make_config(
        tmp_path, simulator, {}, extra_source=discover_all(simulator, exclude=["tmp_*"])
    )

    results = run_snapshots(load_config(config))

    assert [r.target.label for r in results] == ["prod/sales"]
    assert sorted(p.name for p in (tmp_path / "repo" / "prod").iterdir()) == [
        ".backupd",
        "sales",
    ]
    assert FINANCE not in workspace_map(tmp_path / "repo")
    assert all(c.workspace != FINANCE for c in simulator.calls)


def test_the_configured_instance_is_used_and_an_ambiguous_choice_names_the_instances(
    tmp_path: Path, simulator: Simulator
) -> None:
    second = "c3" * 16
    simulator.add_instance(second, "dataarts-eu")
    add(simulator, SALES, "sales")
    add(simulator, FINANCE, "eu_sales", instance_id=second)

    ambiguous = load_config(
        make_config(tmp_path, simulator, {}, extra_source=discover_all(simulator))
    )
    (failed,) = run_snapshots(ambiguous)
    assert failed.target.label == "prod/*" and not failed.ok
    assert failed.error is not None
    assert DEFAULT_INSTANCE_ID in failed.error and second in failed.error
    assert "instance_id" in failed.error

    chosen = make_config(
        tmp_path, simulator, {}, extra_source=discover_all(simulator, instance_id=second)
    )
    results = run_snapshots(load_config(chosen))
    assert [(r.target.label, r.ok) for r in results] == [("prod/eu_sales", True)]

    simulator.set_instance_status(second, 4)  # frozen: the default is the only effective one
    results = run_snapshots(ambiguous)
    # Now the other instance's workspaces are the ones listed; the first one's is "gone".
    assert sorted((r.target.label, r.gone) for r in results) == [
        ("prod/eu_sales", True),
        ("prod/sales", False),
    ]


def test_management_calls_go_to_the_management_host_and_a_failed_discovery_still_backs_up(
    tmp_path: Path, simulator: Simulator
) -> None:
    add(simulator, SALES, "sales")
    simulator.management_hostname = "localhost"  # dayu-dlf and dayu differ, as on the cloud
    port = simulator.url.rsplit(":", 1)[1]
    right = make_config(
        tmp_path,
        simulator,
        {},
        extra_source=discover_all(simulator, management_endpoint=f"http://localhost:{port}"),
    )
    (first,) = run_snapshots(load_config(right))
    assert first.ok and first.commit and first.target.label == "prod/sales"

    # Management calls sent to the DLF host get APIGW.0101: discovery fails, but the
    # workspaces found before are still snapshotted, and the failure is reported.
    wrong = make_config(tmp_path, simulator, {}, extra_source=discover_all(simulator))
    simulator.modify_job(SALES, sorted(simulator.jobs(SALES))[0])
    results = by_label(run_snapshots(load_config(wrong)))
    assert not results["prod/*"].ok
    assert "APIGW.0101" in (results["prod/*"].error or "")
    assert results["prod/sales"].ok and results["prod/sales"].commit


def test_an_empty_workspace_list_is_not_taken_for_every_workspace_gone(
    simulator: Simulator, two_workspaces: Path
) -> None:
    config = load_config(two_workspaces)
    repo = two_workspaces.parent / "repo"
    run_snapshots(config)
    mapped = workspace_map(repo)
    simulator.remove_workspace(SALES)
    simulator.remove_workspace(FINANCE)

    results = by_label(run_snapshots(config))

    assert "listed no workspaces" in (results["prod/*"].error or "")
    assert workspace_map(repo) == mapped
    assert (repo / "prod" / "sales" / "jobs").is_dir()


def test_switching_a_source_from_a_list_to_all_continues_the_same_folders(
    tmp_path: Path, simulator: Simulator
) -> None:
    add(simulator, SALES, "sales")
    add(simulator, FINANCE, "finance")
    listed = make_config(tmp_path, simulator, {"sales": SALES, FINANCE: FINANCE})
    run_snapshots(load_config(listed))
    repo = tmp_path / "repo"
    before = commit_count(repo)

    switched = make_config(tmp_path, simulator, {}, extra_source=discover_all(simulator))
    results = run_snapshots(load_config(switched))

    assert sorted(r.target.label for r in results) == [f"prod/{FINANCE}", "prod/sales"]
    assert all(r.ok and r.commit is None for r in results)  # same content, same folders
    assert commit_count(repo) == before + 1  # only the new workspaces.json
    assert {w: e["folder"] for w, e in workspace_map(repo).items()} == {
        SALES: "sales",
        FINANCE: FINANCE,
    }
