"""Benchmark: backupd against the API floor (and, on request, a naive baseline); not a test.

    python bench/run.py                              # realistic, 10 workspaces x 1,000 jobs
    python bench/run.py --workspaces 20 --jobs 2000  # realistic, larger
    python bench/run.py --workspaces 20 --jobs 8000  # 4x the jobs, for the memory check
    python bench/run.py --export-seconds 2           # every 100-job export takes 2 s
    python bench/run.py --server-share 0.5           # the service allows half the rates
    python bench/run.py --profile legacy             # the earlier setting (below)
    python bench/run.py --workspaces 2 --jobs 300    # a quick look
    python bench/run.py --dir /dev/shm               # the repository in memory: no disk

Profiles (what the service does; backupd runs with its default config unless ``--set``):

* ``realistic`` (default): 100-row pages, 50 ms per request, 5 ms per exported job (a
  100-job export takes 0.55 s), and every API limited on its own, per user, as the service
  documents (dlf-api.md §7.1): jobs list 30/s, scripts list 30/s, resources list 10/s,
  export 10/s, job detail 10/s, management lists 10/s; above it the gateway answers 429
  APIGW.0308 with Retry-After.
* ``legacy``: the setting of earlier rounds: 1000-row pages, 2 ms per exported job, one
  limit of 40 calls/s for all calls plus 10/s for exports, and backupd configured with
  requests_per_second 30, exports_per_second 10, max_concurrent_requests 4, max_parallel 4.

The simulator runs in a process of its own (bench/sim_process.py). Measured in one run:

  (a) first full snapshot   (b) snapshot with no change   (c) snapshot after 1% of jobs changed

each as a separate `backupd snapshot` subprocess (peak RSS from /proc VmHWM).

(a) creates every file of every job (52,000 files at 10 x 1,000), so where the disk is slow
it is bound by the disk, not the API: on an ext4 mounted with online discard, the files of a
run removed a minute before made it up to 2x slower. ``--dir /dev/shm`` keeps the
repository in memory, to measure backupd without the disk.

The floor (realistic) is what the API's limits allow: for each API, the fewest calls the
scenario needs (pages of each listing, batches of 100 jobs to export) at the rate the service
allows, plus the duration of one of its calls; the slowest API sets the floor. Listing and
exporting are counted separately, as the service counts them. (legacy: the earlier formula,
``legacy_floor``.)

The path floor adds what follows from the order of the calls: which jobs of a workspace
changed is known once it is listed, so when every workspace exports something, the one
listed last exports after the job list's floor: the path floor is that floor plus one
export call of that workspace's (smallest) batch. It matters where an export call is long
next to the listing (``--export-seconds 2``, scenario (c): 3.7 s of listing, then a 1.5 s
export call).
"""

from __future__ import annotations

import argparse
import compileall
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

import yaml

from backupd.simulator.gateway import DEFAULT_TOKEN
from backupd.simulator.server import DEFAULT_PROJECT_ID

HERE = Path(__file__).resolve().parent

# The per-user limits of dlf-api.md §7.1, by the simulator's API names.
DOCUMENTED_LIMITS = {
    "jobs_list": 30.0,
    "job_detail": 10.0,
    "export": 10.0,
    "scripts_list": 30.0,
    "script_detail": 30.0,
    "resources_list": 10.0,
    "resource_detail": 30.0,
    "check_file": 10.0,
    "import": 10.0,
    "system_task": 10.0,
    "instances_list": 10.0,
    "workspaces_list": 10.0,
}
LIST_APIS = ("jobs_list", "scripts_list", "resources_list")
SCRIPT_PAGE = 100  # the script and resource lists return at most 100 rows a page
EXPORT_BATCH = 100


@dataclass(frozen=True)
class Profile:
    name: str
    page_size: int  # the largest page the service returns (and backupd's page_size)
    latency: float  # seconds per request
    export_cost_per_job: float  # further seconds per exported job
    export_latency: float = 0.0  # further seconds per export call
    per_api: dict[str, float] = field(default_factory=dict)  # the service's own limits
    throttle_rps: float = 0.0  # legacy: one limit for all calls
    export_throttle_rps: float = 0.0  # legacy: exports on their own
    source: dict[str, Any] = field(default_factory=dict)  # backupd's config (source keys)
    daemon: dict[str, Any] = field(default_factory=dict)

    def export_seconds(self, jobs: int = EXPORT_BATCH) -> float:
        return self.latency + self.export_latency + self.export_cost_per_job * jobs


