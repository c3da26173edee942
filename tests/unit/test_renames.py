"""A vanished job and an appeared one are one job renamed when their definitions say so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from backupd.store.authors import attribute, saved_by, split_commits
from backupd.store.normalise import canonical_json
from backupd.store.renames import pair_renames, renamed_jobs
from backupd.store.summary import PathNames, commit_message, summarise
from backupd.store.tree import ChangeSet
from backupd.store.volatile import parse_field_path

VOLATILE = (parse_field_path("version"), parse_field_path("lastUpdateUser"))


def job(name: str, *, job_id: int | str | None = None, **fields: Any) -> bytes:
    definition: dict[str, Any] = {"name": name, "nodes": [{"name": "n1", "type": "HiveSQL"}]}
    definition.update(fields)
    if job_id is not None:
        definition["id"] = job_id
    return canonical_json(definition)


def test_the_same_id_is_one_job_whatever_else_changed() -> None:
    removed = {"daily": job("daily", job_id=7), "gone": job("gone", job_id=8)}
    added = {"orders_daily": job("orders_daily", job_id=7, params=[1]), "new": job("new", job_id=9)}
    assert pair_renames(removed, added) == [("daily", "orders_daily")]


def test_different_ids_are_different_jobs_even_with_the_same_definition() -> None:
    # Deleted, and another job created with the same content: DataArts gave it a new id.
    assert pair_renames({"a": job("a", job_id=1)}, {"b": job("b", job_id=2)}) == []


def test_without_ids_the_definition_but_its_name_and_volatile_fields_decides() -> None:
    removed = {"a": job("a", version=3, lastUpdateUser="ann"), "x": job("x", schedule="daily")}
    added = {"b": job("b", version=4, lastUpdateUser="bob"), "y": job("y", schedule="hourly")}
    assert pair_renames(removed, added, VOLATILE) == [("a", "b")]
    assert pair_renames(removed, added) == []  # version and user count when not volatile


def test_an_id_on_one_side_only_leaves_it_to_the_definition() -> None:
    assert pair_renames({"a": job("a")}, {"b": job("b", job_id=5)}) == [("a", "b")]
    assert pair_renames({"a": job("a", job_id=5)}, {"b": job("b")}) == [("a", "b")]


def test_ambiguous_or_unreadable_candidates_are_never_paired() -> None:
    # Two copies of one template removed, one added: which one was renamed is unknowable.
    twins = {"t1": job("t1"), "t2": job("t2")}
    assert pair_renames(twins, {"t3": job("t3")}) == []
    assert (
        pair_renames({"a": job("a", job_id=1)}, {"b": job("b", job_id=1), "c": job("c", job_id=1)})
        == []
    )
    assert pair_renames({"a": b"{not json"}, {"b": b"{not json"}) == []
    assert pair_renames({"a": b"[]"}, {"b": b"[]"}) == []
    assert pair_renames({}, {"b": job("b")}) == []
    assert pair_renames({"a": job("a")}, {}) == []


def test_numbers_and_string_ids_compare_by_value() -> None:
    assert pair_renames({"a": job("a", job_id=12)}, {"b": job("b", job_id="12")}) == [("a", "b")]


def test_renamed_jobs_reads_removed_files_from_the_folder_and_added_ones_from_staging(
    tmp_path: Path,
) -> None:
    current, staged = tmp_path / "current", tmp_path / "staged"
    for root, path, content in (
        (current, "jobs/old/old.job", job("old", job_id=1)),
        (current, "jobs/CON~a3dbc4b644/CON~a3dbc4b644.job", job("CON", job_id=2)),
        (staged, "jobs/new/new.job", job("new", job_id=1)),
        (staged, "jobs/nul2/nul2.job", job("nul2", job_id=2)),
        (staged, "jobs/other/other.job", job("other", job_id=3)),
    ):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(content)
    changes = ChangeSet(
        added=(
            "jobs/new/new.job",
            "jobs/new/s.script",
            "jobs/nul2/nul2.job",
            "jobs/other/other.job",
        ),
        removed=("jobs/CON~a3dbc4b644/CON~a3dbc4b644.job", "jobs/old/old.job", "jobs/old/s.script"),
    )
    names = PathNames(jobs={"CON~a3dbc4b644": "CON"})
    assert renamed_jobs(changes, staged, current, names) == [("CON", "nul2"), ("old", "new")]
    assert renamed_jobs(ChangeSet(added=changes.added), staged, current, names) == []


RENAME = ChangeSet(
    added=("jobs/new/new.job", "jobs/new/s.script", "jobs/new/s.sql", "jobs/other/other.job"),
    modified=(".backupd/index.json", "jobs/c/c.job"),
    removed=("jobs/old/old.job", "jobs/old/s.script", "jobs/old/s.sql", "jobs/gone/gone.job"),
)


def test_a_rename_is_neither_added_nor_removed_in_the_summary_and_the_message() -> None:
    summary = summarise(RENAME, renames=[("old", "new"), ("absent", "other")])
    assert list(summary.jobs_added) == ["other"]
    assert list(summary.jobs_changed) == ["c"]
    assert list(summary.jobs_removed) == ["gone"]
    assert summary.jobs_renamed == (("old", "new"),)

    message = commit_message("prod/sales", summary, users={"new": "bob", "c": "ann"})
    assert message.splitlines()[0] == "prod/sales: 1 added, 1 changed, 1 removed, 1 renamed"
    assert message == (
        "prod/sales: 1 added, 1 changed, 1 removed, 1 renamed\n"
        "\nAdded jobs:\n  + other\n"
        "\nChanged jobs:\n  ~ c (by ann)\n"
        "\nRemoved jobs:\n  - gone\n"
        "\nrenamed: old → new (by bob)\n"
    )


def test_without_renames_the_subject_keeps_its_format() -> None:
    message = commit_message("prod/sales", summarise(RENAME))
    assert message.splitlines()[0] == "prod/sales: 2 added, 1 changed, 2 removed"
    assert "renamed" not in message


def test_renamed_names_are_shown_escaped_like_every_name() -> None:
    changes = ChangeSet(added=("jobs/b~0123456789/b~0123456789.job",), removed=("jobs/a/a.job",))
    names = PathNames(jobs={"b~0123456789": "tab\there"})
    summary = summarise(changes, names, [("a", "tab\there")])
    message = commit_message("p/w", summary)
    assert message == "p/w: 0 added, 0 changed, 0 removed, 1 renamed\n\nrenamed: a → 'tab\\there'\n"


def test_long_rename_lists_are_cut_like_the_other_sections() -> None:
    pairs = [(f"old{i:03}", f"new{i:03}") for i in range(205)]
    changes = ChangeSet(
        added=tuple(f"jobs/{new}/{new}.job" for _, new in pairs),
        removed=tuple(f"jobs/{old}/{old}.job" for old, _ in pairs),
    )
    lines = commit_message("p/w", summarise(changes, renames=pairs)).splitlines()
    assert lines[0] == "p/w: 0 added, 0 changed, 0 removed, 205 renamed"
    assert lines[-1] == "renamed: … and 5 more"
    assert lines[-2] == "renamed: old199 → new199"


def test_both_sides_of_a_rename_go_to_the_commit_of_the_user_who_renamed_it() -> None:
    summary = summarise(RENAME, renames=[("old", "new")])
    editors = {"new": "bob", "other": "carol", "c": "ann"}
    saved = saved_by(summary, RENAME, editors)
    assert saved == {"new": "bob", "other": "carol", "c": "ann"}
    users = attribute(RENAME, saved, renamed=dict(summary.jobs_renamed))
    assert {p for p, u in users.items() if u == "bob"} == {
        "jobs/new/new.job",
        "jobs/new/s.script",
        "jobs/new/s.sql",
        "jobs/old/old.job",
        "jobs/old/s.script",
        "jobs/old/s.sql",
    }
    assert users["jobs/gone/gone.job"] is None
    groups = split_commits(RENAME, users, per_author=True)
    (bobs,) = [g for g in groups if g.user == "bob"]
    assert summarise(bobs.changes, renames=summary.jobs_renamed).jobs_renamed == (("old", "new"),)
