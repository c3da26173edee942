"""How a restore plan differs from what the live workspace holds now (``--dry-run``).

The current versions are exported through the API exactly as a snapshot exports them, and
compared with the plan file by file as parsed JSON, so formatting never counts as a change.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from backupd.dataarts.limits import MAX_EXPORT_NAMES
from backupd.dataarts.source import JobSource
from backupd.restore.plan import RestorePlan
from backupd.snapshot.export import batches
from backupd.store.archive import ArchiveLimits, extract_archive
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


def diff_job(job: str, restored: Mapping[str, Any], live: Mapping[str, Any]) -> ItemDiff:
    """Compare one job's files (paths as in the zip) between the plan and the live export."""
    prefix = f"jobs/{job}/"
    mine = {p: v for p, v in restored.items() if p.startswith(prefix) or p == f"jobs/{job}.job"}
    theirs = {p: v for p, v in live.items() if p.startswith(prefix) or p == f"jobs/{job}.job"}
    differing = sorted(
        (
            PurePosixPath(p).name
            for p in mine.keys() | theirs.keys()
            if mine.get(p) != theirs.get(p)
        ),
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
            unpacked = Path(scratch) / f"live-{number}"
            for relative in extract_archive(zip_path, unpacked, limits):
                live[relative] = comparable(relative, (unpacked / relative).read_bytes())
    restored = {path: comparable(path, data) for path, data in plan.entries.items()}
    diffs = [
        diff_job(job, restored, live) if job in live_jobs else ItemDiff("job", job, "new")
        for job in plan.jobs
    ]
    if plan.scripts:
        current = {str(s["name"]): s for s in client.list_scripts(workspace_id)}
        for name in plan.scripts:
            mine = restored[f"scripts/{name}.script"]
            if name not in current:
                diffs.append(ItemDiff("script", name, "new"))
            else:
                same = mine == current[name]
                diffs.append(ItemDiff("script", name, "identical" if same else "changed"))
    return diffs