PROFILES = {
    "realistic": Profile(
        "realistic",
        page_size=100,
        latency=0.05,
        export_cost_per_job=0.005,
        per_api=dict(DOCUMENTED_LIMITS),
    ),
    "legacy": Profile(
        "legacy",
        page_size=1000,
        latency=0.05,
        export_cost_per_job=0.002,
        throttle_rps=40.0,
        export_throttle_rps=10.0,
        source={
            "page_size": 1000,
            "requests_per_second": 30,
            "exports_per_second": 10,
            "max_concurrent_requests": 4,
        },
        daemon={"max_parallel": 4},
    ),
}


@dataclass(frozen=True)
class Measurement:
    seconds: float
    peak_rss_mb: float
    apis: dict[str, dict[str, int]]  # API -> {"ok", "throttled", "other"}: what was served
    in_flight: dict[str, int]  # API -> most calls the service was answering at once
    commits: int
    exit_code: int
    cpu: float = 0.0  # user + system seconds of the process and the children it waited for

    def calls(self, api: str) -> int:
        return self.apis.get(api, {}).get("ok", 0)

    @property
    def list_calls(self) -> int:
        return sum(self.calls(api) for api in self.apis if api != "export")

    @property
    def total_calls(self) -> int:
        return sum(sum(entry.values()) for entry in self.apis.values())

    @property
    def throttled(self) -> int:
        return sum(entry["throttled"] for entry in self.apis.values())


def minimal_calls(
    profile: Profile, sizes: dict[str, dict[str, int]], exported: dict[str, int]
) -> dict[str, int]:
    """The fewest calls of each API a snapshot needs: every page of each listing (a listing
    takes at least one call) and one export per 100 jobs to export."""
    calls = dict.fromkeys((*LIST_APIS, "export"), 0)
    script_page = min(SCRIPT_PAGE, profile.page_size)
    for workspace, size in sizes.items():
        for job_type in ("BATCH", "REAL_TIME"):
            calls["jobs_list"] += max(1, math.ceil(size[job_type] / profile.page_size))
        calls["scripts_list"] += max(1, math.ceil(size["scripts"] / script_page))
        calls["resources_list"] += max(1, math.ceil(size["resources"] / script_page))
        calls["export"] += math.ceil(exported.get(workspace, 0) / EXPORT_BATCH)
    return calls


def api_floor(
    profile: Profile,
    limits: dict[str, float],
    sizes: dict[str, dict[str, int]],
    exported: dict[str, int],
) -> tuple[float, str]:
    """(seconds, the API that sets them): per API, its fewest calls at its allowed rate plus
    the duration of one call; the slowest API bounds the snapshot."""
    calls = minimal_calls(profile, sizes, exported)
    batch = min(EXPORT_BATCH, max(exported.values(), default=0)) or EXPORT_BATCH
    bounds = {
        api: count / limits[api]
        + (profile.export_seconds(batch) if api == "export" else profile.latency)
        for api, count in calls.items()
        if count
    }
    api = max(bounds, key=lambda name: bounds[name])
    return bounds[api], api


def path_floor(
    profile: Profile,
    limits: dict[str, float],
    sizes: dict[str, dict[str, int]],
    exported: dict[str, int],
) -> float:
    """The job list's floor, then one export call of the workspace listed last, when every
    workspace exports something (0 otherwise: the one that exports nothing may be last)."""
    if not sizes or any(exported.get(workspace, 0) == 0 for workspace in sizes):
        return 0.0
    calls = minimal_calls(profile, sizes, exported)
    listing = calls["jobs_list"] / limits["jobs_list"] + profile.latency
    batch = min(min(EXPORT_BATCH, count) for count in exported.values())
    return listing + profile.export_seconds(batch)


def legacy_floor(profile: Profile, concurrency: int, measured: Measurement) -> float:
    """The earlier formula: the calls made at the allowed rates (listing 30/s, export 10/s)
    and ``concurrency`` connections, plus one latency."""
    export_calls, list_calls = measured.calls("export"), measured.list_calls
    rate_bound = max(export_calls / 10.0, list_calls / 30.0)
    busy = export_calls * profile.export_seconds() + list_calls * profile.latency
    return max(rate_bound, busy / concurrency) + profile.latency


