"""File contents stored in the repository while a workspace is still staging.

Writing git objects is the costly half of staging a file in git's index; done here, in the
staging thread and a ``git fast-import`` process of its own, it overlaps with waiting on the
network, and the commit (one at a time, under the lock) only records the ids. fast-import
writes one pack rather than a file per object. Objects nothing refers to (a snapshot that
failed later) are harmless; ``git gc`` prunes them.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

from backupd import proc
from backupd.logs import log
from backupd.store.gitrepo import GIT_LOCALE

logger = logging.getLogger(__name__)


class BlobWriter:
    """Feeds blobs to one ``git fast-import``, started at the first blob. Not thread-safe."""

    def __init__(self, repo_path: Path) -> None:
        self._repo_path = repo_path
        self._process: proc.Child[bytes] | None = None
        self._failed = False

    def write(self, data: bytes) -> None:
        if self._failed:
            return
        try:
            if self._process is None:
                self._process = proc.spawn(
                    ["git", "fast-import", "--quiet", "--done"],
                    cwd=self._repo_path,
                    stdin=proc.PIPE,
                    stdout=proc.DEVNULL,
                    env=GIT_LOCALE,
                )
            pipe = self._process.stdin
            if pipe is None:  # pragma: no cover - stdin=PIPE always gives one
                raise OSError("git fast-import has no input pipe")
            pipe.write(b"blob\ndata %d\n" % len(data))
            pipe.write(data)
            pipe.write(b"\n")
        except OSError as error:  # git gone, a broken pipe: the commit writes them instead
            self._give_up(str(error))

    def finish(self) -> bool:
        """Wait for the pack: True when every blob written so far is in the repository."""
        if self._process is None or self._failed:
            return not self._failed
        try:
            _, stderr = self._process.communicate(b"done\n", timeout=600)
        except (OSError, proc.ChildError) as error:
            self._give_up(str(error))
            return False
        if self._process.returncode != 0:
            self._give_up(stderr.decode("utf-8", "replace").strip()[:500])
            return False
        return True

    def abandon(self) -> None:
        """Stop without waiting (the snapshot failed): nothing will refer to these blobs."""
        if self._process is not None and self._process.returncode is None:
            proc.kill_session(self._process)
            with contextlib.suppress(OSError, proc.ChildError):
                self._process.communicate(timeout=60)

    def _give_up(self, reason: str) -> None:
        self._failed = True
        log(logger, "blobs.unwritten", level=logging.WARNING, error=reason)
        self.abandon()
