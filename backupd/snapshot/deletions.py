"""A deletion is recorded only when the service confirms it (architecture.md promise 1).

A job, script or resource that the last commit holds and a list no longer shows is a claim
to check, never a fact: DataArts answers a list (one job type, a page, the scripts) with
``{"total": 0}`` once in a while, and a job can vanish between listing and export
(dlf-api.md §12). Each claim is put to the service: its show call answers "does not exist"
(DLF.0100 for a job, DLF.6201 for a script, DLF.6241 for a resource) only for an item that
is gone.

Cost: nothing when nothing vanished; one call per vanished item otherwise, at most
``max_proofs`` per workspace snapshot. When more vanished from a list than that, or
``EVIDENT`` of them turn out to exist (the list glitched), the list is read once more
instead: whatever it shows again exists. Beyond the cap, an item that both readings lack is
gone when every proof made for that list said so; otherwise it waits for the next snapshot.

An empty list of which the last commit holds nothing either hides nothing from the proofs
but would hide what is new: it is read once more (one call), and if it then holds items the
snapshot is partial. The scripts and resources are read again as soon as they came back
empty (``read_now``), beside the job listing rather than after it. (A lowered total or
a short page is the client's to catch: its listings are complete only when rows and totals
agree.)

What is not proven gone stays in the tree as committed (its stored files untouched) and is
named in the snapshot's problems: the snapshot is partial, and the next one of the workspace
reconciles fully. The mass-deletion guard then looks at each list on its own (apply.py).
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from backupd.dataarts.client import JOB_TYPES, JobSummary
from backupd.dataarts.source import JobSource
from backupd.errors import ApiError, CredentialsRejected
from backupd.logs import log
from backupd.model import WorkspaceTarget
from backupd.snapshot.options import MAX_PROOFS
from backupd.snapshot.plan import Baseline
from backupd.store.layout import (
    RESOURCE_SUFFIX,
    RESOURCES_DIR,
    SCRIPT_SUFFIX,
    SCRIPTS_DIR,
    StoredLayout,
    job_folder,
)
from backupd.store.names import with_suffix
from backupd.store.normalise import VIEW_SUFFIXES
from backupd.store.staging import StagedTree

logger = logging.getLogger(__name__)

EVIDENT = 3  # vanished items found to exist before a list is taken for glitching
SHOWN = 5  # names a problem shows


@dataclass(frozen=True)
class Verdict:
    """What the service said about the items that vanished from one list."""

    gone: tuple[str, ...] = ()  # proven deleted
    present: tuple[str, ...] = ()  # shown to exist: the list left them out
    unsure: tuple[str, ...] = ()  # not proven either way (cap reached, call failed)

    @property
    def kept(self) -> tuple[str, ...]:
        return tuple(sorted((*self.present, *self.unsure)))


@dataclass(frozen=True)
class ListCheck:
    """One list of a workspace against the last commit: the mass-deletion guard's input."""

    kind: str  # "BATCH jobs", "REAL_TIME jobs", "scripts", "resources"
    stored: int  # items of the list the last commit holds
    listed: int  # items the list showed
    gone: int  # proven deleted, about to be recorded as removed


