"""Benchmark: backupd against the API floor and a naive baseline (not part of the test run).

    python bench/run.py                      # 20 workspaces x 2,000 jobs (the default size)
    python bench/run.py --jobs 8000          # 4x the jobs, for the memory check
    python bench/run.py --workspaces 2 --jobs 300 --skip-naive   # a quick look

It starts the simulator in this process with a per-request latency, a per-job export cost and
server-side throttling, then measures in one run:

  (a) first full snapshot   (b) snapshot with no change   (c) snapshot after 1% of jobs changed

each as a separate `backupd snapshot` subprocess (peak RSS from /proc VmHWM), and the same
three scenarios for a naive sequential script (list -> download each batch -> unzip ->
`git add -A` -> commit). The API floor of a scenario is the time its calls need at the allowed
rates and concurrency, plus one request latency (see `api_floor`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from backupd.dataarts.limits import MAX_EXPORT_NAMES
from backupd.simulator.server import DEFAULT_PROJECT_ID, DEFAULT_TOKEN, Simulator

PAGE_SIZE = 1000
SCRIPT_PAGE_SIZE = 100


@dataclass(frozen=True)
class Scale:
    workspaces: int
    jobs: int
    latency: float
    export_cost_per_job: float
    export_rate: float
    list_rate: float
    concurrency: int
    changed_fraction: float


@dataclass(frozen=True)
class Measurement:
    seconds: float
    peak_rss_mb: float
    export_calls: int
    list_calls: int
    commits: int
    throttled: int  # calls the simulated gateway refused with 429


def api_floor(scale: Scale, export_calls: int, list_calls: int) -> float:
    """Time the calls need at the allowed rates and concurrency, plus one latency.

    Listing and exporting use separate rate limits (30/s and 10/s per user in DataArts), so
    they can overlap; each call also occupies one of ``concurrency`` connections for its
    duration. The floor is the larger of the rate bound and the concurrency bound.
    """
    export_duration = scale.latency + scale.export_cost_per_job * MAX_EXPORT_NAMES
    rate_bound = max(export_calls / scale.export_rate, list_calls / scale.list_rate)
    busy = export_calls * export_duration + list_calls * scale.latency
    concurrency_bound = busy / scale.concurrency
    return max(rate_bound, concurrency_bound) + scale.latency


def count_calls(simulator: Simulator) -> tuple[int, int, int]:
    """(export calls, listing calls, calls refused with 429) since the last clear_calls()."""
    calls = simulator.calls  # the calls the service answered (faults are served, not called)
    exports = sum(1 for c in calls if c.path.endswith("/batch-export"))
    throttled = sum(1 for r in simulator.served if r.status == 429)
    return exports, len(calls) - exports, throttled


def peak_rss_of(command: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """(seconds, peak RSS in MB, exit code) of a subprocess, polling /proc VmHWM."""
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    stop = threading.Event()

    def poll() -> None:
        nonlocal peak
        status = Path(f"/proc/{process.pid}/status")
        while not stop.is_set():
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak = max(peak, int(line.split()[1]))
            except OSError:
                return
            time.sleep(0.02)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    _, stderr = process.communicate()
    stop.set()
    watcher.join()
    if process.returncode != 0:
        sys.stderr.write(stderr.decode("utf-8", "replace")[-3000:])
    return time.perf_counter() - started, peak / 1024, process.returncode


def commit_count(repo: Path) -> int:
    if not (repo / ".git").exists():
        return 0
    out = subprocess.run(
        ["git", "-C", str(repo), "rev-list", "--count", "--all"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return int(out or 0)


def settle(repo: Path) -> float:
    """Let the previous scenario's after-effects end before timing the next; returns seconds.

    A run ends with `git gc --auto`, which may go on repacking in the background (as git does
    after commits); and on this file system, files deleted in the last seconds make creating
    new ones slow. Neither belongs to the next scenario.
    """
    started = time.perf_counter()
    pid_file = repo / ".git" / "gc.pid"
    while pid_file.exists() and time.perf_counter() - started < 600:
        time.sleep(0.5)
    os.sync()
    time.sleep(5)
    return time.perf_counter() - started


def write_config(
    folder: Path, simulator: Simulator, workspaces: list[tuple[str, str]], scale: Scale
) -> Path:
    token = folder / "token"
    token.write_text(DEFAULT_TOKEN)
    config = {
        "repository": {"path": str(folder / "repo")},
        "staging_dir": str(folder / "staging"),
        "sources": [
            {
                "name": "bench",
                "endpoint": simulator.url,
                "project_id": DEFAULT_PROJECT_ID,
                "auth": {"type": "token", "token_file": str(token)},
                "workspaces": [{"id": wid, "name": name} for wid, name in workspaces],
                "page_size": PAGE_SIZE,
                "requests_per_second": scale.list_rate,
                "exports_per_second": scale.export_rate,
                "max_concurrent_requests": scale.concurrency,
            }
        ],
        "daemon": {"max_parallel": scale.concurrency},
    }
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_backupd(config: Path, simulator: Simulator) -> Measurement:
    simulator.clear_calls()
    before = commit_count(config.parent / "repo")
    env = {**os.environ, "BACKUPD_LOG_LEVEL": "warning"}
    seconds, rss, code = peak_rss_of(
        [sys.executable, "-m", "backupd", "snapshot", "-c", str(config)], env
    )
    if code != 0:
        raise SystemExit(f"backupd snapshot failed with exit code {code}")
    exports, lists, throttled = count_calls(simulator)
    commits = commit_count(config.parent / "repo") - before
    return Measurement(seconds, rss, exports, lists, commits, throttled)


# --- the naive baseline: what a quick script would do ----------------------------------------

NAIVE = r"""
import io, json, subprocess, sys, zipfile, shutil
from pathlib import Path
import httpx
url, project, token, repo = sys.argv[1:5]
workspaces = json.loads(sys.argv[5])
repo = Path(repo)
if not (repo / ".git").exists():
    repo.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
