"""The next state of one workspace folder, kept as its difference from the stored one.

Every file of the new export is hashed the way git hashes a blob and compared with the blob
id the last commit holds for that path. Only files that differ are written to the staging
folder, so a snapshot in which little changed writes (and later commits) little, however
large the workspace: backupd's own work grows with what changed, not with the repository.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import os
import threading
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from backupd.store.tree import ChangeSet, PackedPaths


def blob_id(data: bytes) -> str:
    """The object id git gives a file with these bytes (SHA-1 repositories)."""
    digest = hashlib.sha1(f"blob {len(data)}\0".encode("ascii"), usedforsecurity=False)
    digest.update(data)
    return digest.hexdigest()


class StoredFiles:
    """The files of a stored folder (path → blob id), compactly: a workspace of 10,000 jobs
    stores ~50,000 files, and several workspaces are staged at once.

    Sorted paths in one bytes object (NUL around each) with their offsets, and 20-byte ids
    in another: about 70 bytes a file, where a list of strings took 125 and a dict of hex
    strings three times that. A lookup bisects every 32nd path, then finds the path in its
    block with ``bytes.find``.
    """

    __slots__ = ("_blob", "_ids", "_keys", "_starts")
    _BLOCK = 32

    def __init__(self, files: Iterable[tuple[str, str]] = ()) -> None:
        self._blob, self._starts, self._ids, ordered = _pack(files)
        if not ordered:  # git lists them sorted; anything else is sorted here once
            pairs = sorted((self.path_at(i), self.id_at(i)) for i in range(len(self)))
            self._blob, self._starts, self._ids, _ = _pack(pairs)
        self._keys = [self._path_bytes(i) for i in range(0, len(self), self._BLOCK)]

    def __len__(self) -> int:
        return len(self._starts) - 1

    def __iter__(self) -> Iterator[str]:
        return (self.path_at(i) for i in range(len(self)))

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and self.index(path) is not None

    def index(self, path: str) -> int | None:
        key = _encode(path)
        block = bisect.bisect_right(self._keys, key) - 1
        if block < 0:
            return None
        low = block * self._BLOCK
        high = min(low + self._BLOCK, len(self))
        first = self._starts[low]
        found = self._blob.find(b"\0" + key + b"\0", first - 1, self._starts[high])
        if found < 0:
            return None
        return low + self._blob.count(b"\0", first, found + 1)

    def get(self, path: str) -> str | None:
        position = self.index(path)
        return None if position is None else self.id_at(position)

    def id_at(self, position: int) -> str:
        return self._ids[20 * position : 20 * position + 20].hex()

    def path_at(self, position: int) -> str:
        return self._path_bytes(position).decode("utf-8", "surrogateescape")

    def under(self, folder: str) -> range:
        """Positions of the files below ``folder`` (not of its namesakes like ``folder2``)."""
        prefix = _encode(folder.rstrip("/") + "/")  # "0" sorts right after "/": past the folder
        return range(self._first_at_or_after(prefix), self._first_at_or_after(prefix[:-1] + b"0"))

    def _path_bytes(self, position: int) -> bytes:
        return self._blob[self._starts[position] : self._starts[position + 1] - 1]

    def _first_at_or_after(self, key: bytes) -> int:
        block = bisect.bisect_left(self._keys, key)
        if block == 0:
            return 0
        low = (block - 1) * self._BLOCK
        high = min(block * self._BLOCK, len(self))
        return bisect.bisect_left(range(low, high), key, key=self._path_bytes) + low


def _encode(path: str) -> bytes:
    return path.encode("utf-8", "surrogateescape")


def _pack(files: Iterable[tuple[str, str]]) -> tuple[bytes, array[int], bytes, bool]:
    """(NUL-framed paths, their offsets plus one past the end, ids, whether sorted)."""
    blob = bytearray(b"\0")
    starts = array("I")
    ids = bytearray()
    ordered, previous = True, b""
    for path, oid in files:  # streamed: no list of (path, id) pairs in between
        encoded = _encode(path)
        ordered = ordered and (not starts or encoded > previous)
        starts.append(len(blob))
        blob += encoded + b"\0"
        ids += bytes.fromhex(oid)
        previous = encoded
    starts.append(len(blob))
    return bytes(blob), starts, bytes(ids), ordered


_NEW_FILE = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC


def _write_file(path: str, data: bytes) -> None:
    """Write ``data`` at ``path``; its folder is made when missing, not remembered (a first
    snapshot of a large workspace makes tens of thousands of folders).

    Three system calls (open, write, close): ``open(path, "wb")`` adds an fstat, an ioctl
    (isatty) and an lseek, and each call lets go of the interpreter lock and takes it back,
    which the thread that unpacks the next archive is contending for.
    """
    try:
        fd = os.open(path, _NEW_FILE, 0o666)
    except FileNotFoundError:
        os.makedirs(path.rpartition("/")[0], exist_ok=True)
        fd = os.open(path, _NEW_FILE, 0o666)
    try:
        view = memoryview(data)
        while view:  # a regular file takes it in one write, but a short one is allowed
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


class _Writer:
    """Writes (and deletes) staged files in a thread of its own, in the order given.

    Creating a file is kernel work (0.1-0.3 ms on a busy ext4, most of unpacking an
    archive): done here, it overlaps with the interpreter work of the next archive. At most
    ``_WRITES_QUEUED`` wait; the first error is raised by the next ``submit`` or ``flush``.
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._queued: deque[tuple[str, bytes | None]] = deque()
        self._busy = False
        self._error: OSError | None = None

    def submit(self, path: str, data: bytes | None) -> None:
        """Write ``data`` at ``path`` (None: delete it, if it is there)."""
        with self._changed:
            self._raise()
            self._changed.wait_for(lambda: len(self._queued) < _WRITES_QUEUED or self._error)
            self._raise()
            self._queued.append((path, data))
            if not self._busy:
                self._busy = True
                threading.Thread(target=self._work, name="staging-writer", daemon=True).start()

    def flush(self) -> None:
        """Wait until everything submitted is on disk; raise the first error."""
        with self._changed:
            self._changed.wait_for(lambda: not self._busy)
            self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            raise self._error

    def _work(self) -> None:
        while True:
            with self._changed:
                if not self._queued or self._error is not None:
                    self._queued.clear()
                    self._busy = False
                    self._changed.notify_all()
                    return
                # All that waits, taken at once: one lock and one wake-up a batch, not a file.
                batch, self._queued = self._queued, deque()
                self._changed.notify_all()
            try:
                for path, data in batch:
                    if data is None:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(path)
                    else:
                        _write_file(path, data)
            except OSError as error:
                with self._changed:
                    self._error = error