@dataclass
class Prover:
    """Puts vanished items to the service, within one workspace snapshot's budget."""

    target: WorkspaceTarget
    budget: int = MAX_PROOFS
    calls: int = 0  # show calls made
    relists: int = 0  # lists read again

    def settle(
        self,
        kind: str,
        vanished: Iterable[str],
        exists: Callable[[str], bool],
        relist: Callable[[], Collection[str]] | None = None,
    ) -> Verdict:
        """Ask about each of ``vanished`` (``exists(name)``: the show call), reading the
        list again (``relist``) when many vanished or the list proves to be glitching."""
        pending = sorted(set(vanished))
        gone: list[str] = []
        present: list[str] = []
        unsure: list[str] = []
        again: Collection[str] | None = None
        while pending:
            if relist is not None and (len(pending) > self.budget or len(present) >= EVIDENT):
                again, relist = self._relist(kind, relist), None
                if again is not None:
                    present += [name for name in pending if name in again]
                    pending = [name for name in pending if name not in again]
                continue
            if self.budget <= 0:
                break
            name = pending.pop(0)
            self.budget -= 1
            self.calls += 1
            try:
                (present if exists(name) else gone).append(name)
            except CredentialsRejected:
                raise
            except ApiError as error:
                log(
                    logger,
                    "snapshot.unproven",
                    level=logging.WARNING,
                    workspace=self.target.label,
                    kind=kind,
                    item=name,
                    error=str(error),
                )
                unsure.append(name)
        if pending:
            # Beyond the cap: lacking from both readings of the list, and every item asked
            # about really gone, they are gone too; else they wait for the next snapshot.
            if again is not None and gone and not present and not unsure:
                gone += pending
            else:
                unsure += pending
        verdict = Verdict(tuple(gone), tuple(present), tuple(unsure))
        if verdict.kept:
            log(
                logger,
                "snapshot.unconfirmed",
                level=logging.WARNING,
                workspace=self.target.label,
                kind=kind,
                gone=len(verdict.gone),
                present=",".join(verdict.present[:SHOWN]) or "-",
                unsure=",".join(verdict.unsure[:SHOWN]) or "-",
            )
        return verdict

    def confirm_empty(self, kind: str, relist: Callable[[], Collection[str]]) -> list[str]:
        """Problems, if an empty list (of which the last commit holds nothing either) is
        not empty when read once more: an empty answer is a claim too, and would hide what
        is new."""
        again = self._relist(kind, relist)
        if again is None:
            return [f"{kind}: the list came back empty and could not be read again"]
        if again:
            return [
                f"{kind}: the list came back empty, then held {len(again)}; not recorded "
                f"this time: {_names(sorted(again))}"
            ]
        return []

    def _relist(self, kind: str, relist: Callable[[], Collection[str]]) -> Collection[str] | None:
        self.relists += 1
        try:
            return relist()
        except CredentialsRejected:
            raise
        except ApiError as error:
            log(
                logger,
                "snapshot.relist_failed",
                level=logging.WARNING,
                workspace=self.target.label,
                kind=kind,
                error=str(error),
            )
            return None


def problems_of(kind: str, verdict: Verdict, *, by: str = "listed") -> list[str]:
    """The snapshot problems a verdict makes (nothing when every claim was settled)."""
    problems = []
    if verdict.present:
        problems.append(
            f"{kind}: the list left out {len(verdict.present)} that still exist; kept as "
            f"committed: {_names(verdict.present)}"
        )
    if verdict.unsure:
        problems.append(
            f"{kind}: {len(verdict.unsure)} not {by} and not confirmed deleted; kept as "
            f"committed: {_names(verdict.unsure)}"
        )
    return problems


def _names(names: Sequence[str]) -> str:
    more = f" (+{len(names) - SHOWN} more)" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def script_names(client: JobSource, workspace: str) -> set[str]:
    """The workspace's scripts, listed (again)."""
    return set(client.list_scripts(workspace, keep=_name))


def resource_names(client: JobSource, workspace: str) -> set[str]:
    """The workspace's resources, listed (again)."""
    return {str(row["name"]) for row in client.list_resources(workspace)}


def read_now(read: Callable[[], Collection[str]]) -> Callable[[], Collection[str]]:
    """``read`` made now, for a ``confirm_empty`` asked later: its answer, or the API error
    it raised, kept until then."""
    try:
        answer = read()
    except ApiError as error:
        failed = error

        def fail() -> Collection[str]:
            raise failed

        return fail
    return lambda: answer


@dataclass(frozen=True)
class Reconciled:
    """The listings against the last commit, every vanished item settled."""

    checks: tuple[ListCheck, ...] = ()  # the lists that lost items
    kept_jobs: tuple[JobSummary, ...] = ()  # stored, not listed, not proven gone
    kept_scripts: tuple[str, ...] = ()
    kept_resources: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    gone: frozenset[str] = field(default_factory=frozenset)  # jobs proven deleted


