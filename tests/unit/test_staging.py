"""StagedTree: the next folder state as a difference from the stored one."""

from __future__ import annotations

from pathlib import Path

from backupd.snapshot import stored_job_count, stored_resource_count
from backupd.store.staging import StagedTree, StoredFiles, blob_id


def test_blob_id_is_gits() -> None:
    # `printf 'hello\n' | git hash-object --stdin`
    assert blob_id(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_only_new_and_changed_files_are_written(tmp_path: Path) -> None:
    baseline = {
        "jobs/a/a.job": blob_id(b"A"),
        "jobs/a/s.script": blob_id(b"S"),
        "jobs/b/b.job": blob_id(b"B"),
        "jobs/gone/gone.job": blob_id(b"G"),
        "scripts/s.script": blob_id(b"S"),
    }
    tree = StagedTree(tmp_path, baseline)
    tree.put("jobs/a/a.job", b"A")  # unchanged: not written
    tree.put("jobs/a/s.script", b"S2")  # changed
    tree.put("jobs/new/new.job", b"N")  # new
    assert tree.keep("jobs/b") == 1  # not exported this time: stays as stored
    tree.put("scripts/s.script", b"S")

    changes = tree.changes()

    assert changes.added == ("jobs/new/new.job",)
    assert changes.modified == ("jobs/a/s.script",)
    assert changes.removed == ("jobs/gone/gone.job",)
    assert changes.unchanged_count == 3
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert written == ["jobs/a/s.script", "jobs/new/new.job"]


def test_keep_takes_exactly_the_folder_not_its_namesakes(tmp_path: Path) -> None:
    baseline = {
        "jobs/a/a.job": blob_id(b"1"),
        "jobs/ab/ab.job": blob_id(b"2"),
        "jobs/a/x/deep.txt": blob_id(b"3"),
        "jobs/a.b/a.b.job": blob_id(b"4"),  # sorts between jobs/a/ and jobs/ab/
    }
    tree = StagedTree(tmp_path, baseline)
    assert tree.keep("jobs/a") == 2
    assert tree.changes().removed == ("jobs/a.b/a.b.job", "jobs/ab/ab.job")


def test_stored_files_answer_like_the_mapping_they_hold() -> None:
    mapping = {f"jobs/j{n}/j{n}.job": blob_id(str(n).encode()) for n in range(50)}
    stored = StoredFiles(mapping.items())
    assert len(stored) == 50 and sorted(stored) == sorted(mapping)
    assert all(stored.get(path) == oid for path, oid in mapping.items())
    assert stored.get("jobs/j5") is None and "jobs/j50/j50.job" not in stored
    assert [stored.path_at(p) for p in stored.under("jobs/j1")] == ["jobs/j1/j1.job"]


def test_stored_jobs_and_resources_are_counted_from_the_stored_files() -> None:
    oid = "0" * 40
    files = StoredFiles(
        (path, oid)
        for path in [
            "jobs/a/a.job",
            "jobs/a/s.script",
            "jobs/a.b/a.b.job",  # "." sorts before "/": a namesake folder comes first
            "jobs/c/c.sql",  # a folder without its job file is not a job
            "jobs/top.job",  # the flat layout of older exports
            "resources/r.resource",
            "resources/notes.txt",
            "scripts/s.script",
        ]
    )
    assert stored_job_count(files) == 3
    assert stored_resource_count(files) == 1
