"""Test helpers: config files that point at the simulator, expected trees, git queries."""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal
from unittest import mock

import yaml

from backupd.cli import main
from backupd.config import Config
from backupd.dataarts.source import JobSource
from backupd.model import SnapshotResult
from backupd.simulator.server import (
    DEFAULT_AK,
    DEFAULT_IAM_DOMAIN,
    DEFAULT_IAM_PASSWORD,
    DEFAULT_IAM_USER,
    DEFAULT_PROJECT_ID,
    DEFAULT_SK,
    DEFAULT_TOKEN,
    Simulator,
)
from backupd.snapshot.run import select_sources, snapshot_sources
from backupd.store.gitrepo import GitRepo, Identity
from backupd.store.normalise import canonical_json, script_view
from backupd.wiring import ClientFactory, make_client, snapshot_options


class VirtualClock:
    """Time that also passes when anyone sleeps on it, at once: a client paced by it and a
    simulator throttling by it (``Simulator(rate_clock=...)``) agree on every one-second
    window, and rate waits, backoffs and Retry-After cost no real time. Real time is part
    of it, so measured call durations stay true."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slept = 0.0

    def monotonic(self) -> float:
        with self._lock:
            return time.monotonic() + self._slept

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self._slept += max(0.0, seconds)
        time.sleep(0)  # let the others run

    @property
    def slept(self) -> float:
        """Seconds slept so far, by every thread together."""
        with self._lock:
            return self._slept

    def client_factory(self) -> ClientFactory:
        """``make_client`` paced by this clock."""
        return functools.partial(make_client, clock=self.monotonic, sleep=self.sleep)


def workspace_id(number: int) -> str:
    return f"{number:032x}"


AuthKind = Literal["aksk", "password", "token"]


def secret_file(path: Path, value: str) -> Path:
    """A file only its owner can read, holding ``value``."""
    path.touch(mode=0o600)
    path.write_text(value + "\n")
    return path


def auth_config(tmp_path: Path, simulator: Simulator, kind: AuthKind = "aksk") -> dict[str, Any]:
    """The ``auth`` mapping for the simulator's default credentials, secrets in 0600 files."""
    if kind == "aksk":
        sk_file = secret_file(tmp_path / "secret-key", DEFAULT_SK)
        return {"type": "aksk", "ak": DEFAULT_AK, "sk_file": str(sk_file)}
    if kind == "password":
        password_file = secret_file(tmp_path / "password", DEFAULT_IAM_PASSWORD)
        return {
            "type": "password",
            "user": DEFAULT_IAM_USER,
            "domain": DEFAULT_IAM_DOMAIN,
            "password_file": str(password_file),
            "iam_endpoint": simulator.url,
        }
    token_file = secret_file(tmp_path / "token", DEFAULT_TOKEN)
    return {"type": "token", "token_file": str(token_file)}


# Every API's budget far above what a local simulator needs.
FAST_RATES = dict.fromkeys(
    (
        "jobs_list",
        "scripts_list",
        "resources_list",
        "export",
        "job_detail",
        "restore",
        "management",
    ),
    1000,
)


