"""StagedTree: the next folder state as a difference from the stored one."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from backupd.store.layout import read_layout
from backupd.store.staging import StagedTree, StoredFiles, blob_id
from backupd.store.tree import ChangeSet


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


def test_new_files_are_known_from_the_staging_folder_in_plain_sorted_order(
    tmp_path: Path,
) -> None:
    tree = StagedTree(tmp_path / "tree", {"jobs/a/a.job": blob_id(b"A")})
    assert not tree.has("jobs/b/b.job")
    tree.put("jobs/b/b.job", b"B")
    tree.put("jobs/b/b.job", b"B2")  # put twice: one file, listed once
    tree.put("jobs/a.b/a.b.job", b"AB")  # '.' sorts before '/': not the folder walk's order
    tree.put("jobs/b/deep/x/y.txt", b"Y")  # folders made on demand
    tree.put("jobs/a/a.job", b"A")

    assert tree.has("jobs/b/b.job") and tree.has("jobs/b/deep/x/y.txt")
    assert not tree.has("jobs/b") and not tree.has("jobs/c/c.job")
    changes = tree.changes()
    assert changes.added == ("jobs/a.b/a.b.job", "jobs/b/b.job", "jobs/b/deep/x/y.txt")
    assert changes.modified == () and changes.removed == ()
    assert (tmp_path / "tree/jobs/b/b.job").read_bytes() == b"B2"


def test_a_file_written_then_put_back_as_stored_is_no_change(tmp_path: Path) -> None:
    tree = StagedTree(tmp_path / "tree", {"jobs/a/a.job": blob_id(b"A")})
    tree.put("jobs/a/a.job", b"A2")
    tree.put("jobs/a/a.job", b"A")  # e.g. a retried batch
    pending = tree.pending()
    assert pending.modified == () and pending.unchanged_count == 1
    assert pending.change_set() == ChangeSet()
    assert not (tmp_path / "tree/jobs/a/a.job").exists()


def test_nothing_new_when_no_file_was_written(tmp_path: Path) -> None:
    tree = StagedTree(tmp_path / "never-made", {"jobs/a/a.job": blob_id(b"A")})
    tree.put("jobs/a/a.job", b"A")
    assert tree.changes().added == ()


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


def test_stored_jobs_scripts_and_resources_are_named_from_the_stored_files() -> None:
    files = sorted(
        [
            "jobs/a/a.job",
            "jobs/a/s.script",
            "jobs/a.b/a.b.job",  # "." sorts before "/": a namesake folder comes first
            "jobs/c/c.sql",  # a folder without its job file is not a job
            "jobs/top.job",  # the flat layout of older exports
            "resources/r.resource",
            "resources/notes.txt",
            "scripts/s.script",
            "scripts/s.sql",
            "scripts/deeper/x.script",  # not a standalone script's place
        ]
    )
    names = read_layout(files, None)  # no index: an older backupd's folder, names as stored
    assert set(names.jobs) == {"a", "a.b", "top"}
    assert set(names.scripts) == {"s"}
    assert set(names.resources) == {"r"}


def test_stored_files_agree_with_a_sorted_list_on_every_question() -> None:
    # Blocks of 32 paths: namesakes, deep folders and non-ASCII names across block edges.
    rng = random.Random(7)
    names = [f"j{n}" for n in range(90)] + ["j1.b", "j1-x", "日本", "ü", "a/b/c"]
    paths: set[str] = set()
    for name in names:
        paths.add(f"jobs/{name}/{name}.job")
        for extra in rng.sample(["s.script", "s.sql", "x/deep.txt", "z.py"], rng.randint(0, 3)):
            paths.add(f"jobs/{name}/{extra}")
    paths |= {"README.md", "scripts/s.script", "zzz"}
    mapping = {path: blob_id(path.encode()) for path in paths}
    shuffled = list(mapping.items())
    rng.shuffle(shuffled)  # not in git's order: sorted on the way in
    stored = StoredFiles(shuffled)
    ordered = sorted(paths, key=lambda p: p.encode())
    assert list(stored) == ordered and len(stored) == len(ordered)
    for position, path in enumerate(ordered):
        assert stored.index(path) == position and stored.get(path) == mapping[path]
        assert stored.path_at(position) == path
    for missing in ["", "jobs", "jobs/j1", "jobs/j1/", "a", "zzzz", "jobs/j1/j1.jo", "ü/x"]:
        assert missing not in stored and stored.get(missing) is None
    for folder in ["jobs", "jobs/j1", "jobs/j1/", "jobs/日本", "jobs/j1/x", "scripts", "nope", "a"]:
        prefix = folder.rstrip("/") + "/"
        expected = [p for p in ordered if p.startswith(prefix)]
        assert [stored.path_at(i) for i in stored.under(folder)] == expected


def test_no_stored_files() -> None:
    stored = StoredFiles()
    assert len(stored) == 0 and list(stored) == [] and "a" not in stored
    assert stored.under("jobs") == range(0, 0)


def test_files_are_written_in_order_by_a_thread_of_their_own(tmp_path: Path) -> None:
    tree = StagedTree(tmp_path / "tree", {"jobs/a/a.job": blob_id(b"old")})
    tree.put("jobs/b/b.job", b"new")
    tree.put("jobs/b/b.sql", b"select 1\n")
    tree.discard("jobs/b/b.sql")
    tree.put("jobs/a/a.job", b"changed")
    tree.put("jobs/a/a.job", b"old")  # back to what is stored: the changed file goes again
    assert tree.has("jobs/b/b.job") and not tree.has("jobs/b/b.sql")  # before the disk knows
    tree.flush()
    assert sorted(p.relative_to(tree.root).as_posix() for p in tree.root.rglob("*.*")) == [
        "jobs/b/b.job"
    ]
    assert tree.has("jobs/b/b.job") and not tree.has("jobs/b/b.sql")  # now from the disk
    assert (tree.root / "jobs/b/b.job").read_bytes() == b"new"


def test_a_failed_write_is_raised_by_the_next_flush(tmp_path: Path) -> None:
    (tmp_path / "tree").write_text("a file where the staging folder should be")
    tree = StagedTree(tmp_path / "tree", {})
    tree.put("jobs/b/b.job", b"new")
    with pytest.raises(OSError):
        tree.flush()
    with pytest.raises(OSError):  # and by every later put
        tree.put("jobs/c/c.job", b"new")
