"""Several sources (accounts, regions, projects) in one config, one repository."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from backupd.commands.snapshot import run_snapshots
from backupd.config import load_config
from backupd.simulator.server import Simulator
from tests.helpers import FAST_RATES, expected_tree, git, read_tree, workspace_id

PROD_PROJECT = "0123456789abcdef0123456789abcdef"
DR_PROJECT = "fedcba9876543210fedcba9876543210"


def source(tmp_path: Path, name: str, simulator: Simulator, **options: Any) -> dict[str, Any]:
    token_file = tmp_path / f"{name}.token"
    token_file.write_text(str(simulator.token))
    return {
        "name": name,
        "endpoint": simulator.url,
        "project_id": simulator.project_id,
        "auth": {"type": "token", "token_file": str(token_file)},
        "rates": FAST_RATES,
        **options,
    }


def test_two_sources_with_their_own_credentials_back_up_side_by_side(tmp_path: Path) -> None:
    with (
        Simulator(project_id=PROD_PROJECT, token="prod-token") as prod,
        Simulator(project_id=DR_PROJECT, token="dr-token", seed=7) as dr,
    ):
        # The same workspace name (and even id) in both: the source keeps them apart.
        prod.add_workspace(workspace_id(1), "sales")
        prod.populate(workspace_id(1), 3, resources=1)
        dr.add_workspace(workspace_id(1), "sales")
        dr.populate(workspace_id(1), 2, resources=2)
        dr.add_workspace(workspace_id(2), "finance")
        dr.populate(workspace_id(2), 2)
        config_file = tmp_path / "config.yaml"
        config_file.write_text(
            yaml.safe_dump(
                {
                    "repository": {"path": str(tmp_path / "repo")},
                    "sources": [
                        source(
                            tmp_path,
                            "prod",
                            prod,
                            workspaces=[{"id": workspace_id(1), "name": "sales"}],
                        ),
                        source(tmp_path, "dr", dr, workspaces="all", management_endpoint=dr.url),
                    ],
                }
            )
        )

        results = run_snapshots(load_config(config_file))

        assert sorted((r.target.label, r.ok) for r in results) == [
            ("dr/finance", True),
            ("dr/sales", True),
            ("prod/sales", True),
        ]
        repo = tmp_path / "repo"
        assert read_tree(repo / "prod" / "sales") == expected_tree(prod, workspace_id(1))
        assert read_tree(repo / "dr" / "sales") == expected_tree(dr, workspace_id(1))
        assert read_tree(repo / "dr" / "finance") == expected_tree(dr, workspace_id(2))
        # Each service was asked only by its own source (a wrong token would get a 401).
        assert all(call.status == 200 for call in prod.calls + dr.calls)
        assert not any("/workspaces/" in call.path for call in prod.calls)
        subjects = git(repo, "log", "--format=%s").splitlines()
        assert sum(s.startswith("prod/sales: ") for s in subjects) == 1
        assert sum(s.startswith("dr/sales: ") for s in subjects) == 1

        # A change in one source commits only there.
        dr.modify_job(workspace_id(2), sorted(dr.jobs(workspace_id(2)))[0])
        results = run_snapshots(load_config(config_file))
        committed = [r.target.label for r in results if r.commit]
        assert committed == ["dr/finance"]
