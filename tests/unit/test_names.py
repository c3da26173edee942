"""Path names without pathlib: the same answers as PurePosixPath."""

from __future__ import annotations

import itertools
from pathlib import PurePosixPath

from backupd.store.names import name_of, stem_of, suffix_of, with_suffix

NAMES = ["a", "a.b", "a.b.c", ".script", "a.", "..x", "x..", ".a.b", "job.job", "中文.sql", "a b.x"]
FOLDERS = ["jobs", "d.x", *NAMES[:4]]
PATHS = [
    "/".join((*folders, name))
    for depth in (0, 1, 2)
    for folders in itertools.product(FOLDERS, repeat=depth)
    for name in NAMES
]


def test_name_stem_and_suffix_are_pathlibs() -> None:
    for path in PATHS:
        pure = PurePosixPath(path)
        assert (name_of(path), stem_of(path), suffix_of(path)) == (
            pure.name,
            pure.stem,
            pure.suffix,
        ), path


def test_with_suffix_is_pathlibs() -> None:
    for path, suffix in itertools.product(PATHS, ["", ".sql", ".script"]):
        assert with_suffix(path, suffix) == str(PurePosixPath(path).with_suffix(suffix)), path
