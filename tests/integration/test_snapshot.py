"""The snapshot pipeline end to end: real HTTP to the simulator, real git repositories."""

from __future__ import annotations

import io
import warnings
import zipfile
from pathlib import Path

import pytest

from backupd.commands.snapshot import run_snapshots
from backupd.config import load_config
from backupd.model import SnapshotResult
from backupd.simulator.server import Simulator
from tests.helpers import commit_count, expected_tree, git, make_config, read_tree, workspace_id


def snapshot(config_path: Path) -> list[SnapshotResult]:
    results = run_snapshots(load_config(config_path))
    assert all(r.ok for r in results), [r.error for r in results]
    return results


def file_stamps(folder: Path) -> dict[str, tuple[int, int]]:
    return {
        str(p): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file() and ".git" not in p.parts
    }


@pytest.fixture
def three_workspaces(tmp_path: Path, simulator: Simulator) -> tuple[Path, dict[str, str]]:
    workspaces = {"sales": workspace_id(1), "finance": workspace_id(2), "ops": workspace_id(3)}
    for name, wid in workspaces.items():
        simulator.add_workspace(wid, name)
        simulator.populate(wid, 120, realtime_fraction=0.3, chinese_fraction=0.15)
    return make_config(tmp_path, simulator, workspaces), workspaces


def test_full_snapshot_holds_exactly_the_services_jobs(
    simulator: Simulator, three_workspaces: tuple[Path, dict[str, str]]
) -> None:
    config_path, workspaces = three_workspaces
    results = snapshot(config_path)
    repo = config_path.parent / "repo"

    assert [r.jobs for r in results] == [120, 120, 120]
    for name, wid in workspaces.items():
        stored = read_tree(repo / "prod" / name)
        expected = expected_tree(simulator, wid)
        assert stored.keys() == expected.keys()
        assert stored == expected
        assert any(job_type == "REAL_TIME" for job_type in _job_types(simulator, wid))
        assert any(not job.isascii() for job in simulator.jobs(wid))
    exports = [c for c in simulator.calls if c.path.endswith("/jobs/batch-export")]
    assert len(exports) == 3 * 2  # two batches of each workspace
    assert max(len(c.job_names) for c in exports) <= 100
    assert commit_count(repo) == 1 + 3  # README + one per workspace


def _job_types(simulator: Simulator, wid: str) -> set[str]:
    return {d["processType"] for d in simulator.jobs(wid).values()}


def test_second_snapshot_without_changes_commits_and_rewrites_nothing(
    three_workspaces: tuple[Path, dict[str, str]],
) -> None:
    config_path, _ = three_workspaces
    snapshot(config_path)
    repo = config_path.parent / "repo"
    head, before = git(repo, "rev-parse", "HEAD"), file_stamps(repo)

    results = snapshot(config_path)

    assert [r.commit for r in results] == [None, None, None]
    assert git(repo, "rev-parse", "HEAD") == head
    assert file_stamps(repo) == before
    assert git(repo, "status", "--porcelain") == ""


