"""The pipeline against every field variant (dlf-api.md §12): names, layouts and extras.

Each variant runs the whole pipeline on a small workspace — first snapshot, no-change
snapshot, a change, restore — over real HTTP and real git, and compares the repository and
the restored zip with what the simulator holds (``sim.content``): every DataArts name stored
losslessly through the name mapping, a tree every system checks out, incremental snapshots
that export nothing when nothing changed, and a restore whose entry names and contents are
the export's own.
"""

from __future__ import annotations

import io
import json
import logging
import subprocess
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from backupd.commands.history import Scope, changes, show_job
from backupd.commands.snapshot import run_snapshots
from backupd.config import load_config
from backupd.errors import RestoreError
from backupd.model import SnapshotResult
from backupd.restore.plan import RestorePlan, plan_restore
from backupd.simulator.server import (
    CAFE_NFD,
    HOSTILE_NAME_CLASSES,
    LONG_CJK_JOB,
    Simulator,
    variant,
)
from backupd.snapshot.plan import read_baseline, read_stored_layout
from backupd.store.gitrepo import (
    _README_BEFORE_NAME_MAPPING,
    REPOSITORY_README,
    GitRepo,
    Identity,
)
from backupd.store.index import WorkspaceIndex
from backupd.store.layout_cache import read_layout_file
from backupd.store.names import with_suffix
from backupd.store.normalise import canonical_json, is_definition_file, normalise_file, script_view
from backupd.store.pathmap import component, portability_problems
from tests.conftest import Mount
from tests.helpers import backupd_in_process, git, make_config, workspace_id

WS = workspace_id(77)
FOLDER = "prod/sales"

PIPELINE_VARIANTS = [
    "folders",
    "documented",
    "flat",
    "extra-files",
    "flat-extra-files",
    "flat-gb18030",
    "folders-gb18030",
    "unflagged-utf8",
    "hostile-names",
    "hostile-names-flat",
    "hostile-names-gb18030",
]


# --- helpers ----------------------------------------------------------------------------------


@pytest.fixture
def running() -> Iterator[list[Simulator]]:
    """Simulators a test starts (stopped afterwards)."""
    started: list[Simulator] = []
    yield started
    for sim in started:
        sim.stop()


def start(running: list[Simulator], *names: str, jobs: int = 5, resources: int = 2) -> Simulator:
    sim = variant(*names)
    sim.start()
    running.append(sim)
    sim.add_workspace(WS, "sales")
    sim.populate(WS, jobs, resources=resources)
    return sim


def snapshot(config: Path) -> SnapshotResult:
    (result,) = run_snapshots(load_config(config))
    assert result.ok, result.error
    return result


def export_calls(sim: Simulator) -> list[tuple[str, ...]]:
    return [c.job_names for c in sim.calls if c.path.endswith("/batch-export")]


def tracked(repo: Path) -> list[str]:
    output = subprocess.run(
        ["git", "-C", str(repo), "ls-files", "-z"], capture_output=True, check=True
    ).stdout
    return [path.decode() for path in output.split(b"\0") if path]


def index_of(repo: Path) -> WorkspaceIndex:
    return WorkspaceIndex.parse((repo / FOLDER / ".backupd" / "index.json").read_bytes())


def assert_kept_layout_is_the_committed_one(repo: Path) -> None:
    """The layout the snapshot kept for the folder's tree (store/layout_cache.py) is exactly
    what working it out from the committed paths and index gives (no moves left)."""
    with GitRepo.open_existing(repo, branch="main") as opened:
        baseline = read_baseline(opened, FOLDER)
        assert baseline.tree is not None
        kept_file = repo / ".git" / "backupd-progress" / f"{FOLDER}.layout-{baseline.tree}.json"
        kept = read_stored_layout(opened, baseline.files, folder=FOLDER, tree=baseline.tree)
        worked_out = read_stored_layout(opened, baseline.files)
        assert read_layout_file(kept_file, None) is not None  # it was the kept one
    assert kept is not None
    assert worked_out.moves == {} and worked_out.incomplete == set()
    assert kept.jobs == worked_out.jobs
    assert (kept.scripts, kept.resources) == (worked_out.scripts, worked_out.resources)
    assert kept.version == worked_out.version
    others = [p for p in kept_file.parent.iterdir() if ".layout-" in p.name and p != kept_file]
    assert others == []  # the layouts of earlier trees are gone


