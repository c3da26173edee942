"""Import a restore plan into DataArts Studio: OBS upload → check-file → import → poll.

DataArts imports only from OBS (dlf-api.md §5): each zip is uploaded, checked with
``jobs/check-file`` (does DataArts read the jobs we sent?), imported with ``jobs/import`` and
the asynchronous system task is polled to the end. A plan larger than the import limit
(10 MB) goes in parts, each a set of whole jobs with their scripts; the first failing part
stops the rest.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from backupd.config import SourceConfig
from backupd.credentials import read_secret
from backupd.dataarts.client import DataArtsClient
from backupd.dataarts.obs import ObsClient, ObsCredentials
from backupd.errors import ApiError, CredentialError, RestoreError
from backupd.restore.plan import RestorePlan, zip_bytes

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
    # Workspaces with review on (dlf-api.md §5): the imported jobs' state and their approvers.
    target_status: str | None = None  # SAVED | SUBMITTED | PRODUCTION
    approvers: tuple[str, ...] = ()


SUCCESSFUL = "SUCCESSFUL"
FAILED = "FAILED"
UNKNOWN = "UNKNOWN"


@dataclass(frozen=True)
class JobOutcome:
    name: str
    existed: bool  # a job of that name was in the workspace before the import
    status: str  # its subtask's: SUCCESSFUL | FAILED | …, or UNKNOWN when no subtask names it
    message: str = ""
    overwrite: bool = False

    @property
    def known(self) -> bool:
        """DataArts said how this job's import ended (SUCCESSFUL or FAILED)."""
        return self.status in (SUCCESSFUL, FAILED)

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
        """The task succeeded and so did every job in it, each by its own subtask."""
        return self.status == SUCCESSFUL and all(j.status == SUCCESSFUL for j in self.jobs)

    @property
    def failed(self) -> bool:
        """The task or a job in it failed: the parts after this one are not imported.

        A job whose status is unknown does not stop the rest (DataArts says the task went
        through), but the part is not ``ok``.
        """
        return self.status != SUCCESSFUL or any(j.status == FAILED for j in self.jobs)


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
    parts = plan.parts(options.max_bytes)
    existing = {job.name for job in client.list_jobs(workspace_id)}
    started = now()
    results: list[PartResult] = []
    for number, (jobs, entries) in enumerate(parts, start=1):
        key = object_key(options.prefix, plan, started, number, len(parts))
        obs_path = obs.put_object(options.bucket, key, zip_bytes(entries, plan.point.time))
        say(f"uploaded {obs_path}")
        _check_file(client, workspace_id, obs_path, jobs)
        task_id = client.import_jobs(
            workspace_id,
            obs_path,
            overwrite=options.overwrite,
            target_status=options.target_status,
            approvers=options.approvers,
        )
        say(f"import task {task_id} started ({len(jobs)} jobs)")
        task = wait_for_task(client, workspace_id, task_id, options, sleep=sleep, clock=clock)
        scripts = {p.rpartition("/")[2] for p in entries if p.endswith(".script")}
        result = _part_result(obs_path, task_id, task, jobs, existing, options.overwrite)
        result = dataclasses.replace(result, scripts=len(scripts))
        results.append(result)
        if result.failed:
            break
    return results


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
        if _status(task.get("status")) not in ("RUNNING", UNKNOWN):
            return task
        if clock() >= deadline:
            raise RestoreError(
                f"import task {task_id} is still running after {options.timeout:g} s; it goes "
                "on in DataArts: check it in the console before importing again"
            )
        delay = min(delay * 2, options.max_poll)


# What the real service names a job's subtask, in prose (the doc's example: "Import the
# job_batch job."). A subtask named so, or by the bare job name, belongs to that job only.
_SUBTASK_NAME = re.compile(r"Import the (.+) job\.", re.DOTALL)


def task_subtasks(task: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The per-job entries of a system task, under either spelling of their key.

    The API page calls the list ``subtasks``; the SDKs' ``ListSystemTasksResponse`` (Python
    and Java) call it ``subTasks``. Any key that reads ``subtasks`` but for case and ``_``
    counts; entries that are not objects are skipped.
    """
    found: list[Mapping[str, Any]] = []
    for key, value in task.items():
        if str(key).replace("_", "").lower() == "subtasks" and isinstance(value, list):
            found += [entry for entry in value if isinstance(entry, Mapping)]
    return found


def subtask_job(name: object, jobs: Collection[str]) -> str | None:
    """The job of ``jobs`` a subtask's name names exactly, or None.

    The name is either the job's own name or ``Import the <job> job.``; no substring or
    pattern search, so a job called ``job`` or ``the`` never takes another job's subtask. A
    name that could be two of ``jobs`` (``Import the x job.`` when both ``x`` and that very
    name are restored) names neither: it is not guessed.
    """
    if not isinstance(name, str) or not name:
        return None
    candidates = {name} if name in jobs else set()
    match = _SUBTASK_NAME.fullmatch(name)
    if match is not None and match[1] in jobs:
        candidates.add(match[1])
    return candidates.pop() if len(candidates) == 1 else None


def _status(value: object) -> str:
    if isinstance(value, str) and value.strip():
        return value.strip().upper()
    return UNKNOWN


def _job_status(subtasks: Sequence[Mapping[str, Any]]) -> str:
    """One job's status from its subtasks (normally one): UNKNOWN when none or they disagree."""
    statuses = {_status(subtask.get("status")) for subtask in subtasks}
    if len(statuses) == 1:
        return statuses.pop()
    return FAILED if FAILED in statuses else UNKNOWN


def _part_result(
    obs_path: str,
    task_id: str,
    task: Mapping[str, Any],
    jobs: Sequence[str],
    existing: set[str],
    overwrite: bool,
) -> PartResult:
    by_job: dict[str, list[Mapping[str, Any]]] = {}
    others: list[str] = []
    names = set(jobs)
    for subtask in task_subtasks(task):
        name = subtask.get("name")
        job = subtask_job(name, names)
        if job is None:
            shown = name if isinstance(name, str) and name else "(no usable name)"
            others.append(f"{shown}: {_status(subtask.get('status'))}")
        else:
            by_job.setdefault(job, []).append(subtask)
    outcomes = []
    for job in jobs:
        subtasks = by_job.get(job, [])
        messages = dict.fromkeys(str(s.get("message") or "") for s in subtasks)
        outcomes.append(
            JobOutcome(
                name=job,
                existed=job in existing,
                status=_job_status(subtasks) if subtasks else UNKNOWN,
                message="; ".join(m for m in messages if m),
                overwrite=overwrite,
            )
        )
    return PartResult(
        obs_path=obs_path,
        task_id=task_id,
        status=_status(task.get("status")),
        message=str(task.get("message") or ""),
        jobs=tuple(outcomes),
        scripts=0,
        other_subtasks=tuple(others),
    )
