"""The next state of one workspace folder, kept as its difference from the stored one.

Every file of the new export is hashed the way git hashes a blob and compared with the blob
id the last commit holds for that path. Only files that differ are written to the staging
folder, so a snapshot in which little changed writes (and later commits) little, however
large the workspace: backupd's own work grows with what changed, not with the repository.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from backupd.store.tree import ChangeSet


def blob_id(data: bytes) -> str:
    """The object id git gives a file with these bytes (SHA-1 repositories)."""
    digest = hashlib.sha1(f"blob {len(data)}\0".encode("ascii"), usedforsecurity=False)
    digest.update(data)
    return digest.hexdigest()


class StoredFiles:
    """The files of a stored folder (path → blob id), compactly: a workspace of 10,000 jobs
    stores ~50,000 files, and several workspaces are staged at once.

    Sorted paths and 20-byte ids in one bytes object take about a third of a dict of hex
    strings; lookups are binary searches.
    """

    __slots__ = ("_ids", "_paths")

    def __init__(self, files: Iterable[tuple[str, str]] = ()) -> None:
        paths: list[str] = []
        ids = bytearray()
        for path, oid in files:  # streamed: no list of (path, id) pairs in between
            paths.append(path)
            ids += bytes.fromhex(oid)
        if any(left >= right for left, right in itertools.pairwise(paths)):
            order = sorted(range(len(paths)), key=paths.__getitem__)  # git lists them sorted
            paths = [paths[i] for i in order]
            ids = bytearray(b"".join(ids[20 * i : 20 * i + 20] for i in order))
        self._paths = paths
        self._ids = bytes(ids)

    def __len__(self) -> int:
        return len(self._paths)

    def __iter__(self) -> Iterator[str]:
        return iter(self._paths)

    def __contains__(self, path: object) -> bool:
        return isinstance(path, str) and self.index(path) is not None

    def index(self, path: str) -> int | None:
        position = bisect.bisect_left(self._paths, path)
        if position < len(self._paths) and self._paths[position] == path:
            return position
        return None

    def get(self, path: str) -> str | None:
        position = self.index(path)
        return None if position is None else self.id_at(position)

    def id_at(self, position: int) -> str:
        return self._ids[20 * position : 20 * position + 20].hex()

    def path_at(self, position: int) -> str:
        return self._paths[position]

    def under(self, folder: str) -> range:
        """Positions of the files below ``folder`` (not of its namesakes like ``folder2``)."""
        prefix = folder.rstrip("/") + "/"
        low = bisect.bisect_left(self._paths, prefix)
        high = bisect.bisect_left(self._paths, prefix[:-1] + "0")  # "0" sorts right after "/"
        return range(low, high)


class StagedTree:
    """Collects the new folder's files against ``baseline`` (the blob ids of the last commit).

    Paths are POSIX and relative to the workspace folder. Written files land under ``root``.
    Not thread-safe: one per workspace snapshot.
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
        self._made: set[str] = set()
        self._added: set[str] = set()
        self._modified: set[str] = set()

    def put(self, path: str, data: bytes) -> None:
        """The new folder holds ``data`` at ``path``."""
        position = self._stored.index(path)
        if position is not None:
            self._seen[position] = 1
            if self._stored.id_at(position) == blob_id(data):
                self._modified.discard(path)
                return
        destination = f"{self.root}/{path}"
        parent = destination.rpartition("/")[0]
        if parent not in self._made:  # one mkdir per folder, not one per file
            Path(parent).mkdir(parents=True, exist_ok=True)
            self._made.add(parent)
        with open(destination, "wb") as file:
            file.write(data)
        if self._on_write is not None:
            self._on_write(data)
        (self._modified if position is not None else self._added).add(path)

    def has(self, path: str) -> bool:
        position = self._stored.index(path)
        return path in self._added if position is None else bool(self._seen[position])

    def stored_blob(self, path: str) -> str | None:
        return self._stored.get(path)

    def keep(self, folder: str) -> int:
        """Keep every stored file under ``folder`` as it is (a job not exported this time)."""
        kept = self._stored.under(folder)
        self._seen[kept.start : kept.stop] = b"\x01" * len(kept)
        return len(kept)

    def stored_paths(self, folder: str) -> list[str]:
        return [self._stored.path_at(position) for position in self._stored.under(folder)]

    def changes(self) -> ChangeSet:
        removed = [
            self._stored.path_at(position) for position, seen in enumerate(self._seen) if not seen
        ]
        unchanged = self._seen.count(1) - len(self._modified)
        return ChangeSet(
            tuple(sorted(self._added)),
            tuple(sorted(self._modified)),
            tuple(removed),
            unchanged_count=unchanged,
        )
