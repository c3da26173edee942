"""The pipeline lets go of each workspace once it is committed.

A staged workspace holds its listing and changed paths (megabytes for a large workspace);
held until the end of the run, memory would grow with the number of workspaces.
"""

from __future__ import annotations

import gc
import weakref
from pathlib import Path
from typing import Any

import pytest

from backupd.commands.snapshot import run_snapshots
from backupd.config import load_config
from backupd.simulator.server import Simulator
from backupd.snapshot import run as runner
from backupd.snapshot.workspace import PreparedWorkspace
from tests.helpers import make_config, workspace_id


def test_a_committed_workspace_is_not_held_while_the_others_go_on(
    tmp_path: Path, simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    workspaces = {f"ws{n}": workspace_id(n) for n in range(1, 5)}
    for name, wid in workspaces.items():
        simulator.add_workspace(wid, name)
        simulator.populate(wid, 30)
    config = load_config(make_config(tmp_path, simulator, workspaces))
    committed: list[weakref.ref[PreparedWorkspace]] = []
    still_held: list[int] = []
    real_finish = runner.finish_workspace

    def finish(client: Any, repo: Any, prepared: PreparedWorkspace, *args: Any, **kw: Any) -> Any:
        gc.collect()
        still_held.append(sum(1 for ref in committed if ref() is not None))
        committed.append(weakref.ref(prepared))
        return real_finish(client, repo, prepared, *args, **kw)

    monkeypatch.setattr(runner, "finish_workspace", finish)
    results = run_snapshots(config)
    assert all(r.ok for r in results) and len(results) == 4
    assert still_held == [0, 0, 0, 0]