def restore(repo: Path, **options: Any) -> RestorePlan:
    with GitRepo.open_existing(repo, branch="main") as opened:
        return plan_restore(opened, FOLDER, **options)


def same_as_export(entries: Mapping[str, bytes], expected: Mapping[str, bytes]) -> None:
    """Entry names equal; definitions hold the same values, every other file the same bytes."""
    assert sorted(entries) == sorted(expected)
    for name, data in expected.items():
        if is_definition_file(name):
            assert json.loads(entries[name]) == json.loads(data), name
        else:
            assert entries[name] == data, name


def assert_stored_losslessly(repo: Path, sim: Simulator) -> None:
    """Every job, standalone script and resource of the simulator is in the repository, each
    at the path the index records for its exact DataArts name, holding its definition."""
    content = sim.content(WS)
    index = index_of(repo)
    base = repo / FOLDER
    assert set(index.jobs) == set(content["jobs"])
    for name, definition in content["jobs"].items():
        folder = index.job_folder(name)
        assert (base / f"jobs/{folder}/{folder}.job").read_bytes() == canonical_json(definition)
    scripts = {p for p in tracked(repo) if p.startswith(f"{FOLDER}/scripts/")}
    for name, definition in content["scripts"].items():
        path = f"scripts/{index.script_component(name)}.script"
        assert (base / path).read_bytes() == canonical_json(definition)
        scripts.discard(f"{FOLDER}/{path}")
    assert all(not p.endswith(".script") for p in scripts)  # only views are left
    resources = sorted(p for p in tracked(repo) if p.startswith(f"{FOLDER}/resources/"))
    assert len(resources) == len(content["resources"])
    for name, definition in content["resources"].items():
        path = f"resources/{index.resource_component(name)}.resource"
        assert (base / path).read_bytes() == canonical_json(definition)


def assert_portable(repo: Path) -> None:
    assert portability_problems(tracked(repo)) == []


def assert_restores_the_export(repo: Path, sim: Simulator) -> None:
    """A restore of the whole workspace (its jobs) is the export, name for name."""
    plan = restore(repo, all_scripts=False)
    same_as_export(plan.entries, sim.content(WS)["export"])
    with zipfile.ZipFile(io.BytesIO(plan.zip())) as archive:
        assert sorted(archive.namelist()) == sorted(sim.content(WS)["export"])


def job_with_scripts(sim: Simulator) -> str:
    jobs = sim.content(WS)["job_scripts"]
    hostile = [j for j in jobs if jobs[j] and not (j.isascii() and j.isidentifier())]
    return (hostile or [j for j in jobs if jobs[j]])[0]


# --- the pipeline on every variant -------------------------------------------------------------