http = httpx.Client(base_url=f"{url}/v1/{project}", headers={"X-Auth-Token": token}, timeout=600)
for wid, name in workspaces:
    h = {"workspace": wid}
    names = []
    for job_type in ("BATCH", "REAL_TIME"):
        offset = 0
        while True:
            query = {"jobType": job_type, "limit": 1000, "offset": offset}
            page = http.get("/jobs", params=query, headers=h).json()
            names += [j["name"] for j in page["jobs"]]
            if len(page["jobs"]) < 1000:
                break
            offset += 1
    folder = repo / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    for start in range(0, len(names), 100):
        body = {"jobList": names[start:start + 100], "exportDepend": True}
        data = http.post("/jobs/batch-export", json=body, headers=h).content
        zipfile.ZipFile(io.BytesIO(data)).extractall(folder)
env = {"GIT_AUTHOR_NAME": "n", "GIT_AUTHOR_EMAIL": "n@x", "PATH": "/usr/bin:/bin"}
env |= {"GIT_COMMITTER_NAME": "n", "GIT_COMMITTER_EMAIL": "n@x"}
subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
commit = ["git", "-C", str(repo), "commit", "-q", "-m", "snapshot", "--allow-empty"]
subprocess.run(commit, check=True, env=env)
"""


def run_naive(folder: Path, simulator: Simulator, workspaces: list[tuple[str, str]]) -> Measurement:
    simulator.clear_calls()
    before = commit_count(folder / "naive-repo")
    script = folder / "naive.py"
    script.write_text(NAIVE)
    command = [
        sys.executable,
        str(script),
        simulator.url,
        DEFAULT_PROJECT_ID,
        DEFAULT_TOKEN,
        str(folder / "naive-repo"),
        json.dumps(workspaces),
    ]
    seconds, rss, code = peak_rss_of(command, dict(os.environ))
    if code != 0:
        raise SystemExit(f"naive baseline failed with exit code {code}")
    exports, lists, throttled = count_calls(simulator)
    commits = commit_count(folder / "naive-repo") - before
    return Measurement(seconds, rss, exports, lists, commits, throttled)


def mutate(simulator: Simulator, workspaces: list[tuple[str, str]], fraction: float) -> int:
    changed = 0
    for wid, _ in workspaces:
        names = sorted(simulator.jobs(wid))
        count = max(1, math.ceil(len(names) * fraction))
        step = max(1, len(names) // count)
        for name in names[::step][:count]:
            simulator.modify_job(wid, name, user="bench")
            changed += 1
    return changed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workspaces", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=2000, help="jobs per workspace")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per request")
    parser.add_argument("--export-cost", type=float, default=0.002, help="seconds per exported job")
    parser.add_argument("--export-rate", type=float, default=10.0, help="allowed exports/s")
    parser.add_argument("--list-rate", type=float, default=30.0, help="allowed listing calls/s")
    parser.add_argument("--concurrency", type=int, default=4, help="backupd's export concurrency")
    parser.add_argument("--changed", type=float, default=0.01, help="fraction changed for (c)")
    parser.add_argument("--skip-naive", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()
    scale = Scale(
        args.workspaces,
        args.jobs,
        args.latency,
        args.export_cost,
        args.export_rate,
        args.list_rate,
        args.concurrency,
        args.changed,
    )

    folder = Path(tempfile.mkdtemp(prefix="backupd-bench-"))
    simulator = Simulator(max_page_size=PAGE_SIZE)
    workspaces = [(f"{i + 1:032x}", f"ws{i + 1:02d}") for i in range(scale.workspaces)]
    print(f"populating {scale.workspaces} x {scale.jobs} jobs ...", flush=True)
    for wid, name in workspaces:
        simulator.add_workspace(wid, name)
        simulator.populate(wid, scale.jobs)
    simulator.start()
    # Server-side: every request pays latency, exports pay per job, the gateway throttles
    # (429 above the allowed calls in any one second, as DataArts counts).
    simulator.faults.latency = scale.latency
    simulator.faults.export_cost_per_job = scale.export_cost_per_job
    simulator.faults.export_throttle_rps = scale.export_rate
    simulator.faults.throttle_rps = scale.export_rate + scale.list_rate
    config = write_config(folder, simulator, workspaces, scale)
    rows: list[tuple[str, Measurement, Measurement | None]] = []
    try:
        naive_results: dict[str, Measurement] = {}
        for label, prepare in (
            ("(a) first full snapshot", None),
            ("(b) no change", None),
            (
                "(c) 1% of jobs changed",
                lambda: mutate(simulator, workspaces, scale.changed_fraction),
            ),
        ):
            if prepare is not None:
                print(f"changed {prepare()} jobs", flush=True)
            waited = settle(folder / "repo")
            print(f"{label}: backupd ... (settled {waited:.0f} s)", flush=True)
            ours = run_backupd(config, simulator)
            theirs = None
            if not args.skip_naive:
                waited = settle(folder / "naive-repo")
                print(f"{label}: naive baseline ... (settled {waited:.0f} s)", flush=True)
                theirs = run_naive(folder, simulator, workspaces)
                naive_results[label] = theirs
            rows.append((label, ours, theirs))
    finally:
        simulator.stop()
        print_table(scale, rows)
        if not args.keep:
            print(f"removing {folder} ...", flush=True)
            shutil.rmtree(folder, ignore_errors=True)


def print_table(scale: Scale, rows: list[tuple[str, Measurement, Measurement | None]]) -> None:
    print()
    print(
        f"size: {scale.workspaces} workspaces x {scale.jobs} jobs; latency {scale.latency}s, "
        f"{scale.export_cost_per_job}s/job exported, {scale.export_rate} exports/s, "
        f"{scale.list_rate} list calls/s, concurrency {scale.concurrency}"
    )
    header = (
        f"{'scenario':26} {'backupd s':>10} {'floor s':>8} {'x floor':>8} {'naive s':>8} "
        f"{'naive/us':>9} {'RSS MB':>7} {'exports':>8} {'lists':>6} {'429s':>5} {'commits':>7}"
    )
    print(header)
    print("-" * len(header))
    for label, ours, theirs in rows:
        floor = api_floor(scale, ours.export_calls, ours.list_calls)
        naive = f"{theirs.seconds:8.1f}" if theirs else f"{'-':>8}"
        ratio = f"{theirs.seconds / ours.seconds:9.1f}" if theirs else f"{'-':>9}"
        print(
            f"{label:26} {ours.seconds:10.1f} {floor:8.1f} {ours.seconds / floor:8.2f} "
            f"{naive} {ratio} "
            f"{ours.peak_rss_mb:7.1f} {ours.export_calls:8d} {ours.list_calls:6d} "
            f"{ours.throttled:5d} {ours.commits:7d}"
        )


if __name__ == "__main__":
    main()
