"""`backupd restore`: choose the workspace and mode, run it, and print what happened.

Modes: ``--list`` (restore points), ``--dry-run`` (the plan, compared with the live workspace
unless ``--offline``), ``--out FILE`` (write the zip) and ``--import`` (into DataArts; may be
combined with ``--out``). Only ``--import`` and the comparison of ``--dry-run`` use the API.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from backupd.commands.scope import KnownWorkspace, choose
from backupd.config import Config, SourceConfig, load_config
from backupd.errors import (
    UsageError,
)
from backupd.restore.plan import (
    DEFAULT_MAX_IMPORT_BYTES,
    RestorePlan,
    format_time,
    list_points,
    plan_restore,
    write_atomically,
)
from backupd.store.gitrepo import GitRepo
from backupd.store.summary import shown

if TYPE_CHECKING:
    from backupd.restore.importer import PartResult


class Output:
    """Results on stdout, warnings on stderr (so ``--list > file`` stays clean)."""

    def __init__(self, out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.out = out or sys.stdout  # looked up now, not at import (tests swap them)
        self.err = err or sys.stderr

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def warn(self, text: str) -> None:
        self.err.write(f"backupd: warning: {text}\n")
        self.err.flush()


def check_arguments(args: argparse.Namespace) -> None:
    """Reject combinations that make no sense, before anything is read (exit code 2)."""
    if args.list:
        if args.out or args.import_zip or args.dry_run or args.job or args.at:
            raise UsageError("--list takes only --source and --workspace")
        return
    if args.dry_run and (args.out or args.import_zip):
        raise UsageError("--dry-run writes and imports nothing: drop --out/--import")
    if not (args.dry_run or args.out or args.import_zip):
        raise UsageError("say what to do: --out FILE, --import, --dry-run or --list")
    if args.offline and not args.dry_run:
        raise UsageError("--offline goes with --dry-run")
    if args.overwrite and not args.import_zip:
        raise UsageError("--overwrite goes with --import")
    if (args.target_status or args.approver) and not args.import_zip:
        raise UsageError("--target-status and --approver go with --import")
    if any(not name.strip() for name in args.approver):
        raise UsageError("--approver needs a user name")
    if args.with_dependents and not args.job:
        raise UsageError("--with-dependents needs --job (without it every job is restored)")


def run_restore(args: argparse.Namespace, output: Output | None = None) -> int:
    output = output or Output()
    check_arguments(args)
    config = load_config(args.config)
    targets = choose(config, args.source, args.workspace)
    with GitRepo.open_existing(config.repository.path, branch=config.repository.branch) as repo:
        if args.list:
            for known in targets:
                print_points(repo, known.label, output)
            return 0
        if len(targets) > 1:
            names = ", ".join(w.label for w in targets)
            raise UsageError(f"choose one workspace with --source/--workspace ({names})")
        workspace = targets[0]
        source = next(s for s in config.sources if s.name == workspace.source)
        plan = plan_restore(
            repo,
            workspace.label,
            at=args.at,
            jobs=args.job,
            with_dependents=args.with_dependents,
            all_scripts=args.all_scripts,
        )
    describe_plan(plan, output, verbose=args.dry_run)
    if args.dry_run:
        if args.offline:
            return 0
        return compare(config, source, workspace, plan, output)
    if args.out:
        data = plan.zip()
        write_atomically(args.out, data)
        output.say(f"wrote {args.out} ({len(data)} bytes)")
        if plan.size > DEFAULT_MAX_IMPORT_BYTES:
            output.warn(
                f"{plan.size} bytes uncompressed: more than the 10 MB DataArts imports at once; "
                "restore fewer jobs (--job) or use --import, which imports in parts"
            )
    if args.import_zip:
        return import_into(
            config,
            source,
            workspace,
            plan,
            output,
            overwrite=args.overwrite,
            target_status=args.target_status,
            approvers=tuple(args.approver),
        )
    return 0


def print_points(repo: GitRepo, folder: str, output: Output) -> None:
    points = list_points(repo, folder)
    if not points:
        output.say(f"{folder}: no snapshots")
        return
    output.say(f"{folder}: {len(points)} restore points (newest first, times UTC)")
    for point in points:
        tags = f"  [{', '.join(point.tags)}]" if point.tags else ""
        output.say(
            f"  {format_time(point.commit.time)}  {point.commit.sha[:10]}  {point.changes}{tags}"
        )


def _names(names: Sequence[str], limit: int | None) -> str:
    if not names:
        return "none"
    listed = [shown(name) for name in (names if limit is None else names[:limit])]
    more = len(names) - len(listed)
    return ", ".join(listed) + (f", … and {more} more" if more > 0 else "")


def describe_plan(plan: RestorePlan, output: Output, *, verbose: bool) -> None:
    limit = None if verbose else 10
    output.say(f"restore of {plan.folder} at {plan.point.describe()}")
    output.say(f"  jobs ({len(plan.jobs)}): {_names(plan.jobs, limit)}")
    if plan.dependents:
        output.say(
            f"    of which dependents ({len(plan.dependents)}): {_names(plan.dependents, limit)}"
        )
    output.say(
        f"  scripts the jobs use ({len(plan.job_scripts)}): {_names(plan.job_scripts, limit)}"
    )
    if plan.scripts:
        output.say(f"  other scripts ({len(plan.scripts)}): {_names(plan.scripts, limit)}")
    output.say(f"  zip entries: {len(plan.entries)}, {plan.size} bytes uncompressed")


def compare(
    config: Config,
    source: SourceConfig,
    workspace: KnownWorkspace,
    plan: RestorePlan,
    output: Output,
) -> int:
    from backupd.restore.compare import compare_with_live
    from backupd.wiring import make_client, snapshot_options

    options = snapshot_options(config, source, allow_mass_delete=False)
    with make_client(source) as client:
        diffs = compare_with_live(
            client,
            workspace.id,
            plan,
            batch_size=options.batch_size,
            export_depend=options.export_depend,
            limits=options.archive_limits,
            max_archive_bytes=options.max_archive_bytes,
            staging_root=options.staging_root,
        )
    output.say("compared with the live workspace now:")
    for diff in diffs:
        detail = f"  ({', '.join(shown(f) for f in diff.files)})" if diff.files else ""
        kind = "" if diff.kind == "job" else "script "
        output.say(f"  {diff.status:<9}  {kind}{shown(diff.name)}{detail}")
    totals = []
    for kind in ("job", "script"):
        statuses = [d.status for d in diffs if d.kind == kind]
        if statuses:
            counts = ", ".join(f"{statuses.count(s)} {s}" for s in ("new", "changed", "identical"))
            totals.append(f"{kind}s: {counts}")
    output.say(f"  => {'; '.join(totals)}")
    return 0


def import_into(
    config: Config,
    source: SourceConfig,
    workspace: KnownWorkspace,
    plan: RestorePlan,
    output: Output,
    *,
    overwrite: bool,
    target_status: str | None = None,
    approvers: tuple[str, ...] = (),
) -> int:
    from backupd.dataarts.obs import ObsClient
    from backupd.restore.importer import ImportOptions, import_plan, obs_credentials
    from backupd.wiring import make_client

    restore = source.restore
    if not restore.obs_bucket:
        raise UsageError(
            f"--import needs sources[{source.name}].restore.obs_bucket: DataArts imports "
            "only from OBS"
        )
    credentials = obs_credentials(source)
    if overwrite:
        output.warn(
            "--overwrite replaces jobs and scripts of the same name; DataArts overwrites only "
            "stopped jobs (stop their schedules first) and submits a new version of each"
        )
    options = ImportOptions(
        bucket=restore.obs_bucket,
        prefix=restore.obs_prefix,
        overwrite=overwrite,
        timeout=restore.import_timeout,
        max_bytes=restore.max_import_bytes,
        target_status=target_status or restore.target_status,
        approvers=approvers or restore.approvers,
    )
    with (
        make_client(source) as client,
        ObsClient(source.obs_endpoint, credentials, timeout=source.timeout) as obs,
    ):
        results = import_plan(client, obs, workspace.id, plan, options, say=output.say)
    ok = True
    for result in results:
        output.say(f"import from {result.obs_path}: {result.status} (task {result.task_id})")
        if result.message:
            output.say(f"  {result.message}")
        for job in result.jobs:
            note = f"  {job.message}" if job.message else ""
            output.say(f"  {job.status:<10}  {job.action:<19}  {shown(job.name)}{note}")
        for other in result.other_subtasks:
            output.say(f"  subtask {other}")
        output.say(f"  scripts sent: {result.scripts}")
        ok = ok and result.ok
    parts = len(results)
    jobs = sum(len(r.jobs) for r in results)
    if not ok or jobs < len(plan.jobs):
        warn_unsuccessful(plan, results, output)
        output.warn(f"import did not fully succeed ({jobs} jobs in {parts} part(s) reported)")
        return 1
    output.say(f"imported {jobs} jobs into {plan.folder} in {parts} part(s)")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    return run_restore(args)


def warn_unsuccessful(plan: RestorePlan, results: Sequence[PartResult], output: Output) -> None:
    """Name the jobs whose import failed, is not known, or was not tried (on stderr)."""
    outcomes = [job for result in results for job in result.jobs]
    failed = [job.name for job in outcomes if job.status == "FAILED"]
    unknown = [f"{job.name} ({job.status})" for job in outcomes if not job.known]
    reported = {job.name for job in outcomes}
    not_tried = [name for name in plan.jobs if name not in reported]
    for result in results:
        if result.status != "SUCCESSFUL":
            message = f": {result.message}" if result.message else ""
            output.warn(f"import task {result.task_id} ended {result.status}{message}")
    if failed:
        output.warn(f"{len(failed)} job(s) failed to import: {_names(failed, 20)}")
    if unknown:
        output.warn(
            f"{len(unknown)} job(s) with no known import status (no subtask of the task names "
            f"them, or it gives no final status): {_names(unknown, 20)}; check them in the "
            "DataArts console"
        )
    if not_tried:
        output.warn(
            f"{len(not_tried)} job(s) not imported (the parts after a failed one are not "
            f"sent): {_names(not_tried, 20)}"
        )
