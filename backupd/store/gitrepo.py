"""The git repository that holds the snapshots (GitPython, the only module importing it)."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import git

from backupd.errors import LockedError, RepoError
from backupd.logs import log

logger = logging.getLogger(__name__)

LOCK_FILE = "backupd.lock"

REPOSITORY_README = """\
# DataArts Studio backup (managed by backupd)

This repository is written by [backupd](https://pypi.org/project/backupd/): every commit is
a snapshot of the DataArts Factory jobs, scripts and resource definitions of one workspace,
exactly as the service held them at that moment. Do not commit here by hand.

Layout:

    <source>/<workspace>/jobs/<job>/<job>.job          job definition (canonical JSON export)
    <source>/<workspace>/jobs/<job>/<script>.script    scripts the job uses, as exported
    <source>/<workspace>/jobs/<job>/<script>.sql|.sh|.py   readable view of a script body
    <source>/<workspace>/scripts/<script>.script       every script of the workspace (+ views)
    <source>/<workspace>/resources/<name>.resource     every resource definition (not the
                                                       OBS file it points to)
    <source>/<workspace>/.backupd/index.json           job metadata used by backupd
    <source>/.backupd/workspaces.json                  discovered workspaces: id -> folder, name

Review history with `git log -p -- <source>/<workspace>/jobs/<job>`. The `.sql`, `.sh` and
`.py` views are derived from the `.script` files and are not part of a restore.
"""


@dataclass(frozen=True)
class Identity:
    name: str
    email: str


class GitRepo:
    """A working tree with one branch of snapshots. Open per run; close when done."""

    def __init__(self, repo: git.Repo, branch: str) -> None:
        self._repo = repo
        self.branch = branch
        self.path = Path(repo.working_tree_dir or ".")

    # --- opening ------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, *, branch: str) -> GitRepo:
        """Open the repository, creating an empty one when it does not exist."""
        try:
            if (path / ".git").exists():
                repo = git.Repo(path)
            else:
                path.mkdir(parents=True, exist_ok=True)
                if any(path.iterdir()):
                    raise RepoError(f"{path} exists, is not empty and is not a git repository")
                repo = git.Repo.init(path, initial_branch=branch)
                log(logger, "repo.created", path=str(path))
        except git.GitError as error:
            raise RepoError(f"cannot open git repository {path}: {error}") from None
        instance = cls(repo, branch)
        instance._configure()
        return instance

    def prepare(self, identity: Identity) -> None:
        """First commit (a README) on a new repository, and the snapshot branch checked out.

        Call with the lock held.
        """
        if not self.has_commits():
            (self.path / "README.md").write_text(REPOSITORY_README, encoding="utf-8")
            self.stage(["README.md"])
            self.commit("backupd: initialise repository", author=identity, committer=identity)
        self._checkout_branch()

    def _configure(self) -> None:
        with self._repo.config_writer() as writer:
            # Hooks or signing configured globally must not block an unattended daemon.
            writer.set_value("commit", "gpgsign", "false")
            writer.set_value("core", "quotePath", "false")

    def _checkout_branch(self) -> None:
        try:
            if self._repo.head.is_detached or self._repo.active_branch.name != self.branch:
                if self.branch in self._repo.heads:
                    self._git("checkout", "-q", self.branch)
                else:
                    self._git("checkout", "-q", "-b", self.branch)
        except TypeError:  # pragma: no cover - unborn HEAD is handled by open()
            pass

    def close(self) -> None:
        self._repo.close()

    def __enter__(self) -> GitRepo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- queries ------------------------------------------------------------------------------

    def has_commits(self) -> bool:
        try:
            self._repo.head.commit  # noqa: B018 - raises ValueError on an unborn branch
        except ValueError:
            return False
        return True

    def head(self) -> str | None:
        return self._repo.head.commit.hexsha if self.has_commits() else None

    def tracked_files(self, folder: str) -> list[str]:
        """Files under ``folder`` in HEAD (POSIX, relative to the repository root)."""
        if not self.has_commits():
            return []
        output = self._git("ls-tree", "-r", "--name-only", "-z", "HEAD", "--", folder)
        return [path for path in output.split("\0") if path]

    # --- changes ------------------------------------------------------------------------------

    def reset_folder(self, folder: str) -> None:
        """Make ``folder`` equal HEAD again: undo what a crashed run may have left half-done."""
        if self.tracked_files(folder):
            self._git("reset", "-q", "HEAD", "--", folder)
            self._git("checkout", "-q", "HEAD", "--", folder)
        else:
            with contextlib.suppress(git.GitCommandError):
                self._git("rm", "-r", "-q", "--cached", "--ignore-unmatch", "--", folder)
        self._git("clean", "-q", "-f", "-d", "-x", "--", folder)

    def stage(self, paths: Sequence[str]) -> None:
        """Stage exactly these paths (additions, modifications and deletions)."""
        chunk_size = 500  # keep argv well under the system limit
        for start in range(0, len(paths), chunk_size):
            chunk = paths[start : start + chunk_size]
            self._git("add", "-A", "--", *chunk)

    def commit(self, message: str, *, author: Identity, committer: Identity) -> str | None:
        """Commit what is staged; None when nothing is (never an empty commit)."""
        if self.has_commits() and not self._git("diff", "--cached", "--name-only", "-z"):
            return None
        environment = {
            "GIT_AUTHOR_NAME": author.name,
            "GIT_AUTHOR_EMAIL": author.email,
            "GIT_COMMITTER_NAME": committer.name,
            "GIT_COMMITTER_EMAIL": committer.email,
        }
        with (
            tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".txt") as message_file,
            self._repo.git.custom_environment(**environment),
        ):
            message_file.write(message)
            message_file.flush()
            self._git("commit", "-q", "--no-verify", "--cleanup=verbatim", "-F", message_file.name)
        return self._repo.head.commit.hexsha

    # --- plumbing -----------------------------------------------------------------------------

    def _git(self, *args: str) -> str:
        try:
            return str(self._repo.git.execute(["git", *args], strip_newline_in_stdout=False))
        except git.GitCommandError as error:
            detail = (error.stderr or "").strip().replace("\n", " ")[:500]
            raise RepoError(f"git {args[0]} failed in {self.path}: {detail}") from None


@contextlib.contextmanager
def repository_lock(repo: GitRepo) -> Iterator[None]:
    """Hold the single-writer lock of ``repo``.

    flock is released by the kernel when the holder dies, so a killed process never leaves a
    lock that blocks the next run.
    """
    lock_path = repo.path / ".git" / LOCK_FILE
    handle = open(lock_path, "a+")  # noqa: SIM115 - held across the yield
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            raise LockedError(
                f"repository {repo.path} is in use by another backupd (pid {holder}); "
                "only one backupd may write to a repository"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()
