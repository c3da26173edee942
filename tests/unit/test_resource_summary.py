"""Resources in change summaries and commit messages."""

from __future__ import annotations

from backupd.store.summary import commit_message, summarise
from backupd.store.tree import ChangeSet


def test_resources_are_counted_and_named_like_scripts() -> None:
    changes = ChangeSet(
        added=("resources/udf_new.resource", "jobs/j/j.job"),
        modified=("resources/udf_main.resource", "jobs/k/udf_shared.resource"),
        removed=(
            "resources/old_lib.resource",
            "jobs/gone/gone.job",
            "jobs/gone/udf_main.resource",  # vanishes with its job: not a resource change
        ),
    )
    summary = summarise(changes)
    assert summary.resources_added == ("udf_new",)
    assert summary.resources_changed == ("udf_main", "udf_shared")
    assert summary.resources_removed == ("old_lib",)
    assert summary.jobs_added == ("j",)
    assert summary.jobs_changed == ("k",)
    assert summary.jobs_removed == ("gone",)

    message = commit_message("prod/sales", summary)
    lines = message.splitlines()
    assert lines[0] == (
        "prod/sales: 1 added, 1 changed, 1 removed; resources: 1 added, 2 changed, 1 removed"
    )
    assert "Added resources:" in lines and "  + udf_new" in lines
    assert "Changed resources:" in lines and "  ~ udf_shared" in lines
    assert "Removed resources:" in lines and "  - old_lib" in lines


def test_no_resource_part_when_no_resource_changed() -> None:
    summary = summarise(ChangeSet(modified=("scripts/a.script",)))
    assert commit_message("p/w", summary).splitlines()[0] == (
        "p/w: 0 added, 0 changed, 0 removed; scripts: 1 changed"
    )
