"""How one workspace is snapshotted: the options the wiring derives from the config."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from backupd.dataarts.limits import MAX_EXPORT_NAMES
from backupd.store.archive import ArchiveLimits
from backupd.store.gitrepo import Identity
from backupd.store.volatile import VolatileRules

MAX_PROOFS = 50  # show calls one workspace snapshot spends on vanished items, at most


@dataclass(frozen=True)
class SnapshotOptions:
    export_depend: bool = True
    batch_size: int = MAX_EXPORT_NAMES
    archive_limits: ArchiveLimits = ArchiveLimits()
    max_archive_bytes: int = 1024**3
    staging_root: Path | None = None
    max_delete_fraction: float = 0.5
    allow_mass_delete: bool = False
    volatile: VolatileRules = VolatileRules()
    commit_per_author: bool = False
    # DataArts user → git identity; users not listed get default_identity().
    authors: Mapping[str, Identity] = field(default_factory=dict)
    archive_attempts: int = 2
    # Export only new jobs, jobs whose lastUpdateTime moved and jobs using a changed script;
    # every full_every seconds (and whenever unsure) export everything.
    incremental: bool = True
    full_every: float = 86400.0
    export_window: int = 2  # batches downloading at once per workspace
    # Show calls a workspace snapshot may spend proving vanished items gone (deletions.py).
    max_proofs: int = MAX_PROOFS
    # Back up resource definitions (an optional API: off, the stored ones stay as they are).
    resources: bool = True
