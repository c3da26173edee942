"""summarise() against the plain set arithmetic it implements, on random change sets."""

from __future__ import annotations

import random

from backupd.store.summary import ChangeSummary, job_of, summarise
from backupd.store.tree import ChangeSet, PackedPaths


def by_sets(changes: ChangeSet) -> ChangeSummary:
    def names(paths: tuple[str, ...], folder: str, suffix: str) -> set[str]:
        return {
            p.rsplit("/", 1)[-1].removesuffix(suffix)
            for p in paths
            if p.startswith(folder) and p.endswith(suffix)
        }

    def job_files(paths: tuple[str, ...]) -> set[str]:
        return {
            j
            for p in paths
            if (j := job_of(p)) is not None and p.endswith((f"/{j}/{j}.job", f"s/{j}.job"))
        }

    added, modified, removed = tuple(changes.added), changes.modified, changes.removed
    jobs_added, jobs_removed = job_files(added), job_files(removed)
    touched = {j for p in (*added, *modified, *removed) if (j := job_of(p)) is not None}
    scripts_added = names(added, "scripts/", ".script")
    scripts_removed = names(removed, "scripts/", ".script")
    resources_added = names(added, "resources/", ".resource")
    resources_removed = names(removed, "resources/", ".resource")
    return ChangeSummary(
        *(
            tuple(sorted(s))
            for s in (
                jobs_added,
                touched - jobs_added - jobs_removed,
                jobs_removed,
                scripts_added,
                names(modified, "", ".script") - scripts_added - scripts_removed,
                scripts_removed,
                resources_added,
                names(modified, "", ".resource") - resources_added - resources_removed,
                resources_removed,
            )
        )
    )


def test_summaries_equal_the_set_arithmetic() -> None:
    rng = random.Random(11)
    jobs = ["a", "a-b", "a.b", "b", "中文"]
    scripts = ["s", "s-1", "t"]
    paths = sorted(
        {
            *(f"jobs/{j}/{j}.job" for j in jobs),
            *(f"jobs/{j}/{s}.script" for j in jobs for s in scripts),
            *(f"jobs/{j}.job" for j in jobs[:2]),  # the flat layout, beside a folder
            *(f"scripts/{s}.script" for s in scripts),
            *(f"resources/{r}.resource" for r in ("r", "r-2")),
            "jobs/a/a.job.bak",
            ".backupd/index.json",
        }
    )
    for _ in range(300):
        kinds = [rng.choice("amr.") for _ in paths]
        added, modified, removed = (
            tuple(p for p, k in zip(paths, kinds, strict=True) if k == kind) for kind in "amr"
        )
        for first in (added, PackedPaths(added)):
            changes = ChangeSet(first, modified, removed)
            assert summarise(changes) == by_sets(changes), changes
