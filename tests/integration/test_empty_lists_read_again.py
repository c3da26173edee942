"""An empty scripts or resources list, of which the last commit holds nothing either, is read
once more (deletions.py) while the jobs are still being listed, not after them: that reading
is then no call on the way to the workspace's exports."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from backupd.config import load_config
from backupd.dataarts.client import JOB_TYPES, JobSummary
from backupd.simulator.fake import FakeJobSource
from backupd.simulator.server import Simulator
from tests.helpers import make_config, snapshot_from, until, workspace_id

A = workspace_id(51)


class SlowJobList(FakeJobSource):
    """The fake, whose job listing ends only once the scripts and resources were each
    listed twice; and whose first resources answer may be empty (a glitch)."""

    def __init__(self, simulator: Simulator, *, empty_first_resources: bool = False) -> None:
        super().__init__(simulator)
        self._empty_first = empty_first_resources

    def list_jobs(
        self, workspace_id: str, job_types: Sequence[str] = JOB_TYPES
    ) -> list[JobSummary]:
        if tuple(job_types) == tuple(JOB_TYPES):  # not a job type's reading again
            until(
                lambda: self.calls["list_scripts"] >= 2 and self.calls["list_resources"] >= 2,
                "the empty lists read again during the job listing",
            )
        return super().list_jobs(workspace_id, job_types)

    def list_resources(self, workspace_id: str) -> list[dict[str, Any]]:
        rows = super().list_resources(workspace_id)
        return [] if self._empty_first and self.calls["list_resources"] == 1 else rows


@pytest.fixture
def simulator() -> Simulator:
    simulator = Simulator()
    simulator.add_workspace(A, "a")
    simulator.populate(A, 6, scripts=0, resources=0)
    return simulator


def test_empty_lists_are_read_again_while_the_jobs_are_listed(
    tmp_path: Path, simulator: Simulator
) -> None:
    source = SlowJobList(simulator)
    with simulator:  # for the config's endpoint; the fake never calls it
        config = load_config(make_config(tmp_path, simulator, {"a": A}))
        (result,) = snapshot_from(config, source)
    assert result.ok and not result.partial, result.problems
    assert source.calls["list_scripts"] == source.calls["list_resources"] == 2


def test_new_items_an_empty_answer_hid_make_the_snapshot_partial(
    tmp_path: Path, simulator: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    source = SlowJobList(simulator, empty_first_resources=True)
    with simulator:
        config = load_config(make_config(tmp_path, simulator, {"a": A}))
        assert snapshot_from(config, source)[0].ok
        simulator.add_resource(A, "lib.jar")
        source.calls.clear()
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            (result,) = snapshot_from(config, source)
    assert result.partial
    assert result.problems == (
        "resources: the list came back empty, then held 1; not recorded this time: lib.jar",
    )
    # One log line for the problem, not one before the snapshot's line and one after.
    assert [r.getMessage() for r in caplog.records].count("snapshot.partial") == 1