_WRITES_QUEUED = 1024  # files waiting for the writer (about 1.5 MB)


class StagedTree:
    """Collects the new folder's files against ``baseline`` (the blob ids of the last commit).

    Paths are POSIX and relative to the workspace folder. Written files land under ``root``,
    from a thread of its own: ``flush`` (or ``pending``) waits for them, and raises the
    first error writing one. Not thread-safe otherwise: one per workspace snapshot.
    """

    def __init__(
        self,
        root: Path,
        baseline: StoredFiles | Mapping[str, str],
        *,
        on_write: Callable[[bytes], None] | None = None,
    ) -> None:
        self.root = root
        stored = baseline if isinstance(baseline, StoredFiles) else StoredFiles(baseline.items())
        self._stored = stored
        self._seen = bytearray(len(stored))  # 1: the new folder holds this stored path too
        self._on_write = on_write  # also given every file written (to store it in git early)
        # Paths new to the folder are not held: they are the files under ``root`` that the
        # last commit lacks (a first snapshot of a large workspace adds tens of thousands).
        self._modified: set[str] = set()
        self._writer = _Writer()
        # Paths written (True) or deleted (False) since the last flush: ``has`` must not ask
        # the disk about them before the writer got to them.
        self._unflushed: dict[str, bool] = {}

    def put(self, path: str, data: bytes) -> None:
        """The new folder holds ``data`` at ``path``."""
        position = self._stored.index(path)
        if position is not None:
            self._seen[position] = 1
            if self._stored.id_at(position) == blob_id(data):
                if path in self._modified:  # written differently before: the folder holds
                    self._modified.discard(path)  # exactly the new and changed files
                    self._submit(path, None)
                return
        self._submit(path, data)
        if self._on_write is not None:
            self._on_write(data)
        if position is not None:
            self._modified.add(path)

    def discard(self, path: str) -> None:
        """The new folder does not hold ``path`` after all."""
        position = self._stored.index(path)
        if position is not None:
            self._seen[position] = 0
            self._modified.discard(path)
        self._submit(path, None)

    def staged_bytes(self, path: str) -> bytes | None:
        """What is staged at ``path`` when it differs from the stored file (None otherwise)."""
        if path in self._unflushed:
            self.flush()  # the writer may not have got to it yet
        try:
            with open(f"{self.root}/{path}", "rb") as file:
                return file.read()
        except FileNotFoundError:
            return None

    def has(self, path: str) -> bool:
        position = self._stored.index(path)
        if position is None:
            written = self._unflushed.get(path)
            return os.path.isfile(f"{self.root}/{path}") if written is None else written
        return bool(self._seen[position])

    def flush(self) -> None:
        """Wait until every file put is written (or deleted); raise the first OSError."""
        self._unflushed.clear()
        self._writer.flush()

    def _submit(self, path: str, data: bytes | None) -> None:
        if len(self._unflushed) >= _WRITES_QUEUED:
            self.flush()  # the paths remembered stay few (a listing stages thousands)
        self._unflushed[path] = data is not None
        self._writer.submit(f"{self.root}/{path}", data)

    def stored_blob(self, path: str) -> str | None:
        return self._stored.get(path)

    def keep(self, folder: str) -> int:
        """Keep every stored file under ``folder`` as it is (a job not exported this time)."""
        kept = self._stored.under(folder)
        self._seen[kept.start : kept.stop] = b"\x01" * len(kept)
        return len(kept)

    def keep_file(self, path: str) -> bool:
        """Keep the stored file at ``path`` as it is (an item not listed this time, not
        proven deleted), whatever was staged there; False when the last commit has none."""
        position = self._stored.index(path)
        if position is None:
            return False
        if path in self._modified:
            self._modified.discard(path)
            self._submit(path, None)  # after the writer's own write of it, in order
        self._seen[position] = 1
        return True

    def stored_paths(self, folder: str) -> list[str]:
        return [self._stored.path_at(position) for position in self._stored.under(folder)]

    def changes(self) -> ChangeSet:
        return self.pending().change_set()

    def pending(self) -> PendingChanges:
        """The difference, with the new paths left in the folder until asked for."""
        self.flush()
        removed = [
            self._stored.path_at(position) for position, seen in enumerate(self._seen) if not seen
        ]
        return PendingChanges(
            self.root,
            tuple(sorted(self._modified)),
            tuple(removed),
            unchanged_count=self._seen.count(1) - len(self._modified),
        )