@pytest.mark.parametrize("name", PIPELINE_VARIANTS)
def test_pipeline_round_trips_every_variant(
    tmp_path: Path, running: list[Simulator], name: str
) -> None:
    sim = start(running, name)
    config = make_config(tmp_path, sim, {"sales": WS})
    repo = tmp_path / "repo"

    first = snapshot(config)
    assert first.commit is not None and first.problems == ()
    assert_kept_layout_is_the_committed_one(repo)
    assert_stored_losslessly(repo, sim)
    assert_portable(repo)
    assert_restores_the_export(repo, sim)

    # Nothing changed: nothing exported, nothing committed (incremental in every layout).
    sim.clear_calls()
    unchanged = snapshot(config)
    assert unchanged.commit is None and unchanged.problems == ()
    assert export_calls(sim) == []

    # A change: an edited job, a script edited apart from its jobs, a new and a gone job.
    edited = job_with_scripts(sim)
    script = sim.content(WS)["job_scripts"][edited][0]
    holders = {j for j, used in sim.content(WS)["job_scripts"].items() if script in used}
    gone = sorted(j for j in sim.jobs(WS) if j not in holders)[0]
    sim.modify_job(WS, edited)
    sim.set_script(WS, script, "SELECT 'edited apart from its jobs';\n")
    sim.add_job(WS, "brand new", scripts=[script])
    sim.delete_job(WS, gone)
    sim.clear_calls()

    changed = snapshot(config)

    assert changed.commit is not None and changed.problems == ()
    assert_kept_layout_is_the_committed_one(repo)
    exported = {job for call in export_calls(sim) for job in call}
    assert exported == holders | {"brand new"}  # what moved, and what holds the script
    assert_stored_losslessly(repo, sim)
    assert_portable(repo)
    assert_restores_the_export(repo, sim)
    message = git(repo, "log", "-1", "--format=%B")
    assert f"  - {gone}" in message or f"  - {gone!r}" in message

    # restore --job: the job with its scripts, exactly as exporting it alone gives it.
    plan = restore(repo, jobs=[edited])
    same_as_export(plan.entries, sim.export_files(WS, [edited]))
    assert script in plan.job_scripts

    # A deleted job: the error names the commit that deleted it.
    with pytest.raises(RestoreError, match=rf"deleted by commit {changed.commit[:10]}"):
        restore(repo, jobs=[gone])


def test_the_layout_is_kept_when_staging_is_on_another_file_system(
    tmp_path: Path, running: list[Simulator], mount_tmpfs: Mount
) -> None:
    staging = mount_tmpfs("staging-fs", "64m")
    if staging is None:
        pytest.skip("mounting a tmpfs is not permitted here")
    sim = start(running, "hostile-names")
    config = make_config(tmp_path, sim, {"sales": WS}, extra={"staging_dir": str(staging)})
    repo = tmp_path / "repo"

    snapshot(config)
    sim.modify_job(WS, sorted(sim.jobs(WS))[0])
    snapshot(config)

    assert_kept_layout_is_the_committed_one(repo)


@pytest.mark.parametrize("name_class", sorted(HOSTILE_NAME_CLASSES))
def test_each_class_of_name_alone_is_stored_and_restored_exactly(
    tmp_path: Path, running: list[Simulator], name_class: str
) -> None:
    # Every name of the class is a job, a script (used by that job, so also in the script
    # list) and a resource (exported beside the job): one name, three kinds of file.
    sim = start(running, "extra-files", jobs=0, resources=0)
    names = HOSTILE_NAME_CLASSES[name_class]
    for name in names:
        sim.add_job(WS, name, scripts=[name], resources=[name])
    config = make_config(tmp_path, sim, {"sales": WS})
    repo = tmp_path / "repo"

    result = snapshot(config)

    assert result.commit is not None and result.problems == ()
    assert_stored_losslessly(repo, sim)
    assert_portable(repo)
    assert_restores_the_export(repo, sim)
    for name in names:
        plan = restore(repo, jobs=[name])
        same_as_export(plan.entries, sim.export_files(WS, [name]))
    sim.clear_calls()
    assert snapshot(config).commit is None and export_calls(sim) == []


def test_hostile_names_in_commit_messages_are_the_dataarts_names(
    tmp_path: Path, running: list[Simulator]
) -> None:
    sim = start(running, "hostile-names", jobs=1)
    config = make_config(tmp_path, sim, {"sales": WS})
    snapshot(config)
    message = git(tmp_path / "repo", "log", "-1", "--format=%B")
    added = {line[4:].split(" (by ")[0] for line in message.splitlines() if line[:4] == "  + "}
    assert {LONG_CJK_JOB, "CON", "aux", "Daily_Orders", "daily_orders", CAFE_NFD} <= added
    assert "'tab\\there'" in added  # a control character is shown escaped
    assert not [name for name in added if "~" in name]  # no encoded path stands for a name


