"""`backupd demo`: the whole cycle against the built-in simulator, in one folder.

Starts the simulator, writes a real config file, snapshots two workspaces, changes a few jobs,
a shared script and a resource, snapshots again and prints the resulting git history.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from backupd import proc
from backupd.commands.snapshot import run_snapshots
from backupd.config import load_config
from backupd.errors import (
    EXIT_OK,
    UserError,
)
from backupd.model import SnapshotResult
from backupd.simulator.gateway import DEFAULT_AK, DEFAULT_SK
from backupd.simulator.server import DEFAULT_PROJECT_ID, Simulator

WORKSPACES = {
    "sales": "5ea1e5000000000000000000000000a1",
    "finance": "f1a0ce000000000000000000000000b2",
}

CONFIG_TEMPLATE = """\
# Written by `backupd demo`: a complete backupd config pointing at the local simulator.
repository:
  path: repo
sources:
  - name: demo
    endpoint: {endpoint}
    project_id: {project_id}
    auth:
      type: aksk
      ak: {ak}
      sk_file: secret-key
    workspaces:
      - id: {sales}
        name: sales
      - id: {finance}
        name: finance
"""


def _say(text: str) -> None:
    print(text, flush=True)  # noqa: T201 - the demo talks to the person who ran it


def _report(results: list[SnapshotResult]) -> None:
    for result in results:
        if not result.ok:
            raise UserError(f"demo snapshot of {result.target.label} failed: {result.error}")
        commit = result.commit[:10] if result.commit else "no commit (nothing changed)"
        _say(
            f"  {result.target.label}: {result.jobs} jobs, {result.scripts} scripts, "
            f"{result.resources} resources -> {commit}"
        )


def run_demo(directory: Path) -> None:
    if directory.exists() and any(directory.iterdir()):
        raise UserError(f"{directory} is not empty; give the demo an empty or new folder")
    directory.mkdir(parents=True, exist_ok=True)
    with Simulator() as simulator:
        for name, workspace_id in WORKSPACES.items():
            simulator.add_workspace(workspace_id, name)
            simulator.populate(workspace_id, 30, resources=3)
        # The simulator checks AK/SK signatures like the real gateway; the SK stays in a 0600
        # file, never in the config.
        sk_file = directory / "secret-key"
        sk_file.touch(mode=0o600)
        sk_file.write_text(DEFAULT_SK + "\n", encoding="utf-8")
        config_file = directory / "config.yaml"
        config_file.write_text(
            CONFIG_TEMPLATE.format(
                endpoint=simulator.url,
                project_id=DEFAULT_PROJECT_ID,
                ak=DEFAULT_AK,
                sales=WORKSPACES["sales"],
                finance=WORKSPACES["finance"],
            ),
            encoding="utf-8",
        )
        config = load_config(config_file)
        _say(f"Simulator at {simulator.url}; config in {config_file}")
        _say("First snapshot:")
        _report(run_snapshots(config))

        sales = WORKSPACES["sales"]
        jobs = sorted(simulator.jobs(sales))
        simulator.modify_job(sales, jobs[0], user="li.wei")
        simulator.modify_job(sales, jobs[1], user="li.wei")
        simulator.delete_job(sales, jobs[2])
        simulator.add_job(sales, "新作业_demo", scripts=[], user="zhang.min")
        shared = next(
            (s for s in simulator.scripts(sales) if len(_users_of(simulator, sales, s)) > 1),
            None,
        )
        if shared is not None:
            script_type = simulator.scripts(sales)[shared]["type"]
            simulator.set_script(
                sales, shared, "-- edited by the demo\nSELECT 1;\n", script_type=script_type
            )
        resource = sorted(simulator.resources(sales))[0]
        simulator.modify_resource(sales, resource)  # points at a new version of its jar/file
        _say(
            f"Changed in 'sales': 2 jobs edited, 1 deleted, 1 added, resource {resource!r} edited"
            + (f", shared script {shared!r} edited" if shared else "")
        )
        _say("Second snapshot:")
        _report(run_snapshots(config))
        _say("Third snapshot, nothing changed:")
        _report(run_snapshots(config))

    repo = directory / "repo"
    _say(f"\nHistory of {repo} (git log --stat):\n")
    sys.stdout.flush()
    shown = proc.run(["git", "-C", str(repo), "--no-pager", "log", "--stat=100"])
    sys.stdout.write(shown.stdout.decode("utf-8", "replace"))
    _say(f"\nTry: git -C {repo} log -p -- demo/sales/jobs")


def _users_of(simulator: Simulator, workspace_id: str, script: str) -> list[str]:
    return [
        job
        for job in simulator.jobs(workspace_id)
        if script in simulator.job_scripts(workspace_id, job)
    ]


def cmd_demo(args: argparse.Namespace) -> int:
    from backupd.commands.demo import run_demo

    run_demo(args.directory)
    return EXIT_OK
