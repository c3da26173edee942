"""How a restore plan differs from what the live workspace holds now (``--dry-run``).

The current versions are exported through the API exactly as a snapshot exports them, and
compared with the plan entry by entry (the plan holds the export's own entry names) as
parsed JSON, so formatting never counts as a change. The live archives are read in memory,
never unpacked to disk under their names (DataArts names need not be file names).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from backupd.dataarts.limits import MAX_EXPORT_NAMES
from backupd.dataarts.source import JobSource
from backupd.restore.plan import RestorePlan
from backupd.snapshot.export import batches
from backupd.store.archive import ArchiveLimits, read_archive
from backupd.store.normalise import is_json_file, parse_json

Status = Literal["new", "changed", "identical"]


@dataclass(frozen=True)
class ItemDiff:
    kind: Literal["job", "script"]
    name: str
    status: Status
    files: tuple[str, ...] = ()  # for a changed job: its files that differ (names only)


def comparable(path: str, content: bytes) -> Any:
    """What counts when comparing a file: parsed JSON for JSON files, bytes otherwise."""
    if is_json_file(path):
        try:
            return parse_json(content)
        except ValueError:
            pass
    return content


def diff_job(
    job: str,
    restored: Mapping[str, Any],
    live: Mapping[str, Any],
    entries: Sequence[str] | None = None,
) -> ItemDiff:
    """Compare one job's files (entries as in the zip) between the plan and the live export.

    ``entries``: the plan's entries for the job (default: its ``jobs/<job>/`` folder or
    ``jobs/<job>.job``); the live export's in that folder count too.
    """
    prefix = f"jobs/{job}/"

    def own(path: str) -> bool:
        return path.startswith(prefix) or path == f"jobs/{job}.job"

    wanted = set(entries) if entries is not None else {p for p in restored if own(p)}
    mine = {p: restored[p] for p in wanted if p in restored}
    theirs = {p: v for p, v in live.items() if own(p) or p in wanted}
    differing = sorted(
        (p.rpartition("/")[2] for p in mine.keys() | theirs.keys() if mine.get(p) != theirs.get(p)),
        key=lambda name: (not name.endswith(".job"), name),  # the job file first
    )
    return ItemDiff("job", job, "changed" if differing else "identical", tuple(differing))


def compare_with_live(
    client: JobSource,
    workspace_id: str,
    plan: RestorePlan,
    *,
    batch_size: int = MAX_EXPORT_NAMES,
    export_depend: bool = True,
    limits: ArchiveLimits = ArchiveLimits(),
    max_archive_bytes: int = 1024**3,
    staging_root: Path | None = None,
) -> list[ItemDiff]:
    """new / changed / identical for every job (and standalone script) of ``plan``."""
    live_jobs = {job.name for job in client.list_jobs(workspace_id)}
    present = [job for job in plan.jobs if job in live_jobs]
    live: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="backupd-compare-", dir=staging_root) as scratch:
        for number, batch in enumerate(batches(present, batch_size)):
            zip_path = Path(scratch) / f"live-{number}.zip"
            client.export_jobs(
                workspace_id,
                batch,
                zip_path,
                export_depend=export_depend,
                max_bytes=max_archive_bytes,
            )
            for entry, content in read_archive(zip_path, limits):
                live[entry] = comparable(entry, content)
            zip_path.unlink()
    restored = {path: comparable(path, data) for path, data in plan.entries.items()}
    needs = {job: entries for job, entries in plan.groups if job}
    diffs = [
        diff_job(job, restored, live, needs.get(job))
        if job in live_jobs
        else ItemDiff("job", job, "new")
        for job in plan.jobs
    ]
    if plan.scripts:
        listed: list[dict[str, Any]] = client.list_scripts(workspace_id)
        current = {str(script["name"]): script for script in listed}
        for name in plan.scripts:
            mine = restored[f"scripts/{name}.script"]
            if name not in current:
                diffs.append(ItemDiff("script", name, "new"))
            else:
                same = mine == current[name]
                diffs.append(ItemDiff("script", name, "identical" if same else "changed"))
    return diffs