def test_a_workspace_holding_an_unstorable_item_commits_everything_else(
    tmp_path: Path, running: list[Simulator]
) -> None:
    sim = start(running, "hostile-names", jobs=3)

    def break_the_tab_job(data: bytes) -> bytes:
        # Its export carries an entry no archive may hold (a NUL in its name): unreadable.
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            if not any("tab\there" in n for n in archive.namelist()):
                return data
        return data.replace(b"tab\there.job", b"tab\x00here.job")

    sim.export_hook = break_the_tab_job
    config = make_config(tmp_path, sim, {"sales": WS})
    repo = tmp_path / "repo"

    result = snapshot(config)

    assert result.partial and result.commit is not None
    (problem,) = result.problems
    assert problem.startswith("job 'tab\\there': could not be exported: ")
    assert problem.endswith("not stored yet")
    index = index_of(repo)
    assert "tab\there" not in index.jobs
    assert set(index.jobs) == set(sim.jobs(WS)) - {"tab\there"}
    assert_portable(repo)

    sim.export_hook = None
    assert snapshot(config).problems == ()
    assert_stored_losslessly(repo, sim)


# --- optional parts of the API -----------------------------------------------------------------


@pytest.mark.parametrize("answer", ["missing", "forbidden"])
def test_without_the_resource_api_jobs_are_committed_with_one_warning(
    tmp_path: Path,
    running: list[Simulator],
    caplog: pytest.LogCaptureFixture,
    answer: str,
) -> None:
    sim = start(running, "folders")
    other = workspace_id(78)
    sim.add_workspace(other, "finance")
    sim.populate(other, 3, resources=1)
    config = make_config(tmp_path, sim, {"sales": WS, "finance": other})
    repo = tmp_path / "repo"
    sim.configure(resources_api=answer)

    with caplog.at_level(logging.WARNING):
        results = run_snapshots(load_config(config))

    for result in results:
        assert result.ok and result.partial and result.commit is not None
        (problem,) = result.problems
        assert problem.startswith("warning: resources not backed up: the API is ")
        assert "set 'resources: false' for source prod" in problem
    # Not published (404): asked and said once per run. Refused (403): a workspace's role or
    # an IAM policy may differ from the next workspace's, so each is asked.
    once = 1 if answer == "missing" else 2
    assert caplog.messages.count("snapshot.optional_api_unavailable") == once
    resource_calls = [r for r in sim.served if r.path.endswith("/resources")]
    assert len(resource_calls) == once
    assert set(index_of(repo).jobs) == set(sim.jobs(WS))
    assert not [p for p in tracked(repo) if "/resources/" in p]


def test_stored_resources_stay_while_the_api_is_away_and_the_switch_turns_it_off(
    tmp_path: Path, running: list[Simulator]
) -> None:
    sim = start(running, "folders")
    config = make_config(tmp_path, sim, {"sales": WS})
    repo = tmp_path / "repo"
    snapshot(config)
    stored = {p: (repo / p).read_bytes() for p in tracked(repo) if "/resources/" in p}
    assert len(stored) == 2

    sim.configure(resources_api="missing")
    sim.modify_job(WS, sorted(sim.jobs(WS))[0])
    result = snapshot(config)
    assert result.commit is not None and result.partial
    assert {p: (repo / p).read_bytes() for p in tracked(repo) if "/resources/" in p} == stored
    assert "resources" not in git(repo, "log", "-1", "--format=%B")  # none recorded as removed

    # resources: false: not asked, nothing reported, the stored definitions kept.
    config = make_config(tmp_path, sim, {"sales": WS}, extra_source={"resources": False})
    sim.modify_job(WS, sorted(sim.jobs(WS))[0])
    sim.clear_calls()
    result = snapshot(config)
    assert result.commit is not None and result.problems == ()
    assert not [c for c in sim.calls if c.path.endswith("/resources")]
    assert {p: (repo / p).read_bytes() for p in tracked(repo) if "/resources/" in p} == stored


