"""Restore end to end: simulator → snapshot (real git) → restore zip → import over real HTTP."""

from __future__ import annotations

import io
import json
import time
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from backupd.cli import main
from backupd.commands.snapshot import run_snapshots
from backupd.config import load_config
from backupd.dataarts.obs import ObsClient, ObsCredentials
from backupd.errors import AuthError, ClockSkewError
from backupd.restore.importer import ImportOptions
from backupd.restore.plan import plan_restore, read_workspace, restore_entries
from backupd.secret import Secret
from backupd.simulator.server import DEFAULT_OBS_AK, DEFAULT_OBS_SK, Simulator
from backupd.store.archive import extract_archive
from backupd.store.gitrepo import GitRepo
from backupd.store.index import WorkspaceIndex
from backupd.store.layout import INDEX_FILE
from tests.helpers import git, make_config, workspace_id
from tests.import_polls import instant_import_polls

BUCKET = "dr-bucket"
SALES = workspace_id(1)
FINANCE = workspace_id(2)


# The importer's first wait before polling the task; each next wait doubles.
FIRST_POLL = ImportOptions(BUCKET).first_poll


@pytest.fixture(autouse=True)
def import_polls(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The waits before each poll of an import task, recorded instead of slept."""
    return instant_import_polls(monkeypatch)


def snapshot(config_path: Path, *only: str) -> None:
    results = run_snapshots(load_config(config_path), only=only)
    assert results and all(r.ok for r in results), [r.error for r in results]


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["--log-level", "warning", "restore", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def read_zip(path: Path) -> dict[str, Any]:
    """Entries of a zip, JSON parsed (formatting is allowed to differ, values are not)."""
    with zipfile.ZipFile(path) as archive:
        return {name: json.loads(archive.read(name)) for name in archive.namelist()}


def parsed(files: dict[str, bytes]) -> dict[str, Any]:
    return {name: json.loads(data) for name, data in files.items()}


def workspace_state(simulator: Simulator, wid: str) -> tuple[dict[str, Any], dict[str, Any]]:
    return simulator.jobs(wid), simulator.scripts(wid)


def standalone(simulator: Simulator, wid: str) -> dict[str, Any]:
    """scripts/<s>.script entries for the scripts no job uses (restored with the workspace)."""
    used = {s for job in simulator.jobs(wid) for s in simulator.job_scripts(wid, job)}
    return {
        f"scripts/{name}.script": script
        for name, script in simulator.scripts(wid).items()
        if name not in used
    }


@pytest.fixture
def obs_config(tmp_path: Path, simulator: Simulator) -> Path:
    """Config for two workspaces whose restore section points at the simulator's OBS."""
    simulator.add_bucket(BUCKET)
    sk_file = tmp_path / "obs-sk"
    sk_file.write_text(DEFAULT_OBS_SK)
    restore = {
        "obs_bucket": BUCKET,
        "obs_endpoint": f"{simulator.url}/obs",
        "obs_ak": DEFAULT_OBS_AK,
        "obs_sk_file": str(sk_file),
    }
    for wid, name in ((SALES, "sales"), (FINANCE, "finance")):
        simulator.add_workspace(wid, name)
    return make_config(
        tmp_path,
        simulator,
        {"sales": SALES, "finance": FINANCE},
        extra_source={"restore": restore},
    )


def test_every_job_of_120_round_trips_to_its_original_export(
    tmp_path: Path, simulator: Simulator, obs_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # More jobs than one batch export takes: the snapshot is put together from several.
    names = simulator.populate(SALES, 120, realtime_fraction=0.3, chinese_fraction=0.15)
    original = simulator.export_files(SALES, names)
    assert any(not n.isascii() for n in names)
    assert any(d["processType"] == "REAL_TIME" for d in simulator.jobs(SALES).values())
    script_copies = [p.rsplit("/", 1)[1] for p in original if p.endswith(".script")]
    assert len(script_copies) > len(set(script_copies))  # some scripts are shared
    snapshot(obs_config)
    assert sum(c.path.endswith("/batch-export") for c in simulator.calls) > 1
    out = tmp_path / "jobs.zip"

    started = time.monotonic()
    code, stdout, stderr = cli(capsys, "-c", str(obs_config), "-w", "sales", "-o", str(out))
    seconds = time.monotonic() - started

    assert code == 0, stderr
    print(f"restore of 120 jobs: {seconds:.2f} s, {out.stat().st_size} bytes")
    restored = read_zip(out)
    jobs_part = {k: v for k, v in restored.items() if k.startswith("jobs/")}
    assert jobs_part.keys() == original.keys()
    assert jobs_part == parsed(original)
    assert {k: v for k, v in restored.items() if k.startswith("scripts/")} == standalone(
        simulator, SALES
    )
    assert extract_archive(out, tmp_path / "unpacked")  # passes our own hostile-zip checks
    assert "restore of prod/sales" in stdout and "jobs (120)" in stdout

    # Each job alone, too: exactly what exporting that one job gives.
    repo = GitRepo.open_existing(tmp_path / "repo", branch="main")
    oids = repo.list_files("HEAD", "prod/sales")
    blobs = repo.read_blobs(oids.values())
    files = {path: blobs[oid] for path, oid in oids.items()}
    # Read once for all the jobs (restore_entries would read it again for each one).
    stored = read_workspace(files, WorkspaceIndex.parse(files[INDEX_FILE]))
    for name in names:
        entries = restore_entries(files, [name], workspace=stored)
        expected = simulator.export_files(SALES, [name])
        assert entries.keys() == expected.keys(), name
        assert parsed(entries) == parsed(expected), name


def _set_date(monkeypatch: pytest.MonkeyPatch, moment: datetime) -> None:
    stamp = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    monkeypatch.setenv("GIT_COMMITTER_DATE", stamp)
    monkeypatch.setenv("GIT_AUTHOR_DATE", stamp)


def test_at_any_snapshot_date_tag_or_commit_restores_exactly_that_state(
    tmp_path: Path,
    simulator: Simulator,
    obs_config: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    simulator.populate(SALES, 20, chinese_fraction=0.2)
    simulator.populate(FINANCE, 10)
    repo_path = tmp_path / "repo"
    day = datetime(2026, 11, 20, 3, 0, tzinfo=UTC)
    states: list[dict[str, Any]] = []
    for number in range(3):
        if number == 1:
            jobs = sorted(simulator.jobs(SALES))
            simulator.modify_job(SALES, jobs[0])
            simulator.delete_job(SALES, jobs[1])
            simulator.add_job(SALES, "新作业_new", scripts=["new_script"])
        if number == 2:
            jobs = sorted(simulator.jobs(SALES))
            simulator.rename_job(SALES, jobs[2], "renamed")
            shared = simulator.job_scripts(SALES, jobs[3])[0]
            simulator.set_script(SALES, shared, "SELECT 2;\n")
        moment = day + timedelta(days=number)
        _set_date(monkeypatch, moment)
        snapshot(obs_config, "prod/sales")
        sha = git(repo_path, "rev-parse", "HEAD").strip()
        tag = f"snapshot/{moment:%Y-%m-%dT%H%M%SZ}"
        git(repo_path, "tag", "-a", tag, "-m", "snapshot", sha)
        # Another workspace's snapshot later that day: the sales state must not move.
        simulator.modify_job(FINANCE, sorted(simulator.jobs(FINANCE))[0])
        _set_date(monkeypatch, moment + timedelta(hours=6))
        snapshot(obs_config, "prod/finance")
        expected = parsed(simulator.export_files(SALES, list(simulator.jobs(SALES))))
        states.append({"moment": moment, "tag": tag, "sha": sha, "files": expected})
    simulator.modify_job(SALES, sorted(simulator.jobs(SALES))[5])  # live state moves on

    for number, state in enumerate(states):
        moment = state["moment"]
        ways = [
            f"{moment:%Y-%m-%d %H:%M}",  # naive: UTC
            (moment + timedelta(hours=8)).strftime("%Y-%m-%dT%H:%M:%S+08:00"),
            (moment + timedelta(hours=23)).isoformat(),  # the next day's snapshot not yet taken
            state["tag"],
            state["sha"][:10],
        ]
        for at in ways:
            out = tmp_path / f"at-{number}.zip"
            code, _, stderr = cli(
                capsys, "-c", str(obs_config), "-w", "sales", "--at", at,
                "--no-all-scripts", "-o", str(out),
            )  # fmt: skip
            assert code == 0, (at, stderr)
            assert read_zip(out) == state["files"], at

    code, stdout, _ = cli(capsys, "-c", str(obs_config), "--list", "-w", "sales")
    assert code == 0
    lines = [line for line in stdout.splitlines() if line.startswith("  ")]
    assert len(lines) == 3
    for line, state in zip(lines, reversed(states), strict=True):
        assert f"{state['moment']:%Y-%m-%d %H:%M:%S}Z" in line
        assert state["sha"][:10] in line and state["tag"] in line
    assert "20 added, 0 changed, 0 removed" in lines[-1]
    assert "1 added, 1 changed, 1 removed" in lines[-2]


def test_import_into_an_emptied_workspace_brings_back_that_point(
    simulator: Simulator,
    obs_config: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    import_polls: list[float],
) -> None:
    simulator.populate(SALES, 60, realtime_fraction=0.3, chinese_fraction=0.2)
    _set_date(monkeypatch, datetime(2026, 11, 20, 3, 0, tzinfo=UTC))
    snapshot(obs_config, "prod/sales")
    jobs_then, scripts_then = workspace_state(simulator, SALES)
    for name in sorted(jobs_then)[:5]:
        simulator.modify_job(SALES, name)
    simulator.delete_job(SALES, sorted(jobs_then)[6])
    simulator.add_job(SALES, "later_job")
    _set_date(monkeypatch, datetime(2026, 11, 21, 3, 0, tzinfo=UTC))
    snapshot(obs_config, "prod/sales")
    simulator.clear_workspace(SALES)  # the disaster
    assert simulator.jobs(SALES) == {}

    code, stdout, stderr = cli(
        capsys, "-c", str(obs_config), "-w", "sales", "--at", "2026-11-20 12:00", "--import"
    )

    assert code == 0, stderr
    jobs_now, scripts_now = workspace_state(simulator, SALES)
    assert jobs_now == jobs_then
    assert scripts_now == scripts_then
    assert stdout.count("SUCCESSFUL  created") == 60
    assert "imported 60 jobs into prod/sales in 1 part(s)" in stdout
    [key] = simulator.objects(BUCKET)
    assert key.startswith("backupd-restore/prod/sales/") and key.endswith(".zip")
    calls = [c.path.rsplit("/", 2)[-2:] for c in simulator.calls]
    assert ["jobs", "check-file"] in calls and ["jobs", "import"] in calls
    # The task was polled until it left RUNNING (the simulator's first poll), waits doubling.
    assert simulator.import_polls == 1
    assert import_polls == [FIRST_POLL, 2 * FIRST_POLL]


def test_import_keeps_existing_jobs_unless_overwrite_and_overwrites_only_stopped_jobs(
    simulator: Simulator, obs_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    simulator.populate(SALES, 20)
    snapshot(obs_config, "prod/sales")
    jobs = simulator.jobs(SALES)
    name = next(n for n, d in jobs.items() if simulator.job_status(SALES, n) == "SCHEDULING")
    simulator.modify_job(SALES, name)
    changed = simulator.jobs(SALES)[name]
    args = ["-c", str(obs_config), "-w", "sales", "-j", name, "--import"]

    code, stdout, _ = cli(capsys, *args)
    assert code == 0
    assert "kept (exists; SKIP)" in stdout
    assert simulator.jobs(SALES)[name] == changed

    code, stdout, stderr = cli(capsys, *args, "--overwrite")
    assert code == 1
    assert "stopped jobs" in stderr  # the warning
    assert "FAILED" in stdout and "Stop it before overwriting" in stdout
    assert simulator.jobs(SALES)[name] == changed

    simulator.stop_job(SALES, name)
    code, stdout, _ = cli(capsys, *args, "--overwrite")
    assert code == 0
    assert "SUCCESSFUL  overwritten" in stdout
    assert simulator.jobs(SALES)[name] == jobs[name]


def test_a_restore_larger_than_the_import_limit_is_imported_in_parts(
    tmp_path: Path,
    simulator: Simulator,
    capsys: pytest.CaptureFixture[str],
    import_polls: list[float],
) -> None:
    simulator.add_bucket(BUCKET)
    simulator.add_workspace(SALES, "sales")
    simulator.populate(SALES, 30)
    sk_file = tmp_path / "obs-sk"
    sk_file.write_text(DEFAULT_OBS_SK)
    restore = {
        "obs_bucket": BUCKET,
        "obs_endpoint": f"{simulator.url}/obs/",
        "obs_ak": DEFAULT_OBS_AK,
        "obs_sk_file": str(sk_file),
        "max_import_bytes": 20_000,
    }
    config = make_config(tmp_path, simulator, {"sales": SALES}, extra_source={"restore": restore})
    snapshot(config)
    jobs_then, scripts_then = workspace_state(simulator, SALES)
    simulator.clear_workspace(SALES)

    code, stdout, stderr = cli(capsys, "-c", str(config), "--import")

    assert code == 0, stderr
    parts = simulator.objects(BUCKET)
    assert len(parts) > 1 and all("-part" in key for key in parts)
    for key in parts:
        with zipfile.ZipFile(io.BytesIO(simulator.get_object(BUCKET, key))) as archive:
            assert sum(info.file_size for info in archive.infolist()) <= 20_000
    assert workspace_state(simulator, SALES) == (jobs_then, scripts_then)
    assert f"in {len(parts)} part(s)" in stdout
    assert import_polls == [FIRST_POLL, 2 * FIRST_POLL] * len(parts)  # each part's own task


def test_dry_run_tells_new_changed_and_identical_per_job(
    simulator: Simulator, obs_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    simulator.populate(SALES, 12)
    snapshot(obs_config, "prod/sales")
    jobs = sorted(simulator.jobs(SALES))
    with_script = next(j for j in jobs if simulator.job_scripts(SALES, j))
    others = [j for j in jobs if j != with_script]
    simulator.modify_job(SALES, others[0])
    simulator.delete_job(SALES, others[1])
    script = simulator.job_scripts(SALES, with_script)[0]
    simulator.set_script(SALES, script, "SELECT 'changed';\n")
    users = {j for j in simulator.jobs(SALES) if script in simulator.job_scripts(SALES, j)}
    calls_before = len(simulator.calls)

    code, stdout, stderr = cli(capsys, "-c", str(obs_config), "-w", "sales", "--dry-run")

    assert code == 0, stderr
    assert f"new        {others[1]}\n" in stdout
    changed = {others[0]} | users
    for job in sorted(simulator.jobs(SALES)):
        files = [f"{job}.job"] if job == others[0] else []
        files += [f"{script}.script"] if job in users else []
        line = f"changed    {job}  ({', '.join(files)})" if files else f"identical  {job}"
        assert f"  {line}\n" in stdout
    assert f"=> jobs: 1 new, {len(changed)} changed, {12 - 1 - len(changed)} identical" in stdout
    exports = [c for c in simulator.calls[calls_before:] if c.path.endswith("batch-export")]
    assert exports and not any(c.path.endswith("/jobs/import") for c in simulator.calls)

    code, stdout, _ = cli(capsys, "-c", str(obs_config), "-w", "sales", "--dry-run", "--offline")
    assert code == 0 and "compared" not in stdout


def test_with_dependents_adds_every_job_waiting_for_the_chosen_one(
    tmp_path: Path, simulator: Simulator, obs_config: Path
) -> None:
    simulator.populate(SALES, 40)
    snapshot(obs_config, "prod/sales")
    definitions = simulator.jobs(SALES)
    waiting: dict[str, set[str]] = {}
    for name, definition in definitions.items():
        for upstream in (
            definition["schedule"].get("cron", {}).get("dependJobs", {}).get("jobs", [])
        ):
            waiting.setdefault(upstream, set()).add(name)

    def closure(root: str) -> set[str]:
        found, frontier = {root}, [root]
        while frontier:
            for downstream in waiting.get(frontier.pop(), set()) - found:
                found.add(downstream)
                frontier.append(downstream)
        return found

    root = max(sorted(waiting), key=lambda n: len(closure(n)))
    expected = closure(root)
    assert len(expected) > 2  # a job waiting for a job that waits for the chosen one

    repo = GitRepo.open_existing(tmp_path / "repo", branch="main")
    plan = plan_restore(repo, "prod/sales", jobs=[root], with_dependents=True)

    assert set(plan.jobs) == expected
    assert set(plan.dependents) == expected - {root}
    assert parsed(dict(plan.entries)) == parsed(simulator.export_files(SALES, sorted(expected)))


def test_obs_rejects_a_wrong_secret_or_a_skewed_clock_and_nothing_is_imported(
    tmp_path: Path, simulator: Simulator, obs_config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    simulator.populate(SALES, 5)
    snapshot(obs_config, "prod/sales")
    (tmp_path / "obs-sk").write_text("not-the-secret")

    code, _, stderr = cli(capsys, "-c", str(obs_config), "-w", "sales", "--import")

    assert code == 1
    assert len(stderr.strip().splitlines()) == 1 and "SignatureDoesNotMatch" in stderr
    assert not any("/jobs/import" in c.path for c in simulator.calls)
    assert simulator.objects(BUCKET) == []

    late = lambda: datetime.now(UTC) + timedelta(minutes=20)  # noqa: E731
    credentials = ObsCredentials(DEFAULT_OBS_AK, Secret(DEFAULT_OBS_SK))
    with (
        ObsClient(f"{simulator.url}/obs", credentials, clock=late) as obs,
        pytest.raises(ClockSkewError, match="RequestTimeTooSkewed"),
    ):
        obs.put_object(BUCKET, "k.zip", b"data")
    unknown = ObsCredentials("NOPE", Secret("x"))
    with (
        ObsClient(f"{simulator.url}/obs", unknown) as obs,
        pytest.raises(AuthError, match="InvalidAccessKeyId"),
    ):
        obs.put_object(BUCKET, "k.zip", b"data")