@dataclass(frozen=True)
class PendingChanges:
    """A staged difference whose new paths are read from its folder only when asked for.

    A first snapshot of a large workspace adds tens of thousands of paths: they are not held
    while the workspace waits for its commit (its folder holds exactly the new and changed
    files, so the new ones are the files there that are not changed ones).
    """

    root: Path
    modified: tuple[str, ...]
    removed: tuple[str, ...]
    unchanged_count: int

    def change_set(self) -> ChangeSet:
        changed = set(self.modified)
        added = PackedPaths(p for p in _files_below(self.root) if p not in changed)
        return ChangeSet(added, self.modified, self.removed, self.unchanged_count)


def _files_below(root: Path) -> Iterator[str]:
    """Relative POSIX paths of the files below ``root``, in sorted order, streamed (none when
    it does not exist).

    A folder's entries are sorted with a '/' after each subfolder's name, which puts every
    path in the order of plain string comparison without holding them all to sort.
    """

    def below(folder: str, prefix: str) -> Iterator[str]:
        # One string an entry (a jobs folder holds thousands): a subfolder's ends in '/',
        # which no file name can.
        with os.scandir(folder) as entries:
            keys = sorted(
                f"{entry.name}/" if entry.is_dir(follow_symlinks=False) else entry.name
                for entry in entries
            )
        for key in keys:
            if key.endswith("/"):
                yield from below(f"{folder}/{key[:-1]}", f"{prefix}{key}")
            else:
                yield f"{prefix}{key}"

    if root.is_dir():
        yield from below(str(root), "")