def test_snapshot_status_and_check_show_the_missing_resource_api_as_a_warning(
    tmp_path: Path, running: list[Simulator]
) -> None:
    sim = start(running, "no-resources-api", jobs=2)
    config = make_config(tmp_path, sim, {"sales": WS})

    snapshotted = backupd_in_process("snapshot", "-c", str(config))
    status = backupd_in_process("status", "-c", str(config))
    checked = backupd_in_process("check", "-c", str(config))

    assert snapshotted.returncode == 3, snapshotted.stderr  # partial: committed, with a warning
    assert "partial snapshot: warning: resources not backed up" in snapshotted.stderr
    row = next(line for line in status.stdout.splitlines() if line.startswith("prod/sales"))
    assert row.split()[1] == "WARNING"
    assert "warning: resources not backed up" in status.stdout
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert any(
        line.split()[:3] == ["WARN", "prod/sales", "resources"]
        for line in checked.stdout.splitlines()
    )


# --- an older repository -----------------------------------------------------------------------


def old_layout(sim: Simulator) -> dict[str, bytes]:
    """A workspace folder as backupd stored it before the name mapping: every name as it is,
    the export's layout as it was (here the documented one: a job without scripts at
    jobs/<job>.job), an index of job metadata only."""
    tree: dict[str, bytes] = {}

    def add(path: str, data: bytes) -> None:
        tree[path] = normalise_file(path, data)
        view = script_view(json.loads(data)) if path.endswith(".script") else None
        if view is not None:
            tree[with_suffix(path, view[0])] = view[1]

    for path, data in sim.export_files(WS, sorted(sim.jobs(WS))).items():
        add(path, data)
    for name, script in sim.scripts(WS).items():
        add(f"scripts/{name}.script", canonical_json(script))
    for name, resource in sim.resources(WS).items():
        tree[f"resources/{name}.resource"] = canonical_json(resource)
    rows = {
        name: {"jobType": "BATCH", "lastUpdateTime": None, "lastUpdateUser": None}
        for name in sim.jobs(WS)
    }
    tree[".backupd/index.json"] = canonical_json({"jobs": rows})
    return tree


def test_an_older_repository_moves_its_paths_in_one_commit_that_says_so(
    tmp_path: Path, running: list[Simulator]
) -> None:
    sim = start(running, "documented", jobs=3, resources=1)
    for name in ("CON", "trailing.", "Daily_Orders", "daily_orders", "tab\there"):
        sim.add_job(WS, name, scripts=["aux"] if name == "CON" else [])
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    for path, data in old_layout(sim).items():
        target = repo / FOLDER / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=old", "-c", "user.email=old@example.com", "commit", "-qm", "old")
    old = git(repo, "rev-parse", "HEAD").strip()
    assert portability_problems(tracked(repo))  # CON, trailing., the case pair, the tab
    config = make_config(tmp_path, sim, {"sales": WS})

    result = snapshot(config)

    *commits, attributes = git(repo, "log", "--format=%H %s", f"{old}..HEAD").splitlines()
    assert attributes.endswith(
        " backupd: .gitattributes: views and bookkeeping marked as generated"
    )
    assert len(commits) == 1  # the moves; the content was the same
    move, subject = commits[0].split(" ", 1)
    changes = git(repo, "show", "--name-status", "--format=", move).splitlines()
    renames = [line for line in changes if line.startswith("R100")]
    assert subject == f"{FOLDER}: {len(renames)} files moved to portable paths (content unchanged)"
    assert all(line in renames or ".backupd/index.json" in line for line in changes)
    assert result.commit == move
    assert_kept_layout_is_the_committed_one(repo)
    assert_portable(repo)
    assert_stored_losslessly(repo, sim)
    assert_restores_the_export(repo, sim)
    # git sees the moves as renames: the history of a moved file goes on past them.
    index = index_of(repo)
    moved = f"{FOLDER}/jobs/{index.job_folder('CON')}/{index.job_folder('CON')}.job"
    assert index.job_folder("CON") != "CON"
    assert git(repo, "log", "--follow", "--format=%H", "--", moved).split() == [move, old]
    # The folder is as a fresh snapshot leaves it: nothing to export, nothing to commit.
    sim.clear_calls()
    assert snapshot(config).commit is None and export_calls(sim) == []