def reconcile(
    client: JobSource,
    prover: Prover,
    tree: StagedTree,
    baseline: Baseline,
    stored: StoredLayout,
    jobs: Sequence[JobSummary],
    scripts: Collection[str],
    resources: Collection[str] | None,
    read_again: Mapping[str, Callable[[], Collection[str]]] = MappingProxyType({}),
) -> Reconciled:
    """Settle what vanished from each list since the last commit; keep in ``tree`` what is
    not proven gone. ``stored``: whose each stored path is (names, not paths, are compared);
    ``resources`` None: their list was not read (optional, off or absent), so nothing of
    them vanished. Costs no call when nothing vanished and no list came back empty (an empty
    list the last commit holds nothing of is read once more; ``read_again``: by kind,
    "scripts" or "resources", that reading made already, see ``read_now``)."""
    workspace = prover.target.workspace_id
    checks: list[ListCheck] = []
    problems: list[str] = []
    kept_jobs: list[JobSummary] = []
    gone_jobs: set[str] = set()

    listed_jobs = {job.name for job in jobs}
    vanished_jobs = set(stored.jobs) - listed_jobs
    for job_type in JOB_TYPES:
        kind = f"{job_type} jobs"
        vanished = {n for n in vanished_jobs if _type_of(stored, n) == job_type}
        listed = sum(1 for job in jobs if job.job_type == job_type)

        def relist(job_type: str = job_type) -> set[str]:
            return {job.name for job in client.list_jobs(workspace, (job_type,))}

        if not vanished:
            if not listed:  # and none stored: every stored job is listed, of the other type
                problems += prover.confirm_empty(kind, relist)
            continue
        verdict = prover.settle(
            kind, vanished, lambda name: client.job_exists(workspace, name), relist
        )
        of_type = sum(1 for n in stored.jobs if _type_of(stored, n) == job_type)
        checks.append(ListCheck(kind, of_type, listed, len(verdict.gone)))
        problems += problems_of(kind, verdict)
        gone_jobs.update(verdict.gone)
        for name in verdict.kept:
            keep_job(tree, stored, name)
            kept_jobs.append(stored_summary(stored, name))

    relist_scripts = functools.partial(script_names, client, workspace)
    relist_resources = functools.partial(resource_names, client, workspace)

    if not scripts and not stored.scripts:
        problems += prover.confirm_empty("scripts", read_again.get("scripts", relist_scripts))
    if resources is not None and not resources and not stored.resources:
        again = read_again.get("resources", relist_resources)
        problems += prover.confirm_empty("resources", again)
    kept_scripts: tuple[str, ...] = ()
    vanished_scripts = set(stored.scripts) - set(scripts)
    if vanished_scripts:
        verdict = prover.settle(
            "scripts",
            vanished_scripts,
            lambda name: client.script_exists(workspace, name),
            relist_scripts,
        )
        checks.append(ListCheck("scripts", len(stored.scripts), len(scripts), len(verdict.gone)))
        problems += problems_of("scripts", verdict)
        kept_scripts = verdict.kept
        for name in kept_scripts:
            keep_script(tree, stored.scripts[name])

    kept_resources: tuple[str, ...] = ()
    vanished_resources = set(stored.resources) - set(resources or ())
    if resources is not None and vanished_resources:
        ids = _resource_ids(baseline, stored, vanished_resources)

        def resource_exists(name: str) -> bool:
            if name not in ids:
                raise ApiError(f"the stored resource {name!r} has no id to ask about")
            return client.resource_exists(workspace, ids[name])

        verdict = prover.settle(
            "resources",
            vanished_resources,
            resource_exists,
            relist_resources,
        )
        checks.append(
            ListCheck("resources", len(stored.resources), len(resources), len(verdict.gone))
        )
        problems += problems_of("resources", verdict)
        kept_resources = verdict.kept
        for name in kept_resources:
            tree.keep_file(f"{RESOURCES_DIR}/{stored.resources[name]}{RESOURCE_SUFFIX}")
    return Reconciled(
        tuple(checks),
        tuple(kept_jobs),
        kept_scripts,
        kept_resources,
        tuple(problems),
        frozenset(gone_jobs),
    )