def make_config(
    tmp_path: Path,
    simulator: Simulator,
    workspaces: dict[str, str],
    *,
    source: str = "prod",
    auth: AuthKind | dict[str, Any] = "aksk",
    extra_source: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write a config file for ``workspaces`` (folder name → id) and return its path.

    ``auth``: the simulator's default AK/SK (signed requests, as in production), IAM password
    or fixed token, or a complete ``auth`` mapping.
    """
    auth_mapping = auth if isinstance(auth, dict) else auth_config(tmp_path, simulator, auth)
    data: dict[str, Any] = {
        "repository": {"path": str(tmp_path / "repo")},
        "staging_dir": str(tmp_path / "staging"),
        "sources": [
            {
                "name": source,
                "endpoint": simulator.url,
                "project_id": DEFAULT_PROJECT_ID,
                "auth": auth_mapping,
                "workspaces": [{"id": wid, "name": name} for name, wid in workspaces.items()],
                # The simulator is local: no need to be polite, and tests stay fast.
                "rates": FAST_RATES,
                **(extra_source or {}),
            }
        ],
        **(extra or {}),
    }
    path = tmp_path / "config.yaml"
    path.touch(mode=0o600)
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def expected_tree(simulator: Simulator, wid: str) -> dict[str, bytes]:
    """What the workspace folder must hold, derived independently from the simulator's state.

    Job files and the scripts they use are canonical JSON of the simulator's definitions;
    views hold the script body; standalone scripts mirror the script list, resources the
    resource list.
    """
    jobs = simulator.jobs(wid)
    scripts = simulator.scripts(wid)
    tree: dict[str, bytes] = {}

    def add_script(folder: str, name: str) -> None:
        tree[f"{folder}/{name}.script"] = canonical_json(scripts[name])
        view = script_view(scripts[name])
        if view is not None:
            tree[f"{folder}/{name}{view[0]}"] = view[1]

    for job, definition in jobs.items():
        tree[f"jobs/{job}/{job}.job"] = canonical_json(definition)
        for script in simulator.job_scripts(wid, job):
            if script in scripts:  # a deleted script is not exported with its job
                add_script(f"jobs/{job}", script)
    for script in scripts:
        add_script("scripts", script)
    for name, resource in simulator.resources(wid).items():
        tree[f"resources/{name}.resource"] = canonical_json(resource)
    return tree


def discover_all(simulator: Simulator, **options: Any) -> dict[str, Any]:
    """``extra_source`` for make_config: 'workspaces: all' against the simulator."""
    return {"workspaces": "all", "management_endpoint": simulator.url, **options}


def read_tree(folder: Path) -> dict[str, bytes]:
    """Every file under folder except backupd's own metadata."""
    tree: dict[str, bytes] = {}
    for top, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d != ".backupd"]
        prefix = os.path.relpath(top, folder).replace(os.sep, "/")
        for name in files:
            relative = name if prefix == "." else f"{prefix}/{name}"
            with open(f"{top}/{name}", "rb") as file:
                tree[relative] = file.read()
    return dict(sorted(tree.items()))


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], check=True, capture_output=True, text=True
    ).stdout


def commit_count(repo: Path) -> int:
    return int(git(repo, "rev-list", "--count", "HEAD").strip())


def backupd_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run the installed command line as a subprocess (``python -m backupd``)."""
    return subprocess.run(
        [sys.executable, "-m", "backupd", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# What systemd or the developer's shell may have set that would change the command's output.
_ENVIRONMENT_CHOICES = (
    "NOTIFY_SOCKET",
    "JOURNAL_STREAM",
    "BACKUPD_CONFIG",
    "BACKUPD_LOG_LEVEL",
    "BACKUPD_LOG_FORMAT",
)


def backupd_in_process(*args: str) -> subprocess.CompletedProcess[str]:
    """The command line called in this process (``backupd.cli.main``), its stdout and stderr
    captured: for checks of what it says and its exit code, without a process's start. The
    real process is proven by the tests that run it (``backupd_cli``)."""
    out, err = io.StringIO(), io.StringIO()
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    scrubbed = {name: "" for name in _ENVIRONMENT_CHOICES}
    try:
        with (
            mock.patch.dict(os.environ, scrubbed),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
        ):
            for name in _ENVIRONMENT_CHOICES:
                del os.environ[name]
            try:
                code = main(list(args))
            except SystemExit as exit:  # argparse: usage errors and --help
                code = exit.code if isinstance(exit.code, int) else 1
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    return subprocess.CompletedProcess(["backupd", *args], code, out.getvalue(), err.getvalue())


SNAPSHOT_IDENTITY = Identity("backupd", "backupd@localhost")


def snapshot_from(
    config: Config, source: JobSource, identity: Identity = SNAPSHOT_IDENTITY
) -> list[SnapshotResult]:
    """Every configured workspace snapshotted once, in this process, from ``source`` (the
    in-memory fake or an HTTP client) instead of the client the config would make."""
    with GitRepo.open(config.repository.path, branch=config.repository.branch) as repo:
        repo.prepare(identity)
        return snapshot_sources(
            config,
            repo,
            select_sources(config),
            identity,
            clients=lambda _: contextlib.nullcontext(source),
            options_for=functools.partial(snapshot_options, config, allow_mass_delete=False),
        )


def until(condition: Callable[[], bool], what: str) -> None:
    """Wait until ``condition()`` holds: threads a test started got where it needs them (a
    state to reach, not a time to wait; the bound only ends a test that is broken)."""
    pause = threading.Event()
    for _ in range(30_000):
        if condition():
            return
        pause.wait(0.001)
    raise AssertionError(f"never happened: {what}")
