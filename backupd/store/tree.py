"""Compare a staged workspace tree with the working tree and apply the difference.

Only files whose bytes differ are written (atomically, via a temporary file and rename), so
an unchanged job is never rewritten and git sees exactly what changed.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import shutil
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import overload

# Paths under this folder are backupd's own bookkeeping, not content: they never justify a
# commit on their own.
META_DIR = ".backupd"


@dataclass(frozen=True)
class ChangeSet:
    """Relative POSIX paths (within one workspace folder) that differ from the stored tree,
    each kind in sorted order."""

    added: Sequence[str] = ()  # a PackedPaths when a staging folder was listed
    modified: tuple[str, ...] = ()
    removed: tuple[str, ...] = ()
    unchanged_count: int = field(default=0, compare=False)

    @property
    def paths(self) -> Iterator[str]:
        return itertools.chain(self.added, self.modified, self.removed)

    @property
    def has_content_changes(self) -> bool:
        return any(not _is_meta(path) for path in self.paths)

    def __bool__(self) -> bool:
        return bool(self.added or self.modified or self.removed)


class PackedPaths(Sequence[str]):
    """Paths packed into one buffer, each made a string only while it is looked at.

    A first snapshot of a large workspace adds tens of thousands of paths, which its commit
    goes over several times: as strings they took ~105 bytes each. Packed front-coded (the
    length of the prefix shared with the path before, then the rest) they take ~25: paths
    in one job folder share most of their bytes. Every ``RESTART``-th path is kept whole, so
    finding one decodes at most that many.
    """

    __slots__ = ("_blob", "_shared", "_starts")
    RESTART = 16

    def __init__(self, paths: Iterable[str] = ()) -> None:
        # Kept as the bytearray it was built in: a bytes copy would double it for a moment.
        blob, starts, shared = bytearray(), array("I", [0]), array("H")
        previous = b""
        for number, path in enumerate(paths):
            raw = path.encode("utf-8", "surrogateescape")
            common = 0 if number % self.RESTART == 0 else _shared_length(previous, raw)
            blob += raw[common:]
            starts.append(len(blob))
            shared.append(common)
            previous = raw
        self._blob, self._starts, self._shared = blob, starts, shared

    def __len__(self) -> int:
        return len(self._shared)

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[str, ...]: ...
    def __getitem__(self, index: int | slice) -> str | tuple[str, ...]:
        if isinstance(index, slice):
            return tuple(self[i] for i in range(len(self))[index])
        number = index + len(self) if index < 0 else index
        if not 0 <= number < len(self):
            raise IndexError(index)
        raw = b""
        for at in range(number - number % self.RESTART, number + 1):
            raw = self._raw(at, raw)
        return raw.decode("utf-8", "surrogateescape")

    def __iter__(self) -> Iterator[str]:
        raw = b""
        for number in range(len(self)):
            raw = self._raw(number, raw)
            yield raw.decode("utf-8", "surrogateescape")

    def _raw(self, number: int, previous: bytes) -> bytes:
        rest = self._blob[self._starts[number] : self._starts[number + 1]]
        return previous[: self._shared[number]] + rest

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PackedPaths):  # the packing of given paths is always the same
            return (self._blob, self._starts, self._shared) == (
                other._blob,
                other._starts,
                other._shared,
            )
        if isinstance(other, Sequence) and not isinstance(other, str | bytes):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    def __hash__(self) -> int:
        return hash(tuple(self))  # equal to the tuple of its paths, so hashed like it

    def __repr__(self) -> str:
        return f"PackedPaths({list(self)!r})"


def _shared_length(left: bytes, right: bytes) -> int:
    """The length of the common prefix (at most 65,535: what the packing records)."""
    length = min(len(left), len(right), 0xFFFF)
    # The first differing byte is the highest one set in the XOR of the two prefixes read
    # as numbers: a few operations in C, where comparing slices took a binary search.
    difference = int.from_bytes(left[:length], "big") ^ int.from_bytes(right[:length], "big")
    return length - (difference.bit_length() + 7) // 8


def _is_meta(path: str) -> bool:
    return path == META_DIR or path.startswith(META_DIR + "/")


def walk_files(root: Path) -> Iterator[str]:
    """Relative POSIX paths of regular files below root, sorted, skipping nothing but .git."""
    if not root.is_dir():
        return
    for directory, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != ".git")
        base = Path(directory).relative_to(root)
        for name in sorted(filenames):
            yield (base / name).as_posix()


def _same_bytes(left: Path, right: Path) -> bool:
    try:
        if left.stat().st_size != right.stat().st_size:
            return False
    except FileNotFoundError:
        return False
    return left.read_bytes() == right.read_bytes()


def plan_changes(staged: Path, current: Path) -> ChangeSet:
    """What must change in ``current`` so that it equals ``staged`` byte for byte."""
    staged_files = set(walk_files(staged))
    current_files = set(walk_files(current))
    added = sorted(staged_files - current_files)
    removed = sorted(current_files - staged_files)
    modified: list[str] = []
    unchanged = 0
    for path in sorted(staged_files & current_files):
        if _same_bytes(staged / path, current / path):
            unchanged += 1
        else:
            modified.append(path)
    return ChangeSet(tuple(added), tuple(modified), tuple(removed), unchanged)


def apply_changes(staged: Path, current: Path, changes: ChangeSet) -> None:
    """Make ``current`` equal the staged state for the paths in ``changes``.

    Staged files are moved, not copied, when staging shares the file system. No fsync: the
    truth is in git's objects; a crash here leaves a dirty folder that the next run resets.
    """
    if not current.exists() and not changes.modified and not changes.removed:
        # A new folder: staging holds exactly its files, so one rename places them all.
        current.parent.mkdir(parents=True, exist_ok=True)
        try:
            staged.replace(current)
            return
        except OSError as error:
            if error.errno != errno.EXDEV:
                raise
    made: set[str] = set()
    for path in itertools.chain(changes.added, changes.modified):
        target = f"{current}/{path}"
        parent = target.rpartition("/")[0]
        if parent not in made:  # one mkdir per folder, not one per file
            os.makedirs(parent, exist_ok=True)
            made.add(parent)
        _move_file(f"{staged}/{path}", target)
    for path in changes.removed:
        target = f"{current}/{path}"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(target)
        _prune_empty_parents(target.rpartition("/")[0], str(current))


def _move_file(source: str, target: str) -> None:
    try:
        os.replace(source, target)
    except OSError as error:
        if error.errno != errno.EXDEV:
            raise
        shutil.copyfile(source, target)


def _prune_empty_parents(directory: str, stop: str) -> None:
    while directory.startswith(f"{stop}/"):
        try:
            os.rmdir(directory)
        except OSError:
            return
        directory = directory.rpartition("/")[0]
