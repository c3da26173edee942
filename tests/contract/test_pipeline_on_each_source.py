"""The whole pipeline behaves the same on every JobSource: the in-memory fake and the HTTP
client on the simulator, under each export layout and name set.

First snapshot, a snapshot with no change (nothing exported, nothing committed), a change
(one commit naming it), and a restore whose zip holds what the service exports — the
repository compared with the simulator's own content each time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from backupd.config import Config, load_config
from backupd.dataarts.source import JobSource
from backupd.model import SnapshotResult
from backupd.simulator.fake import FakeJobSource
from backupd.simulator.server import Simulator, variant
from backupd.store.gitrepo import Identity
from backupd.store.pathmap import portability_problems
from tests.contract.conftest import http_client
from tests.helpers import git, make_config, snapshot_from
from tests.integration.test_field_fidelity import (
    FOLDER,
    WS,
    assert_restores_the_export,
    assert_stored_losslessly,
    tracked,
)

LAYOUTS = ("folders", "documented", "flat", "hostile-names", "flat-gb18030")
IDENTITY = Identity("backupd", "backupd@localhost")


@pytest.fixture(params=("fake", "http"))
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@contextlib.contextmanager
def source_for(kind: str, simulator: Simulator) -> Iterator[tuple[JobSource, Callable[[], int]]]:
    """The JobSource, and how many export calls it has made so far."""
    if kind == "fake":
        fake = FakeJobSource(simulator)
        yield fake, lambda: fake.calls["export"]
        return
    with http_client(simulator, page_size=100) as client:
        yield client, lambda: sum(1 for c in simulator.calls if c.path.endswith("/batch-export"))


def snapshot(config: Config, source: JobSource) -> SnapshotResult:
    (result,) = snapshot_from(config, source, IDENTITY)
    assert result.ok, result.error
    return result


@pytest.mark.parametrize("layout", LAYOUTS)
def test_first_unchanged_changed_and_restored_alike_on_every_source(
    kind: str, layout: str, tmp_path: Path
) -> None:
    simulator = variant(layout)
    simulator.add_workspace(WS, "sales")
    simulator.populate(WS, 6, resources=2)
    repo = tmp_path / "repo"
    # Started for the HTTP client (and for the config's endpoint); the fake never calls it.
    with simulator, source_for(kind, simulator) as (source, exports):
        config = load_config(make_config(tmp_path, simulator, {"sales": WS}))
        first = snapshot(config, source)
        assert first.commit is not None
        assert_stored_losslessly(repo, simulator)

        before = exports()
        unchanged = snapshot(config, source)
        assert unchanged.commit is None and exports() == before  # nothing exported

        job = sorted(simulator.jobs(WS))[0]
        simulator.modify_job(WS, job, user="carol")
        changed = snapshot(config, source)
        assert changed.commit is not None and changed.changed_jobs.changed == 1
        assert git(repo, "log", "-1", "--format=%s").startswith(f"{FOLDER}: 0 added, 1 changed")
        assert_stored_losslessly(repo, simulator)

        assert_restores_the_export(repo, simulator)
        assert portability_problems(tracked(repo)) == []
