"""A deletion is recorded only when the service confirms it (issue "History stays true under
glitches"): transient empty lists of each kind, lowered totals, a bad offset probe, export
refusals; what the proof costs in API calls; and the full reconcile after a partial run.
Real HTTP to the simulator, real git, nothing mocked."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import pytest

from backupd.cli import main
from backupd.commands.snapshot import run_snapshots
from backupd.config import load_config
from backupd.dataarts.client import DataArtsClient
from backupd.errors import EXIT_OK, EXIT_PARTIAL, ServerError
from backupd.model import SnapshotResult
from backupd.simulator.server import DEFAULT_PROJECT_ID, VARIANTS, CallRecord, Glitch, Simulator
from backupd.snapshot.plan import PROGRESS_DIR
from tests.helpers import commit_count, expected_tree, git, make_config, read_tree, workspace_id

A, B = workspace_id(41), workspace_id(42)
# Glitches name workspace a: b lists beside it once a's first answer proved the credentials,
# and a glitch of any workspace would fire on whichever asked first.
SOURCE: dict[str, Any] = {
    "page_size": 10,  # several pages from few jobs
    "retry": {"attempts": 2, "base_delay": 0.01, "max_delay": 0.02},
}
V1 = f"/v1/{DEFAULT_PROJECT_ID}"
SHOW = re.compile(rf"{V1}/(jobs|scripts|resources)/(?!batch-export$|check-file$|import$)[^/]+")
LIST = re.compile(rf"{V1}/(jobs|scripts|resources)")


def run(config_path: Path, **options: Any) -> dict[str, SnapshotResult]:
    results = run_snapshots(load_config(config_path), **options)
    return {result.target.folder: result for result in results}


def cli(config_path: Path) -> int:
    return main(["--log-level", "warning", "snapshot", "-c", str(config_path)])


def show_calls(simulator: Simulator, wid: str | None = None) -> list[CallRecord]:
    """The show calls (job detail, one script, one resource): what the proofs cost."""
    return [
        c
        for c in simulator.calls
        if c.method == "GET" and SHOW.fullmatch(c.path) and wid in (None, c.workspace)
    ]


def list_calls(simulator: Simulator, wid: str | None = None) -> list[CallRecord]:
    return [
        c
        for c in simulator.calls
        if c.method == "GET" and LIST.fullmatch(c.path) and wid in (None, c.workspace)
    ]


def folder(config_path: Path, name: str) -> Path:
    return config_path.parent / "repo" / "prod" / name


def kinds(simulator: Simulator, wid: str, job_type: str) -> list[str]:
    types = simulator.content(wid)["job_types"]
    return sorted(name for name, kind in types.items() if kind == job_type)


@pytest.fixture
def two(tmp_path: Path, simulator: Simulator) -> Path:
    """Workspace a: 30 jobs (about a third REAL_TIME) with scripts and 6 resources; b: 12
    jobs. One good snapshot taken."""
    simulator.add_workspace(A, "a")
    simulator.populate(A, 30, realtime_fraction=0.3, resources=6)
    simulator.add_workspace(B, "b")
    simulator.populate(B, 12, resources=2)
    config_path = make_config(tmp_path, simulator, {"a": A, "b": B}, extra_source=SOURCE)
    assert cli(config_path) == EXIT_OK
    assert read_tree(folder(config_path, "a")) == expected_tree(simulator, A)
    simulator.clear_calls()
    return config_path


def untouched(config_path: Path, before: dict[str, bytes]) -> None:
    assert read_tree(folder(config_path, "a")) == before


# --- a transient empty list of each kind --------------------------------------------------


@pytest.mark.parametrize(
    ("glitch", "kind"),
    [
        (Glitch("REAL_TIME"), "REAL_TIME jobs"),
        (Glitch("BATCH"), "BATCH jobs"),
        (Glitch("scripts"), "scripts"),
        (Glitch("resources"), "resources"),
    ],
    ids=["realtime", "batch", "scripts", "resources"],
)
def test_a_transient_empty_list_deletes_nothing_and_the_run_is_partial(
    simulator: Simulator,
    two: Path,
    capsys: pytest.CaptureFixture[str],
    glitch: Glitch,
    kind: str,
) -> None:
    before, commits = read_tree(folder(two, "a")), commit_count(two.parent / "repo")
    simulator.faults.glitches.append(dataclasses.replace(glitch, workspace=A))

    assert cli(two) == EXIT_PARTIAL

    untouched(two, before)
    assert commit_count(two.parent / "repo") == commits  # nothing changed: no commit at all
    assert f"prod/a: partial snapshot: {kind}: the list left out" in capsys.readouterr().err
    # Proven to exist by a few show calls, then the list read once more.
    assert 1 <= len(show_calls(simulator, A)) <= 3
    assert cli(two) == EXIT_OK  # the glitch is gone: a clean (full) snapshot
    assert read_tree(folder(two, "a")) == expected_tree(simulator, A)


def test_an_empty_job_type_with_real_deletions_records_those_in_the_same_run(
    simulator: Simulator, two: Path
) -> None:
    realtime, batch = kinds(simulator, A, "REAL_TIME"), kinds(simulator, A, "BATCH")
    simulator.delete_job(A, realtime[-1])
    simulator.delete_job(A, batch[0])
    simulator.faults.glitches.append(Glitch("REAL_TIME", workspace=A))

    result = run(two)["a"]

    assert result.partial and result.commit is not None
    assert result.changed_jobs.removed == 2
    assert read_tree(folder(two, "a")) == expected_tree(simulator, A)
    subject = git(two.parent / "repo", "log", "-1", "--format=%s").strip()
    assert subject == "prod/a: 0 added, 0 changed, 2 removed"


def test_the_empty_answer_of_a_later_listing_keeps_everything(
    tmp_path: Path, simulator: Simulator
) -> None:
    # glitch-empty-batch-later: the second BATCH answer is empty. With one page per list that
    # is the next snapshot's listing.
    simulator.add_workspace(A, "a")
    simulator.populate(A, 8, realtime_fraction=0.25)
    VARIANTS["glitch-empty-batch-later"].apply(simulator)
    config_path = make_config(tmp_path, simulator, {"a": A})
    assert cli(config_path) == EXIT_OK
    before = read_tree(folder(config_path, "a"))
    assert cli(config_path) == EXIT_PARTIAL
    assert read_tree(folder(config_path, "a")) == before == expected_tree(simulator, A)


def test_an_empty_list_that_hides_new_items_is_read_again(
    tmp_path: Path, simulator: Simulator
) -> None:
    # Nothing of the list is stored, so no proof would notice: the empty answer is read once
    # more, and the new jobs it hid make the snapshot partial, not a silent omission.
    simulator.add_workspace(A, "a")
    simulator.populate(A, 8, realtime_fraction=0.0)
    config_path = make_config(tmp_path, simulator, {"a": A}, extra_source=SOURCE)
    assert cli(config_path) == EXIT_OK
    simulator.add_job(A, "stream_1", job_type="REAL_TIME")
    simulator.add_job(A, "stream_2", job_type="REAL_TIME")
    simulator.faults.glitches.append(Glitch("REAL_TIME", workspace=A))

    result = run(config_path)["a"]

    assert result.partial
    assert result.problems == (
        "REAL_TIME jobs: the list came back empty, then held 2; not recorded this time: "
        "stream_1, stream_2",
    )
    assert run(config_path)["a"].changed_jobs.added == 2
    assert read_tree(folder(config_path, "a")) == expected_tree(simulator, A)


@pytest.mark.parametrize(
    "glitch",
    [
        Glitch("BATCH", "total", total=10, offset=0),  # exactly one full page of 10
        Glitch("BATCH", "total", total=0, offset=0),  # carries its 10 rows, says total 0
        Glitch("BATCH", "total", total=4, offset=0),
        Glitch("BATCH", "empty", offset=1),  # a later page (and the offset probe)
        Glitch("BATCH", "total", total=100, offset=1),
        Glitch("BATCH", "drop", rows=3, offset=1),
        Glitch("scripts", "total", total=3, offset=0),
        Glitch("scripts", "empty", offset=1),
    ],
    ids=lambda g: f"{g.list}-{g.kind}-{g.total}-at-{g.offset}",
)
def test_a_lowered_total_or_an_empty_later_page_is_read_again(
    simulator: Simulator, two: Path, glitch: Glitch
) -> None:
    before = read_tree(folder(two, "a"))
    simulator.faults.glitches.append(dataclasses.replace(glitch, workspace=A))

    result = run(two)["a"]

    assert result.ok and not result.partial and result.commit is None
    untouched(two, before)
    assert simulator.faults.glitches == []  # it fired, and paging read the page again
    assert show_calls(simulator) == []  # the listing was complete: nothing to prove


def test_a_bad_offset_probe_does_not_switch_other_lists_or_workspaces(
    tmp_path: Path,
) -> None:
    with Simulator(offset_mode="record") as simulator:
        for wid, name in ((A, "a"), (B, "b")):
            simulator.add_workspace(wid, name)
            simulator.populate(wid, 40, realtime_fraction=0.4, scripts=25)
        # The probe of the first list asked (a's BATCH jobs) answers empty, once.
        VARIANTS["glitch-empty-probe"].apply(simulator)
        config_path = make_config(tmp_path, simulator, {"a": A, "b": B}, extra_source=SOURCE)
        results = run(config_path)
        assert all(r.ok and not r.partial for r in results.values())
        for wid, name in ((A, "a"), (B, "b")):
            assert read_tree(folder(config_path, name)) == expected_tree(simulator, wid)
        assert simulator.faults.glitches == []


def test_an_empty_list_beyond_the_proof_cap_is_read_again_not_asked_item_by_item(
    tmp_path: Path, simulator: Simulator
) -> None:
    simulator.add_workspace(A, "a")
    simulator.populate(A, 20, scripts=121)
    config_path = make_config(tmp_path, simulator, {"a": A}, extra_source=SOURCE)
    assert run(config_path)["a"].ok
    before = read_tree(folder(config_path, "a"))
    simulator.clear_calls()
    simulator.faults.glitches.append(Glitch("scripts", workspace=A))

    result = run(config_path)["a"]

    assert result.partial and result.scripts == 0
    assert "scripts: the list left out 121" in result.problems[0]
    assert read_tree(folder(config_path, "a")) == before
    assert show_calls(simulator) == []  # 121 > 50: the list is read again instead


# --- what the proof costs -----------------------------------------------------------------


def test_no_deletion_costs_no_call_and_each_deletion_one(simulator: Simulator, two: Path) -> None:
    # A snapshot with changes but nothing deleted: not one call more than listing + export.
    simulator.modify_job(A, kinds(simulator, A, "BATCH")[3])
    assert run(two)["a"].commit is not None
    assert show_calls(simulator) == []
    lists_without_deletions = len(list_calls(simulator, A))

    # Three jobs, two scripts and a resource deleted: six show calls, and no list read again.
    simulator.clear_calls()
    jobs = kinds(simulator, A, "BATCH")[:2] + kinds(simulator, A, "REAL_TIME")[:1]
    for name in jobs:
        simulator.delete_job(A, name)
    used = {s for job in simulator.jobs(A) for s in simulator.job_scripts(A, job)}
    scripts = sorted(set(simulator.scripts(A)) - used)[:2]
    for name in scripts:
        simulator.delete_script(A, name)
    resource = sorted(simulator.resources(A))[0]
    simulator.delete_resource(A, resource)

    result = run(two)["a"]

    assert result.ok and not result.partial
    assert result.changed_jobs.removed == 3
    assert read_tree(folder(two, "a")) == expected_tree(simulator, A)
    shown = sorted((c.path.split("/")[3], c.status) for c in show_calls(simulator))
    assert shown == [("jobs", 400)] * 3 + [("resources", 400)] + [("scripts", 400)] * 2
    assert len(list_calls(simulator, A)) == lists_without_deletions
    message = git(two.parent / "repo", "log", "-1", "--format=%B")
    assert all(f"  - {name}" in message for name in [*jobs, *scripts, resource])


def test_more_deletions_than_the_cap_are_confirmed_by_a_second_listing(
    tmp_path: Path, simulator: Simulator
) -> None:
    simulator.add_workspace(A, "a")
    simulator.populate(A, 10, scripts=150)
    config_path = make_config(tmp_path, simulator, {"a": A}, extra_source=SOURCE)
    assert run(config_path)["a"].ok
    used = {s for job in simulator.jobs(A) for s in simulator.job_scripts(A, job)}
    doomed = sorted(set(simulator.scripts(A)) - used)[:70]
    for name in doomed:
        simulator.delete_script(A, name)
    simulator.clear_calls()

    result = run(config_path)["a"]

    assert result.ok and not result.partial, result.problems
    assert read_tree(folder(config_path, "a")) == expected_tree(simulator, A)
    assert len(show_calls(simulator)) == 50
    assert "70 removed" in git(config_path.parent / "repo", "log", "-1", "--format=%s")


def test_an_unanswered_proof_keeps_the_item_and_the_next_run_records_it(
    simulator: Simulator, two: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    doomed = kinds(simulator, A, "BATCH")[5]
    simulator.delete_job(A, doomed)
    stored = {p: b for p, b in read_tree(folder(two, "a")).items() if f"jobs/{doomed}/" in p}

    def unanswered(self: DataArtsClient, workspace_id: str, name: str) -> bool:
        raise ServerError("Internal server error.", status=503, operation="show job")

    with monkeypatch.context() as patched:  # the show call fails, retries included
        patched.setattr(DataArtsClient, "job_exists", unanswered)
        result = run(two)["a"]

    assert result.partial
    assert result.problems == (
        f"BATCH jobs: 1 not listed and not confirmed deleted; kept as committed: {doomed}",
    )
    after = read_tree(folder(two, "a"))
    assert {p: b for p, b in after.items() if f"jobs/{doomed}/" in p} == stored
    following = run(two)["a"]
    assert following.ok and not following.partial and following.changed_jobs.removed == 1
    assert read_tree(folder(two, "a")) == expected_tree(simulator, A)


# --- the guard per list ---------------------------------------------------------------------


def test_the_mass_deletion_guard_looks_at_each_list_on_its_own(
    simulator: Simulator, two: Path
) -> None:
    # Most real-time jobs really deleted: a small share of the workspace, most of its list.
    realtime = kinds(simulator, A, "REAL_TIME")
    assert len(realtime) >= 4
    for name in realtime[:-1]:
        simulator.delete_job(A, name)
    before = read_tree(folder(two, "a"))

    refused = run(two)["a"]

    assert not refused.ok
    assert f"{len(realtime) - 1} of {len(realtime)} REAL_TIME jobs would be deleted" in (
        refused.error or ""
    )
    untouched(two, before)
    allowed = run(two, allow_mass_delete=True)["a"]
    assert allowed.ok and allowed.changed_jobs.removed == len(realtime) - 1


# --- after a partial run, a full reconcile --------------------------------------------------


def test_after_a_partial_run_the_next_one_reconciles_fully(simulator: Simulator, two: Path) -> None:
    repo = two.parent / "repo"
    progress = repo / ".git" / PROGRESS_DIR / "prod" / "a.json"
    assert json.loads(progress.read_text())["partial"] is False
    simulator.faults.glitches.append(Glitch("scripts", workspace=A))
    assert run(two)["a"].partial
    assert json.loads(progress.read_text())["partial"] is True

    # A script used by jobs changes apart from them (their lastUpdateTime stays).
    job = next(j for j in sorted(simulator.jobs(A)) if simulator.job_scripts(A, j))
    script = simulator.job_scripts(A, job)[0]
    simulator.set_script(A, script, "-- changed after the glitch\nSELECT 42;\n")
    simulator.clear_calls()

    result = run(two)["a"]

    assert result.ok and not result.partial
    exported = {n for c in simulator.calls if c.path.endswith("/batch-export") for n in c.job_names}
    assert exported == set(simulator.jobs(A))  # full: every job, not just the moved ones
    assert read_tree(folder(two, "a")) == expected_tree(simulator, A)
    copy = read_tree(folder(two, "a"))[f"jobs/{job}/{script}.script"]
    assert b"changed after the glitch" in copy
    assert json.loads(progress.read_text())["partial"] is False