def settle_rejected(
    client: JobSource,
    prover: Prover,
    tree: StagedTree,
    stored: StoredLayout,
    jobs: Sequence[JobSummary],
    rejected: Sequence[str],
) -> tuple[list[JobSummary], list[str]]:
    """The jobs to record after the export refused ``rejected`` as not existing, and the
    problems that leaves.

    A refusal alone proves nothing (a name the export endpoint dislikes looks the same):
    each refused job is asked about. Gone: it is recorded as deleted. Still there (or no
    answer): a stored job keeps its committed version, a new one is not recorded; both are
    named, and everything else is committed (promise 2).
    """
    verdict = prover.settle(
        "jobs", rejected, lambda name: client.job_exists(prover.target.workspace_id, name)
    )
    problems = []
    if verdict.present:
        problems.append(
            f"jobs: export refused {len(verdict.present)} that still exist; kept as "
            f"committed (or not recorded, when new): {_names(verdict.present)}"
        )
    if verdict.unsure:
        problems.append(
            f"jobs: export refused {len(verdict.unsure)} not confirmed deleted; kept as "
            f"committed (or not recorded, when new): {_names(verdict.unsure)}"
        )
    dropped = set(rejected)
    result = [job for job in jobs if job.name not in dropped]
    for name in sorted(set(verdict.kept)):
        if keep_job(tree, stored, name):
            result.append(stored_summary(stored, name))
    if verdict.gone:
        log(
            logger,
            "snapshot.vanished",
            level=logging.WARNING,
            workspace=prover.target.label,
            jobs=",".join(verdict.gone),
        )
    return sorted(result, key=lambda job: job.name), problems


def keep_job(tree: StagedTree, stored: StoredLayout, name: str) -> bool:
    """Keep a job's stored folder as committed; False when none is stored."""
    record = stored.jobs.get(name)
    return record is not None and bool(tree.keep(job_folder(record.folder(name))))


def keep_script(tree: StagedTree, component: str) -> None:
    """Keep a standalone script's stored files as committed (the script and its view)."""
    path = f"{SCRIPTS_DIR}/{component}{SCRIPT_SUFFIX}"
    for kept in (path, *(with_suffix(path, suffix) for suffix in VIEW_SUFFIXES)):
        tree.keep_file(kept)


def stored_summary(stored: StoredLayout, name: str) -> JobSummary:
    """A stored job as the index recorded it (its type, version and editor)."""
    record = stored.jobs.get(name)
    if record is None:
        return JobSummary(name, JOB_TYPES[0], None, None)
    return JobSummary(
        name, _type_of(stored, name), record.last_update_time, record.last_update_user
    )


def _type_of(stored: StoredLayout, name: str) -> str:
    record = stored.jobs.get(name)
    kind = record.job_type if record is not None else None
    return kind if kind in JOB_TYPES else JOB_TYPES[0]


def _name(script: dict[str, object]) -> str:
    return str(script["name"])


def _resource_ids(baseline: Baseline, stored: StoredLayout, names: Iterable[str]) -> dict[str, str]:
    """The ids the stored resource definitions carry (the show call wants the id)."""
    paths = {f"{RESOURCES_DIR}/{stored.resources[name]}{RESOURCE_SUFFIX}": name for name in names}
    ids = {}
    for path, data in baseline.read(paths).items():
        try:
            resource_id = json.loads(data).get("id")
        except (ValueError, AttributeError):
            continue
        if isinstance(resource_id, str) and resource_id:
            ids[paths[path]] = resource_id
    return ids