class SimulatorProcess:
    """bench/sim_process.py, spoken to over its stdin and stdout."""

    def __init__(self, page_size: int) -> None:
        self._process = subprocess.Popen(
            [sys.executable, str(HERE / "sim_process.py"), str(page_size)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.url: str = self._read()["url"]

    def _read(self) -> Any:
        line = self._pipes()[1].readline()
        if not line:
            raise SystemExit("the simulator process ended")
        return json.loads(line)

    def _pipes(self) -> tuple[IO[str], IO[str]]:
        stdin, stdout = self._process.stdin, self._process.stdout
        if stdin is None or stdout is None:
            raise SystemExit("no pipes to the simulator process")
        return stdin, stdout

    def ask(self, op: str, **arguments: Any) -> Any:
        stdin = self._pipes()[0]
        stdin.write(json.dumps({"op": op, **arguments}) + "\n")
        stdin.flush()
        return self._read()

    def stop(self) -> None:
        if self._process.poll() is None:
            stdin = self._pipes()[0]
            stdin.write(json.dumps({"op": "stop"}) + "\n")
            stdin.close()
            self._process.wait(30)


def peak_rss_of(command: list[str], env: dict[str, str]) -> tuple[float, float, int, float]:
    """(seconds, peak RSS in MB, exit code, CPU seconds) of a subprocess, polling /proc
    VmHWM. The CPU is user + system time of it and its children (git), which the machine's
    other load does not inflate the way it does wall time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
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
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    if process.returncode != 0:
        sys.stderr.write(stderr.decode("utf-8", "replace")[-3000:])
    return seconds, peak / 1024, process.returncode, cpu


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
    # The disk busy still (a removed run's files, another tenant of the VM): the first full
    # snapshot, bound by creating files, measured up to 1.8x slower while it was.
    while io_pressure() > 1.0 and time.perf_counter() - started < 120:
        time.sleep(1)
    return time.perf_counter() - started


def io_pressure() -> float:
    """The share of the last 10 s some task waited for IO (Linux PSI, percent; 0 where
    the kernel does not tell)."""
    try:
        first = Path("/proc/pressure/io").read_text().splitlines()[0]
    except (OSError, IndexError):
        return 0.0
    fields = dict(item.split("=", 1) for item in first.split()[1:])
    return float(fields.get("avg10", 0.0))


def write_config(
    folder: Path,
    url: str,
    workspaces: list[tuple[str, str]],
    profile: Profile,
    overrides: dict[str, Any],
) -> Path:
    token = folder / "token"
    token.write_text(DEFAULT_TOKEN)
    source: dict[str, Any] = {
        "name": "bench",
        "endpoint": url,
        "project_id": DEFAULT_PROJECT_ID,
        "auth": {"type": "token", "token_file": str(token)},
        "workspaces": [{"id": wid, "name": name} for wid, name in workspaces],
        **profile.source,
    }
    for key, value in overrides.items():  # --set rates.export=5: nested keys
        *parents, last = key.split(".")
        target = source
        for parent in parents:
            target = target.setdefault(parent, {})
        target[last] = value
    config: dict[str, Any] = {
        "repository": {"path": str(folder / "repo")},
        "staging_dir": str(folder / "staging"),
        "sources": [source],
    }
    if profile.daemon:
        config["daemon"] = dict(profile.daemon)
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def run_backupd(config: Path, simulator: SimulatorProcess) -> Measurement:
    simulator.ask("clear")
    before = commit_count(config.parent / "repo")
    env = {**os.environ, "BACKUPD_LOG_LEVEL": "warning"}
    seconds, rss, code, cpu = peak_rss_of(
        [sys.executable, "-m", "backupd", "snapshot", "-c", str(config)], env
    )
    counted = simulator.ask("count")
    commits = commit_count(config.parent / "repo") - before
    return Measurement(seconds, rss, counted["apis"], counted["in_flight"], commits, code, cpu)


# --- the naive baseline: what a quick script would do ----------------------------------------

NAIVE = r"""
import io, json, subprocess, sys, time, zipfile, shutil
from pathlib import Path
import httpx
url, project, token, repo, page = sys.argv[1:6]
workspaces = json.loads(sys.argv[6])
page = int(page)
repo = Path(repo)
if not (repo / ".git").exists():
    repo.mkdir(parents=True, exist_ok=True)
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
http = httpx.Client(base_url=f"{url}/v1/{project}", headers={"X-Auth-Token": token}, timeout=600)
def call(method, path, **kwargs):
    while True:  # throttled: wait as told, then again
        answer = http.request(method, path, **kwargs)
        if answer.status_code != 429:
            answer.raise_for_status()
            return answer
        time.sleep(float(answer.headers.get("Retry-After", "1")))
for wid, name in workspaces:
    h = {"workspace": wid}
    names = []
    for job_type in ("BATCH", "REAL_TIME"):
        offset = 0
        while True:
            query = {"jobType": job_type, "limit": page, "offset": offset}
            rows = call("GET", "/jobs", params=query, headers=h).json()["jobs"]
            names += [j["name"] for j in rows]
            if len(rows) < page:
                break
            offset += 1
    folder = repo / name
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir()
    for start in range(0, len(names), 100):
        body = {"jobList": names[start:start + 100], "exportDepend": True}
        data = call("POST", "/jobs/batch-export", json=body, headers=h).content
        zipfile.ZipFile(io.BytesIO(data)).extractall(folder)
env = {"GIT_AUTHOR_NAME": "n", "GIT_AUTHOR_EMAIL": "n@x", "PATH": "/usr/bin:/bin"}
env |= {"GIT_COMMITTER_NAME": "n", "GIT_COMMITTER_EMAIL": "n@x"}
subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
commit = ["git", "-C", str(repo), "commit", "-q", "-m", "snapshot", "--allow-empty"]
subprocess.run(commit, check=True, env=env)
"""


def run_naive(
    folder: Path, simulator: SimulatorProcess, workspaces: list[tuple[str, str]], page: int
) -> Measurement:
    simulator.ask("clear")
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
        str(page),
        json.dumps(workspaces),
    ]
    seconds, rss, code, cpu = peak_rss_of(command, dict(os.environ))
    counted = simulator.ask("count")
    commits = commit_count(folder / "naive-repo") - before
    return Measurement(seconds, rss, counted["apis"], counted["in_flight"], commits, code, cpu)


def parse_setting(text: str) -> tuple[str, Any]:
    key, _, value = text.partition("=")
    if not key or not _:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, yaml.safe_load(value)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", choices=sorted(PROFILES), default="realistic")
    parser.add_argument("--workspaces", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=1000, help="jobs per workspace")
    parser.add_argument(
        "--export-seconds",
        type=float,
        help="make a 100-job export call take this long (a longer server time per call)",
    )
    parser.add_argument(
        "--server-share",
        type=float,
        default=1.0,
        help="the service allows this share of its documented rates (0.5: half; realistic)",
    )
    parser.add_argument(
        "--layout",
        choices=("folders", "documented", "flat"),
        default="folders",
        help="the zip layout of the simulated exports",
    )
    parser.add_argument("--changed", type=float, default=0.01, help="fraction changed for (c)")
    parser.add_argument(
        "--set",
        dest="settings",
        type=parse_setting,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a source config key for backupd (YAML value; dots for nesting: rates.export=5)",
    )
    parser.add_argument("--naive", action="store_true", help="also time a naive script")
    parser.add_argument("--only", choices=("a", "ab"), help="stop after (a) or (b)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument(
        "--dir",
        type=Path,
        help="make the temporary folder (repository, staging) in DIR (default: the system's "
        "temp folder; /dev/shm takes the disk out of (a))",
    )
    args = parser.parse_args()
    profile = PROFILES[args.profile]
    if args.export_seconds is not None:
        extra = args.export_seconds - profile.export_seconds()
        profile = replace(profile, export_latency=max(0.0, extra))
    limits = {api: rate * args.server_share for api, rate in profile.per_api.items()}

    # As installing backupd does (pip writes the .pyc files): with PYTHONDONTWRITEBYTECODE
    # set, as in the test environment, every timed process compiled every module again.
    compileall.compile_dir(HERE.parent / "backupd", quiet=1)
    folder = Path(tempfile.mkdtemp(prefix="backupd-bench-", dir=args.dir))
    simulator = SimulatorProcess(profile.page_size)
    workspaces = [(f"{i + 1:032x}", f"ws{i + 1:02d}") for i in range(args.workspaces)]
    print(f"populating {args.workspaces} x {args.jobs} jobs ...", flush=True)
    sizes: dict[str, dict[str, int]] = simulator.ask(
        "populate", workspaces=workspaces, jobs=args.jobs
    )
    simulator.ask("options", options={"layout": args.layout})
    simulator.ask(
        "faults",
        faults={
            "latency": profile.latency,
            "export_latency": profile.export_latency,
            "export_cost_per_job": profile.export_cost_per_job,
            "throttle_per_api": limits,
            "throttle_rps": profile.throttle_rps * args.server_share,
            "export_throttle_rps": profile.export_throttle_rps * args.server_share,
        },
    )
    config = write_config(folder, simulator.url, workspaces, profile, dict(args.settings))
    rows: list[tuple[str, Measurement, Measurement | None, tuple[float, str, float]]] = []
    all_jobs = {wid: size["jobs"] for wid, size in sizes.items()}
    scenarios: list[tuple[str, float | None, dict[str, int] | None]] = [
        ("(a) first full snapshot", None, all_jobs),
        ("(b) no change", None, {}),
        (f"(c) {args.changed:.0%} of jobs changed", args.changed, None),
    ]
    if args.only:
        scenarios = scenarios[: len(args.only)]
    try:
        for label, fraction, exported in scenarios:
            if fraction is not None:
                exported = simulator.ask("mutate", fraction=fraction)
                print(f"changed {sum(exported.values())} jobs", flush=True)
            if exported is None:
                raise SystemExit("nothing to export in this scenario")
            waited = settle(folder / "repo")
            print(
                f"{label}: backupd ... (settled {waited:.0f} s, IO pressure {io_pressure():.1f} %)",
                flush=True,
            )
            ours = run_backupd(config, simulator)
            theirs = None
            if args.naive:
                waited = settle(folder / "naive-repo")
                print(f"{label}: naive baseline ... (settled {waited:.0f} s)", flush=True)
                theirs = run_naive(folder, simulator, workspaces, profile.page_size)
            if args.profile == "legacy":
                floor = (legacy_floor(profile, 4, ours), "rates", 0.0)
            else:
                floor = (
                    *api_floor(profile, limits, sizes, exported),
                    path_floor(profile, limits, sizes, exported),
                )
            rows.append((label, ours, theirs, floor))
            print(
                f"  {ours.seconds:.1f} s (CPU {ours.cpu:.1f} s), floor {floor[0]:.1f} s "
                f"({floor[1]}); load {os.getloadavg()[0]:.2f}",
                flush=True,
            )
    finally:
        simulator.stop()
        print_table(args, profile, limits, rows)
        if not args.keep:
            print(f"removing {folder} ...", flush=True)
            shutil.rmtree(folder, ignore_errors=True)


def print_table(
    args: argparse.Namespace,
    profile: Profile,
    limits: dict[str, float],
    rows: list[tuple[str, Measurement, Measurement | None, tuple[float, str, float]]],
) -> None:
    print()
    shown = [api for api in ("jobs_list", "scripts_list", "export") if api in limits]
    rates = ", ".join(f"{api} {limits[api]:g}/s" for api in shown)
    print(
        f"profile {profile.name}: {args.workspaces} workspaces x {args.jobs} jobs; "
        f"{profile.page_size}-row pages, latency {profile.latency}s, "
        f"export {profile.export_seconds():.2f}s per 100 jobs; layout {args.layout}"
        + (f"; service limits {rates}" if rates else "")
        + (f"; backupd config {dict(args.settings)}" if args.settings else "")
    )
    header = (
        f"{'scenario':24} {'s':>6} {'floor':>6} {'x':>5} {'by':>12} {'path':>5} {'x':>5} "
        f"{'CPU s':>6} {'RSS MB':>7} "
        f"{'exports':>7} {'jobs':>5} {'scripts':>7} {'res':>4} {'calls':>6} {'429s':>5} "
        f"{'429%':>5} {'commits':>7} {'in-flight':>9} {'exit':>4}"
    )
    if args.naive:
        header += f" {'naive s':>8}"
    print(header)
    print("-" * len(header))
    for label, ours, theirs, (floor, bound, path) in rows:
        share = 100 * ours.throttled / max(1, ours.total_calls)
        on_path = f"{'-':>5} {'-':>5}"  # the path floor is no higher than the floor
        if path > floor:
            on_path = f"{path:5.1f} {ours.seconds / path:5.2f}"
        line = (
            f"{label:24} {ours.seconds:6.1f} {floor:6.1f} {ours.seconds / floor:5.2f} "
            f"{bound:>12} {on_path} {ours.cpu:6.1f} {ours.peak_rss_mb:7.1f} "
            f"{ours.calls('export'):7d} "
            f"{ours.calls('jobs_list'):5d} {ours.calls('scripts_list'):7d} "
            f"{ours.calls('resources_list'):4d} {ours.total_calls:6d} {ours.throttled:5d} "
            f"{share:5.1f} {ours.commits:7d} {ours.in_flight.get('export', 0):9d} "
            f"{ours.exit_code:4d}"
        )
        if theirs is not None:
            line += f" {theirs.seconds:8.1f}"
        print(line)


if __name__ == "__main__":
    main()
