"""Each workspace's calls carry its place in line (the budgets' rank), in every thread they
are made from: the job list's, and the scripts' and resources' beside it."""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from backupd.config import load_config
from backupd.dataarts.budget import CALL_RANK
from backupd.dataarts.client import JOB_TYPES, JobSummary
from backupd.simulator.fake import FakeJobSource
from backupd.simulator.server import Simulator
from tests.helpers import make_config, snapshot_from, workspace_id


class RankRecorder(FakeJobSource):
    """The fake, noting the rank each listing was asked under, by workspace."""

    def __init__(self, simulator: Simulator) -> None:
        super().__init__(simulator)
        self.ranks: dict[str, set[tuple[str, int]]] = collections.defaultdict(set)

    def _note(self, what: str, workspace: str) -> None:
        self.ranks[workspace].add((what, CALL_RANK.get()))

    def list_jobs(
        self, workspace_id: str, job_types: Sequence[str] = JOB_TYPES
    ) -> list[JobSummary]:
        self._note("jobs", workspace_id)
        return super().list_jobs(workspace_id, job_types)

    def list_scripts(
        self, workspace_id: str, keep: Callable[[dict[str, Any]], Any] = lambda row: row
    ) -> list[Any]:
        self._note("scripts", workspace_id)
        return super().list_scripts(workspace_id, keep)

    def list_resources(self, workspace_id: str) -> list[dict[str, Any]]:
        self._note("resources", workspace_id)
        return super().list_resources(workspace_id)


def test_every_listing_of_a_workspace_has_the_workspaces_place_in_line(tmp_path: Path) -> None:
    ids = [workspace_id(n) for n in (1, 2, 3)]
    simulator = Simulator()
    for number, wid in enumerate(ids):
        simulator.add_workspace(wid, f"ws{number}")
        simulator.populate(wid, 5, resources=1)
    source = RankRecorder(simulator)
    with simulator:  # for the config's endpoint; the fake never calls it
        config = load_config(
            make_config(tmp_path, simulator, {f"ws{n}": wid for n, wid in enumerate(ids)})
        )
        results = snapshot_from(config, source)
    assert all(result.ok for result in results)
    for rank, wid in enumerate(ids):
        assert source.ranks[wid] == {("jobs", rank), ("scripts", rank), ("resources", rank)}