def test_changes_make_one_commit_per_changed_workspace_naming_them(
    simulator: Simulator, three_workspaces: tuple[Path, dict[str, str]]
) -> None:
    config_path, workspaces = three_workspaces
    snapshot(config_path)
    repo = config_path.parent / "repo"
    sales = workspaces["sales"]
    jobs = sorted(simulator.jobs(sales))
    modified, deleted, (old_name, _) = jobs[:3], jobs[3], (jobs[4], None)
    for name in modified:
        simulator.modify_job(sales, name, user="li.wei")
    simulator.add_job(sales, "new_daily_load", scripts=[], user="zhang.min")
    simulator.add_job(sales, "新增作业_1", scripts=[], user="zhang.min")
    simulator.delete_job(sales, deleted)
    simulator.rename_job(sales, old_name, "renamed_job")
    shared = next(
        s
        for s in simulator.scripts(sales)
        if sum(s in simulator.job_scripts(sales, j) for j in simulator.jobs(sales)) >= 2
    )
    users_of_shared = {
        j for j in simulator.jobs(sales) if shared in simulator.job_scripts(sales, j)
    }
    simulator.set_script(sales, shared, "SELECT 42;\n", script_type="HiveSQL")
    before = commit_count(repo)
    old_tree = read_tree(repo / "prod" / "sales")

    results = snapshot(config_path)

    by_folder = {r.target.folder: r for r in results}
    assert by_folder["finance"].commit is None and by_folder["ops"].commit is None
    assert by_folder["sales"].commit is not None
    assert commit_count(repo) == before + 1
    new_tree = read_tree(repo / "prod" / "sales")
    assert new_tree == expected_tree(simulator, sales)
    # The commit's diff is exactly the difference between the two states, nothing more.
    changed_paths = set(
        git(repo, "diff", "--no-renames", "--name-only", "-z", "HEAD~1", "HEAD")
        .strip("\0")
        .split("\0")
    )
    expected_paths = {
        f"prod/sales/{p}"
        for p in old_tree.keys() | new_tree.keys()
        if old_tree.get(p) != new_tree.get(p)
    }
    assert changed_paths - {"prod/sales/.backupd/index.json"} == expected_paths
    assert all(p.startswith("prod/sales/") for p in changed_paths)

    message = git(repo, "log", "-1", "--format=%B")
    changed_jobs = set(modified) | users_of_shared
    changed_jobs -= {deleted, old_name}
    # The renamed job kept its id: renamed, neither added nor removed; the deleted job and
    # the new ones are not paired with anything.
    assert message.splitlines()[0] == (
        f"prod/sales: 2 added, {len(changed_jobs)} changed, 1 removed, 1 renamed; "
        "scripts: 1 changed"
    )
    assert f"renamed: {old_name} → renamed_job (by bob)" in message.splitlines()
    for name in [*modified, "new_daily_load", "新增作业_1", deleted]:
        assert name in message
    assert shared in message
    assert "(by li.wei)" in message


def test_a_300_job_workspace_exports_in_3_full_batches_and_round_trips(
    tmp_path: Path, simulator: Simulator
) -> None:
    wid = workspace_id(7)
    simulator.add_workspace(wid, "big")
    simulator.populate(wid, 300)
    config_path = make_config(tmp_path, simulator, {"big": wid})

    snapshot(config_path)

    exports = [c for c in simulator.calls if c.path.endswith("/jobs/batch-export")]
    assert len(exports) == 3
    assert all(len(c.job_names) == 100 for c in exports)
    assert sorted(n for c in exports for n in c.job_names) == sorted(simulator.jobs(wid))
    assert read_tree(tmp_path / "repo" / "prod" / "big") == expected_tree(simulator, wid)


def _zip(
    entries: list[tuple[zipfile.ZipInfo | str, bytes]], compression: int = zipfile.ZIP_DEFLATED
) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicates a test wants
        with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
            for info, data in entries:
                archive.writestr(info, data)
    return buffer.getvalue()


def _symlink_entry() -> zipfile.ZipInfo:
    info = zipfile.ZipInfo("jobs/a/link")
    info.create_system = 3
    info.external_attr = 0o120777 << 16
    return info


def _patched(entries: list[tuple[str, bytes]], old: bytes, new: bytes, **kw: int) -> bytes:
    """A zip whose raw bytes are edited afterwards (what zipfile refuses to write)."""
    data = _zip(entries, **kw)  # type: ignore[arg-type]
    assert len(old) == len(new) and old in data
    return data.replace(old, new)


