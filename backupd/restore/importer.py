"""Import a restore plan into DataArts Studio: OBS upload → check-file → import → poll.

DataArts imports only from OBS (dlf-api.md §5): each zip is uploaded, checked with
``jobs/check-file`` (does DataArts read the jobs we sent?), imported with ``jobs/import`` and
the asynchronous system task is polled to the end. A plan larger than the import limit
(10 MB) goes in parts, each a set of whole jobs with their scripts; the first failing part
stops the rest.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import Any

from backupd.config import SourceConfig
from backupd.credentials import read_secret
from backupd.dataarts.client import DataArtsClient
from backupd.dataarts.obs import ObsClient, ObsCredentials
from backupd.errors import ApiError, CredentialError, RestoreError
from backupd.restore.plan import RestorePlan, split_entries, zip_bytes

Say = Callable[[str], None]


def obs_credentials(source: SourceConfig) -> ObsCredentials:
    """OBS AK/SK: ``restore.obs_ak`` if set, else the source's own AK/SK auth."""
    key = f"sources[{source.name}]"
    restore = source.restore
    if restore.obs_ak is not None:
        sk = read_secret(
            key=f"{key}.restore.obs_sk",
            value=restore.obs_sk,
            file=restore.obs_sk_file,
            credential=restore.obs_sk_credential,
        )
        return ObsCredentials(restore.obs_ak, sk)
    auth = source.auth
    # Read through getattr: any auth section of type 'aksk' with ak and sk|sk_file|sk_credential
    # (and optionally security_token) serves, whatever else it holds.
    if getattr(auth, "type", None) == "aksk":
        sk = read_secret(
            key=f"{key}.auth.sk",
            value=getattr(auth, "sk", None),
            file=getattr(auth, "sk_file", None),
            credential=getattr(auth, "sk_credential", None),
        )
        token = getattr(auth, "security_token", None)
        return ObsCredentials(str(getattr(auth, "ak", "")), sk, token)
    raise CredentialError(
        f"{key}.restore: uploading to OBS needs an AK/SK; use auth type 'aksk' or set "
        "restore.obs_ak with obs_sk_file"
    )


@dataclass(frozen=True)
class ImportOptions:
    bucket: str
    prefix: str = "backupd-restore/"
    overwrite: bool = False
    timeout: float = 900.0
    max_bytes: int = 10 * 1024**2
    first_poll: float = 0.2  # seconds; doubles up to max_poll
    max_poll: float = 5.0


@dataclass(frozen=True)
class JobOutcome:
    name: str
    existed: bool  # a job of that name was in the workspace before the import
    status: str  # its subtask's: SUCCESSFUL | FAILED | …, or UNKNOWN when no subtask names it
    message: str = ""
    overwrite: bool = False

    @property
    def action(self) -> str:
        if not self.existed:
            return "created"
        return "overwritten" if self.overwrite else "kept (exists; SKIP)"


@dataclass(frozen=True)
class PartResult:
    obs_path: str
    task_id: str
    status: str  # the system task's final status
    message: str
    jobs: tuple[JobOutcome, ...]
    scripts: int
    other_subtasks: tuple[str, ...]  # subtasks that name none of our jobs, "name: status"

    @property
    def ok(self) -> bool:
        # The task's word is final; a job no subtask names (UNKNOWN) is reported, not failed.
        return self.status == "SUCCESSFUL" and not any(j.status == "FAILED" for j in self.jobs)


def object_key(prefix: str, plan: RestorePlan, now: datetime, part: int, parts: int) -> str:
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    suffix = f"-part{part}of{parts}" if parts > 1 else ""
    return f"{prefix}{plan.folder}/{stamp}-{plan.point.commit[:12]}{suffix}.zip"


