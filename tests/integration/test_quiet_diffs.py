"""Noise never makes a commit: key order, whitespace, number spelling and volatile fields."""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path
from typing import Any

from backupd.commands.snapshot import run_snapshots
from backupd.config import load_config
from backupd.model import SnapshotResult
from backupd.simulator.server import Simulator
from tests.helpers import git, make_config, read_tree, workspace_id


def snapshot(config_path: Path) -> list[SnapshotResult]:
    results = run_snapshots(load_config(config_path))
    assert all(r.ok for r in results), [r.error for r in results]
    return results


def _reversed_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _reversed_keys(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [_reversed_keys(v) for v in value]
    return value


def _noisy_job(data: bytes) -> bytes:
    job = json.loads(data)
    job["version"] = int(job["version"]) + 5
    for node in job["nodes"]:
        node["lineageInfo"] = json.dumps({"regenerated": node["name"]})
    text = json.dumps(_reversed_keys(job), indent=4, ensure_ascii=True).replace("\n", "\r\n")
    # Same numbers, other spellings: 20 → 2.0e1, 60 → 60.0.
    text = re.sub(r'"pollingInterval": 20\b', '"pollingInterval": 2.0e1', text)
    return re.sub(r'"cleanOverdueDays": 60\b', '"cleanOverdueDays": 60.0', text).encode()


def noisy_export(archive: bytes) -> bytes:
    """The same state, as a differently behaved server would export it."""
    source = zipfile.ZipFile(io.BytesIO(archive))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as target:
        for name in reversed(source.namelist()):
            data = source.read(name)
            if name.endswith(".job"):
                data = _noisy_job(data)
            elif name.endswith(".script"):
                data = json.dumps(_reversed_keys(json.loads(data)), indent=1).encode()
            target.writestr(name, data)
    return buffer.getvalue()


def _setup(tmp_path: Path, simulator: Simulator, **history: Any) -> tuple[Path, str]:
    wid = workspace_id(21)
    simulator.add_workspace(wid, "quiet")
    simulator.populate(wid, 15)
    extra = {"history": history} if history else None
    # Full snapshots: the point is two exports of the same state.
    config = make_config(
        tmp_path, simulator, {"quiet": wid}, extra=extra, extra_source={"incremental": False}
    )
    return config, wid


def test_noise_only_export_makes_no_commit_and_keeps_the_stored_bytes(
    tmp_path: Path, simulator: Simulator
) -> None:
    config_path, wid = _setup(tmp_path, simulator)
    snapshot(config_path)
    repo = tmp_path / "repo"
    head, stored = git(repo, "rev-parse", "HEAD"), read_tree(repo / "prod" / "quiet")
    simulator.export_hook = noisy_export

    results = snapshot(config_path)

    assert results[0].commit is None
    assert git(repo, "rev-parse", "HEAD") == head
    assert read_tree(repo / "prod" / "quiet") == stored  # old bytes: a real export, not stripped
    assert git(repo, "status", "--porcelain") == ""

    # A real edit among the noise commits that job alone.
    edited = sorted(simulator.jobs(wid))[3]
    simulator.modify_job(wid, edited, user="li.wei")
    results = snapshot(config_path)
    assert results[0].commit is not None
    changed = git(repo, "diff", "--name-only", "HEAD~1", "HEAD").split()
    assert changed == ["prod/quiet/.backupd/index.json", f"prod/quiet/jobs/{edited}/{edited}.job"]


def test_without_volatile_fields_only_those_fields_show_in_the_diff(
    tmp_path: Path, simulator: Simulator
) -> None:
    config_path, _ = _setup(tmp_path, simulator, volatile_fields={"job": []})
    snapshot(config_path)
    repo = tmp_path / "repo"
    simulator.export_hook = noisy_export

    results = snapshot(config_path)

    assert results[0].commit is not None  # the volatile fields are what kept it quiet
    diff = git(repo, "diff", "-U0", "HEAD~1", "HEAD", "--", "prod/quiet/jobs")
    changed_lines = [
        line
        for line in diff.splitlines()
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    assert changed_lines
    assert all(re.match(r'^[+-]\s+"(version|lineageInfo)": ', line) for line in changed_lines)
