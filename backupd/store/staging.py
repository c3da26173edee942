"""The next state of one workspace folder, kept as its difference from the stored one.

Every file of the new export is hashed the way git hashes a blob and compared with the blob
id the last commit holds for that path. Only files that differ are written to the staging
folder, so a snapshot in which little changed writes (and later commits) little, however
large the workspace: backupd's own work grows with what changed, not with the repository.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from pathlib import Path

from backupd.store.tree import ChangeSet


def blob_id(data: bytes) -> str:
    """The object id git gives a file with these bytes (SHA-1 repositories)."""
    digest = hashlib.sha1(f"blob {len(data)}\0".encode("ascii"), usedforsecurity=False)
    digest.update(data)
    return digest.hexdigest()


class StagedTree:
    """Collects the new folder's files against ``baseline`` (path → blob id of the last commit).

    Paths are POSIX and relative to the workspace folder. Written files land under ``root``.
    Not thread-safe: one per workspace snapshot.
    """

    def __init__(
        self,
        root: Path,
        baseline: Mapping[str, str],
        *,
        on_write: Callable[[bytes], None] | None = None,
    ) -> None:
        self.root = root
        self._on_write = on_write  # also given every file written (to store it in git early)
        self._baseline = dict(baseline)
        # Stored paths by their folder and its parents ("jobs/<job>", "jobs", …), so keeping
        # a job costs its own files, not a scan of the whole workspace.
        self._folders: dict[str, list[str]] = {}
        for path in self._baseline:
            parts = path.split("/")
            for depth in range(1, len(parts)):
                self._folders.setdefault("/".join(parts[:depth]), []).append(path)
        self._seen: set[str] = set()
        self._made: set[Path] = set()
        self._added: set[str] = set()
        self._modified: set[str] = set()

    def put(self, path: str, data: bytes) -> None:
        """The new folder holds ``data`` at ``path``."""
        self._seen.add(path)
        stored = self._baseline.get(path)
        if stored is not None and stored == blob_id(data):
            self._modified.discard(path)
            return
        destination = self.root / path
        parent = destination.parent
        if parent not in self._made:  # one mkdir per folder, not one per file
            parent.mkdir(parents=True, exist_ok=True)
            self._made.add(parent)
        destination.write_bytes(data)
        if self._on_write is not None:
            self._on_write(data)
        (self._modified if stored is not None else self._added).add(path)

    def has(self, path: str) -> bool:
        return path in self._seen

    def stored_blob(self, path: str) -> str | None:
        return self._baseline.get(path)

    def keep(self, folder: str) -> int:
        """Keep every stored file under ``folder`` as it is (a job not exported this time)."""
        kept = self.stored_paths(folder)
        self._seen.update(kept)
        return len(kept)

    def stored_paths(self, folder: str) -> list[str]:
        return list(self._folders.get(folder.rstrip("/"), ()))

    def changes(self) -> ChangeSet:
        removed = sorted(set(self._baseline) - self._seen)
        unchanged = len(self._seen) - len(self._added) - len(self._modified)
        return ChangeSet(
            tuple(sorted(self._added)),
            tuple(sorted(self._modified)),
            tuple(removed),
            unchanged_count=unchanged,
        )