def import_plan(
    client: DataArtsClient,
    obs: ObsClient,
    workspace_id: str,
    plan: RestorePlan,
    options: ImportOptions,
    *,
    say: Say = lambda _: None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> list[PartResult]:
    """Import every part of ``plan``; stops after the first part that does not succeed."""
    parts = split_entries(plan.entries, options.max_bytes)
    existing = {job.name for job in client.list_jobs(workspace_id)}
    started = now()
    results: list[PartResult] = []
    for number, entries in enumerate(parts, start=1):
        key = object_key(options.prefix, plan, started, number, len(parts))
        obs_path = obs.put_object(options.bucket, key, zip_bytes(entries, plan.point.time))
        say(f"uploaded {obs_path}")
        jobs = _jobs_of(entries)
        _check_file(client, workspace_id, obs_path, jobs)
        task_id = client.import_jobs(workspace_id, obs_path, overwrite=options.overwrite)
        say(f"import task {task_id} started ({len(jobs)} jobs)")
        task = wait_for_task(client, workspace_id, task_id, options, sleep=sleep, clock=clock)
        scripts = {PurePosixPath(p).stem for p in entries if p.endswith(".script")}
        result = _part_result(obs_path, task_id, task, jobs, existing, options.overwrite)
        result = dataclasses.replace(result, scripts=len(scripts))
        results.append(result)
        if not result.ok:
            break
    return results


def _jobs_of(entries: Mapping[str, bytes]) -> list[str]:
    names: list[str] = []
    for path in entries:
        parts = PurePosixPath(path).parts
        if parts[0] == "jobs" and path.endswith(".job"):
            names.append(parts[1] if len(parts) == 3 else PurePosixPath(parts[1]).stem)
    return names


def _check_file(
    client: DataArtsClient, workspace_id: str, obs_path: str, jobs: Sequence[str]
) -> None:
    """Refuse to import a file in which DataArts does not see exactly the jobs we sent."""
    try:
        report = client.check_file(workspace_id, obs_path)
    except ApiError as error:
        if error.status == 404:  # check-file not offered here: the import itself still checks
            return
        raise
    seen = {str(job.get("name")) for job in report.get("jobs") or [] if isinstance(job, dict)}
    missing = sorted(set(jobs) - seen)
    if missing:
        raise RestoreError(
            f"DataArts reads {len(seen)} of the {len(jobs)} jobs in {obs_path} (missing: "
            f"{', '.join(missing[:5])}); not importing"
        )


def wait_for_task(
    client: DataArtsClient,
    workspace_id: str,
    task_id: str,
    options: ImportOptions,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Poll the system task until it is no longer RUNNING (or the timeout passes)."""
    deadline = clock() + options.timeout
    delay = options.first_poll
    while True:
        sleep(delay)
        task = client.system_task(workspace_id, task_id)
        status = str(task.get("status") or "")
        if status and status != "RUNNING":
            return task
        if clock() >= deadline:
            raise RestoreError(
                f"import task {task_id} is still running after {options.timeout:g} s; it goes "
                "on in DataArts: check it in the console before importing again"
            )
        delay = min(delay * 2, options.max_poll)


def _part_result(
    obs_path: str,
    task_id: str,
    task: Mapping[str, Any],
    jobs: Sequence[str],
    existing: set[str],
    overwrite: bool,
) -> PartResult:
    by_job: dict[str, Mapping[str, Any]] = {}
    others: list[str] = []
    # Subtasks are per job but named in prose ("Import the <job> job."): match job names in
    # them, longest first, so that 'a_1' does not claim the subtask of 'a_10'.
    longest_first = sorted(jobs, key=len, reverse=True)
    for subtask in task.get("subtasks") or []:
        if not isinstance(subtask, dict):
            continue
        name = str(subtask.get("name") or "")
        job = next((j for j in longest_first if j in name and j not in by_job), None)
        if job is None:
            others.append(f"{name}: {subtask.get('status')}")
        else:
            by_job[job] = subtask
    outcomes = tuple(
        JobOutcome(
            name=job,
            existed=job in existing,
            status=str(by_job[job].get("status")) if job in by_job else "UNKNOWN",
            message=str(by_job.get(job, {}).get("message") or ""),
            overwrite=overwrite,
        )
        for job in jobs
    )
    return PartResult(
        obs_path=obs_path,
        task_id=task_id,
        status=str(task.get("status")),
        message=str(task.get("message") or ""),
        jobs=outcomes,
        scripts=0,
        other_subtasks=tuple(others),
    )