def _cut(data: bytes) -> bytes:
    return data[: len(data) // 2]


# Each is served instead of the real export; None means "the real export, cut in half".
HOSTILE: dict[str, bytes | None] = {
    "parent traversal": _zip([("../evil", b"x")]),
    "nested traversal": _zip([("jobs/a/../../../evil", b"x")]),
    "absolute path": _zip([("/tmp/backupd-evil-absolute", b"x")]),
    "drive letter": _zip([("C:/evil", b"x")]),
    "backslash": _zip([("jobs\\a\\..\\..\\evil", b"x")]),
    "symlink": _zip([(_symlink_entry(), b"/etc/passwd")]),
    "git metadata": _zip([("jobs/a/.git/hooks/post-checkout", b"#!/bin/sh\ntouch evil\n")]),
    "duplicate entries": _zip([("jobs/a/a.job", b"{}"), ("jobs/a/a.job", b'{"evil": 1}')]),
    "file and folder clash": _zip([("jobs/a", b"x"), ("jobs/a/a.job", b"{}")]),
    "control character": _zip([("jobs/a/\x1b[31mevil.job", b"{}")]),
    "NUL in name": _patched([("jobs/a/aX.job", b"{}")], b"aX.job", b"a\0.job"),
    "overlong name": _zip([(f"jobs/{'x' * 300}/a.job", b"{}")]),
    "bad CRC": _patched(
        [("jobs/a/a.job", b'{"name": "a"}')], b'"a"}', b'"b"}', compression=zipfile.ZIP_STORED
    ),
    "zip bomb (ratio)": _zip([("jobs/a/a.job", bytes(20 * 1024**2))]),
    "not a zip": b"<html>502 Bad Gateway</html>",
    "truncated zip": None,
}


@pytest.mark.parametrize("kind", [*HOSTILE, "oversize"])
def test_hostile_export_is_rejected_and_nothing_of_it_is_written(
    fast_dir: Path, tmp_path: Path, simulator: Simulator, kind: str
) -> None:
    wid = workspace_id(9)
    simulator.add_workspace(wid, "target")
    simulator.populate(wid, 20)
    # oversize: the absolute cap on what one archive may unpack to.
    extra = {"limits": {"max_uncompressed_bytes": 4096}} if kind == "oversize" else None
    config_path = make_config(fast_dir, simulator, {"target": wid}, extra=extra)
    if kind != "oversize":
        snapshot(config_path)  # a good first snapshot to compare against
    repo = fast_dir / "repo"
    outside = _files_outside_staging(fast_dir)
    before_head = git(repo, "rev-parse", "HEAD") if (repo / ".git").exists() else None
    simulator.modify_job(wid, sorted(simulator.jobs(wid))[0])
    if kind != "oversize":
        served = HOSTILE[kind]
        simulator.export_hook = lambda data: _cut(data) if served is None else served

    results = run_snapshots(load_config(config_path))

    (result,) = results
    if kind == "oversize":  # every job's export is too large: the workspace fails
        assert not result.ok
        assert (result.error or "").startswith("batch 1/1")  # reported with its batch
    else:
        # The one job exported (the edited one) is named; its stored version stays, and
        # with nothing else changed nothing is committed.
        assert result.partial, result.error
        (problem,) = result.problems
        edited = sorted(simulator.jobs(wid))[0]
        assert problem.startswith(f"job {edited}: could not be exported: batch 1/1: ")
        assert problem.endswith("its previous version is kept")
        assert result.commit is None
    assert not Path("/tmp/backupd-evil-absolute").exists()
    assert not list(tmp_path.rglob("evil")) and not list(fast_dir.rglob("evil"))
    after = _files_outside_staging(fast_dir)
    if before_head is None:  # the run created the repository: README, .gitattributes only
        assert after.pop("repo/README.md")
        assert after.pop("repo/.gitattributes")
    assert after == outside
    if before_head is not None:
        assert git(repo, "rev-parse", "HEAD") == before_head
        assert git(repo, "status", "--porcelain", "--ignored") == ""
    assert list((fast_dir / "staging").iterdir()) == []  # staging cleaned up


def _files_outside_staging(base: Path) -> dict[str, bytes]:
    """Every file under base except staging and git's own bookkeeping (index, logs)."""
    return {
        str(path.relative_to(base)): path.read_bytes()
        for path in base.rglob("*")
        if path.is_file() and "staging" not in path.parts and ".git" not in path.parts
    }