def test_restore_dry_run_compares_hostile_names_with_the_live_workspace(
    tmp_path: Path, running: list[Simulator]
) -> None:
    # The live exports are read in memory: names that are no file names compare too.
    sim = start(running, "hostile-names-flat", jobs=2)
    config = make_config(tmp_path, sim, {"sales": WS})
    snapshot(config)
    sim.modify_job(WS, "CON")

    result = backupd_in_process("restore", "-c", str(config), "-w", "sales", "--dry-run")

    assert result.returncode == 0, result.stderr
    statuses = {}
    for line in result.stdout.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[0] in ("new", "changed", "identical"):
            statuses[parts[1]] = parts[0]
    assert statuses.pop("CON  (CON.job)") == "changed"
    assert statuses.pop(LONG_CJK_JOB) == "identical"
    assert statuses.pop("'tab\\there'") == "identical"  # shown escaped
    assert set(statuses.values()) == {"identical"}


def test_the_repository_readme_explains_the_names_and_an_older_one_is_brought_up_to_date(
    tmp_path: Path,
) -> None:
    identity = Identity("backupd", "backupd@example.com")
    with GitRepo.open(tmp_path / "repo", branch="main") as repo:
        repo.prepare(identity)
        readme = (tmp_path / "repo" / "README.md").read_text()
        assert readme == REPOSITORY_README
        for said in ("CON~a3dbc4b644", "Daily_Orders", ".backupd/index.json", "core.longpaths"):
            assert said in readme
        # A README as an older backupd wrote it, untouched since: replaced, in its own commit.
        (tmp_path / "repo" / "README.md").write_text(_README_BEFORE_NAME_MAPPING)
        repo.stage(["README.md"])
        repo.commit("old readme", author=identity, committer=identity)
        repo.prepare(identity)
        assert (tmp_path / "repo" / "README.md").read_text() == REPOSITORY_README
        repo.prepare(identity)  # once
        # One the user edited is theirs.
        (tmp_path / "repo" / "README.md").write_text("# ours\n")
        repo.stage(["README.md"])
        repo.commit("ours", author=identity, committer=identity)
        repo.prepare(identity)
        assert (tmp_path / "repo" / "README.md").read_text() == "# ours\n"
    subjects = git(tmp_path / "repo", "log", "--format=%s").splitlines()
    assert subjects == [
        "ours",
        "backupd: README brought up to date",
        "old readme",
        "backupd: initialise repository",
    ]
    assert component("CON") == "CON~a3dbc4b644"  # the README's example is the real one


def test_log_and_show_take_the_dataarts_name(tmp_path: Path, running: list[Simulator]) -> None:
    sim = start(running, "hostile-names-flat", jobs=1)
    config = make_config(tmp_path, sim, {"sales": WS})
    first = snapshot(config)
    sim.modify_job(WS, "CON")
    second = snapshot(config)
    sim.delete_job(WS, "tab\there")
    third = snapshot(config)

    with GitRepo.open_existing(tmp_path / "repo", branch="main") as repo:
        found = changes(repo, Scope((FOLDER,), "CON"))
        assert [(c.info.sha, c.what) for c in found] == [
            (second.commit, "changed"),
            (first.commit, "added"),
        ]
        assert [c.what for c in changes(repo, Scope((FOLDER,), "tab\there"))] == [
            "removed",
            "added",
        ]
        view = show_job(repo, Scope((FOLDER,), "CON"), at=first.commit, with_scripts=True)
        assert json.loads(view.files[0][1])["name"] == "CON"
        assert view.files[0][0].startswith(f"{FOLDER}/jobs/CON~")
        assert set(view.exported.values()) >= {"jobs/CON.job", "scripts/PRN.script"}
        assert third.commit is not None
        assert (
            json.loads(show_job(repo, Scope((FOLDER,), LONG_CJK_JOB)).files[0][1])
            == (sim.jobs(WS)[LONG_CJK_JOB])
        )
