"""PackedPaths: a sequence of paths held in one bytes object, and the sorted folder listing
that fills it."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from backupd.store.staging import StagedTree
from backupd.store.tree import ChangeSet, PackedPaths

PATHS = ["jobs/a-b/a-b.job", "jobs/a/a.job", "jobs/中文/中文.job", "scripts/s.sql", "x\udcff"]


def test_it_answers_like_the_tuple_it_packs() -> None:
    packed = PackedPaths(PATHS)
    assert len(packed) == 5 and list(packed) == PATHS and packed == tuple(PATHS)
    assert packed[0] == PATHS[0] and packed[-1] == PATHS[-1] and packed[1:3] == tuple(PATHS[1:3])
    assert "jobs/中文/中文.job" in packed and "jobs/b" not in packed
    assert hash(packed) == hash(tuple(PATHS))
    assert packed != tuple(PATHS[:4]) and PackedPaths() == () and not PackedPaths()
    with pytest.raises(IndexError):
        packed[5]
    assert ChangeSet(added=PackedPaths(PATHS)) == ChangeSet(added=tuple(PATHS))


def test_front_coding_answers_every_path_at_every_position() -> None:
    # Prefixes shared across a restart, cut inside a character (é/ê share a byte), whole
    # paths repeated, and one path the prefix of the next.
    rng = random.Random(7)
    parts = ["jobs", "job-1", "job-10", "jobé", "jobê", "s.sh", "s.script", "中文", ""]
    paths = sorted(
        "/".join(rng.choice(parts) for _ in range(rng.randint(1, 4))) for _ in range(300)
    )
    packed = PackedPaths(paths)
    assert list(packed) == paths
    assert [packed[i] for i in range(len(paths))] == paths
    assert [packed[-i] for i in range(1, len(paths) + 1)] == [paths[-i] for i in range(1, 301)]
    assert packed[10:40:3] == tuple(paths[10:40:3])
    assert packed == PackedPaths(paths) and packed != PackedPaths(paths[:-1])
    # The same bytes cut at other places are other paths.
    assert PackedPaths(["ab", "c"]) != PackedPaths(["a", "bc"])


def test_new_files_are_listed_in_plain_string_order(tmp_path: Path) -> None:
    # Names that sort before '/' ('-', '.', ' ') are where a folder walk's order differs.
    names = ["a", "a-b", "a.b", "a b", "ab", "a0", "中"]
    rng = random.Random(7)
    paths = {
        "/".join(rng.choice(names) for _ in range(rng.randint(1, 3))) + f"/f{n}" for n in range(60)
    }
    paths = {p for p in paths if not any(q.startswith(f"{p}/") for q in paths)}
    tree = StagedTree(tmp_path / "tree", {})
    for path in paths:
        tree.put(path, b"x")
    added = tree.changes().added
    assert isinstance(added, PackedPaths)
    assert list(added) == sorted(paths)
