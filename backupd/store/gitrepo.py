"""The git repository that holds the snapshots, through the git command line.

Every git process is started through backupd/proc.py: our environment without any secret
this process holds, C messages. (No GitPython: its runner adds all of our environment back
to each git it starts, and importing it starts ``git version`` with all of it.)
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, cast

from backupd import proc
from backupd.errors import LockedError, RepoError
from backupd.logs import log

logger = logging.getLogger(__name__)

LOCK_FILE = "backupd.lock"
GITATTRIBUTES = ".gitattributes"
INIT_PREFIX = ".backupd-init-"
MESSAGE_FILE = "BACKUPD_COMMIT_MSG"
GIT_EXIT_WAIT = 30.0  # seconds to let an orphaned git of a killed run finish
STALE_LOCK_AGE = 60.0  # without /proc: a git lock file this old belongs to no running git

REPOSITORY_README = """\
# DataArts Studio backup (managed by backupd)

This repository is written by [backupd](https://pypi.org/project/backupd/): every commit
records the DataArts Factory jobs, scripts and resource definitions of one workspace, exactly
as the service held them at that moment (a snapshot split into one commit per DataArts user is
complete at its last commit). Tags `snapshot/<UTC time>` mark restore points. Do not commit
here by hand.

Layout:

    <source>/<workspace>/jobs/<job>/<job>.job          job definition (canonical JSON export)
    <source>/<workspace>/jobs/<job>/<script>.script    scripts the job uses, as exported
    <source>/<workspace>/jobs/<job>/<script>.sql|.sh|.py   readable view of a script body
    <source>/<workspace>/jobs/<job>/<other file>       anything else the export carried for
                                                       the job (resource, CDM job
                                                       definitions), byte for byte
    <source>/<workspace>/scripts/<script>.script       every script of the workspace (+ views)
    <source>/<workspace>/resources/<name>.resource     every resource definition (not the
                                                       OBS file it points to)
    <source>/<workspace>/.backupd/index.json           job metadata, and where each name is
                                                       stored
    <source>/.backupd/workspaces.json                  discovered workspaces: id -> folder, name

Names. `<job>`, `<script>`, `<name>` are the DataArts names, used as they are when every
system can store them. A name that Linux, macOS or Windows cannot use as a file name is
stored as its readable beginning, `~` and ten hexadecimal characters of its SHA-256, for
example `CON~a3dbc4b644`: a name longer than 200 bytes (about 66 Chinese characters);
holding one of `\\ / : * ? " < > | ~`, a control or invisible character; a Windows device
name in any case and with any extension (`CON`, `aux.daily`, `nul.sql`, `COM1`); ending in
a dot or a space, or starting with a space; starting with `.git` or `.backupd`; not in
Unicode NFC form; or differing only in case or accents from another name in the same
folder (`Daily_Orders` beside `daily_orders`: one keeps its name). The exact name is in
the file (its `name` field) and in `.backupd/index.json` (`path` of a job, `scripts`,
`resources`, and per job `files`: the zip entry the export gave each file where it is not
`jobs/<job>/<file>`). A path never changes while its item exists. On Windows, run
`git config --global core.longpaths true` before cloning (whole paths can exceed 260
characters).

Review history with `git log -p -- <source>/<workspace>/jobs/<job>`. The `.sql`, `.sh` and
`.py` views are derived from the `.script` files and are not part of a restore. `backupd log
--job <name>` and `backupd show <name>` take the DataArts name; a job renamed in DataArts is
recorded as renamed (`renamed: OLD → NEW` in the commit message), and `git log --follow`
and `backupd log --job` go on past the rename.

`.gitattributes` marks the views and `.backupd/` as generated, so that GitHub and GitLab
collapse them in diffs (`git diff` still shows the views, and the index only as changed),
and keeps `.job`, `.script` and `.resource` files in LF line ends on every system. backupd
leaves a `.gitattributes` you edited or removed as it is.

To restore, `backupd restore --list` shows the restore points, and
`backupd restore --workspace <name> --at <commit|tag|date> --out jobs.zip` rebuilds a zip
that DataArts Studio imports (`--import` uploads and imports it), with the export's own
layout and the exact DataArts names.
"""


REPOSITORY_GITATTRIBUTES = """\
# Written by backupd (see README.md); once you edit this file, backupd leaves it as it is.

# DataArts definitions: canonical JSON, in LF line ends on every system.
*.job       text eol=lf
*.script    text eol=lf
*.resource  text eol=lf

# Readable views of script bodies, derived from the .script beside each and never restored:
# web UIs collapse them in diffs; git diff and git log -p show them as usual.
*.sql       linguist-generated=true gitlab-generated
*.sh        linguist-generated=true gitlab-generated diff=bash
*.py        linguist-generated=true gitlab-generated diff=python

# backupd's bookkeeping (.backupd/index.json, workspaces.json): churn nobody reviews;
# diffs only say that it changed.
**/.backupd/**  linguist-generated=true gitlab-generated -diff
"""
_OLDER_GITATTRIBUTES: tuple[str, ...] = ()  # what backupd wrote before, brought up to date

# In backupd's own repository only (.git/info/attributes, over any .gitattributes): files
# are stored as their bytes are, never converted (line ends, filters), so that a restore
# gives back what the export held and the staged blob ids are those of the files.
BYTES_AS_THEY_ARE = "* -text -filter -ident -working-tree-encoding"

# What backupd wrote before; a README still holding one of these is brought up to date.
_README_BEFORE_NAME_MAPPING = """\
# DataArts Studio backup (managed by backupd)

This repository is written by [backupd](https://pypi.org/project/backupd/): every commit
records the DataArts Factory jobs, scripts and resource definitions of one workspace, exactly
as the service held them at that moment (a snapshot split into one commit per DataArts user is
complete at its last commit). Tags `snapshot/<UTC time>` mark restore points. Do not commit
here by hand.

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

To restore, `backupd restore --list` shows the restore points, and
`backupd restore --workspace <name> --at <commit|tag|date> --out jobs.zip` rebuilds a zip
that DataArts Studio imports (`--import` uploads and imports it).
"""
_README_BEFORE_GITATTRIBUTES = """\
# DataArts Studio backup (managed by backupd)

This repository is written by [backupd](https://pypi.org/project/backupd/): every commit
records the DataArts Factory jobs, scripts and resource definitions of one workspace, exactly
as the service held them at that moment (a snapshot split into one commit per DataArts user is
complete at its last commit). Tags `snapshot/<UTC time>` mark restore points. Do not commit
here by hand.

Layout:

    <source>/<workspace>/jobs/<job>/<job>.job          job definition (canonical JSON export)
    <source>/<workspace>/jobs/<job>/<script>.script    scripts the job uses, as exported
    <source>/<workspace>/jobs/<job>/<script>.sql|.sh|.py   readable view of a script body
    <source>/<workspace>/jobs/<job>/<other file>       anything else the export carried for
                                                       the job (resource, CDM job
                                                       definitions), byte for byte
    <source>/<workspace>/scripts/<script>.script       every script of the workspace (+ views)
    <source>/<workspace>/resources/<name>.resource     every resource definition (not the
                                                       OBS file it points to)
    <source>/<workspace>/.backupd/index.json           job metadata, and where each name is
                                                       stored
    <source>/.backupd/workspaces.json                  discovered workspaces: id -> folder, name

Names. `<job>`, `<script>`, `<name>` are the DataArts names, used as they are when every
system can store them. A name that Linux, macOS or Windows cannot use as a file name is
stored as its readable beginning, `~` and ten hexadecimal characters of its SHA-256, for
example `CON~a3dbc4b644`: a name longer than 200 bytes (about 66 Chinese characters);
holding one of `\\ / : * ? " < > | ~`, a control or invisible character; a Windows device
name in any case and with any extension (`CON`, `aux.daily`, `nul.sql`, `COM1`); ending in
a dot or a space, or starting with a space; starting with `.git` or `.backupd`; not in
Unicode NFC form; or differing only in case or accents from another name in the same
folder (`Daily_Orders` beside `daily_orders`: one keeps its name). The exact name is in
the file (its `name` field) and in `.backupd/index.json` (`path` of a job, `scripts`,
`resources`, and per job `files`: the zip entry the export gave each file where it is not
`jobs/<job>/<file>`). A path never changes while its item exists. On Windows, run
`git config --global core.longpaths true` before cloning (whole paths can exceed 260
characters).

Review history with `git log -p -- <source>/<workspace>/jobs/<job>`. The `.sql`, `.sh` and
`.py` views are derived from the `.script` files and are not part of a restore. `backupd log
--job <name>` and `backupd show <name>` take the DataArts name.

To restore, `backupd restore --list` shows the restore points, and
`backupd restore --workspace <name> --at <commit|tag|date> --out jobs.zip` rebuilds a zip
that DataArts Studio imports (`--import` uploads and imports it), with the export's own
layout and the exact DataArts names.
"""
_OLDER_READMES = (_README_BEFORE_NAME_MAPPING, _README_BEFORE_GITATTRIBUTES)


# The repository's own settings, as `git config --list -z` shows them ("key\nvalue").
REPOSITORY_CONFIG = (
    # Hooks or signing configured globally must not block an unattended daemon.
    "commit.gpgsign\nfalse",
    "core.quotepath\nfalse",
    # Tens of thousands of files: each commit rewrites only a small split of the index
    # instead of all of it.
    "core.splitindex\ntrue",
    # ... and the whole of it (a shared index) only now and then, leaving the one before
    # unused: kept two weeks by default, and then removed only when another is written, a
    # first snapshot of 8 x 8,000 jobs left 84 MB of them beside a 41 MB index.
    "splitindex.sharedindexexpire\nnow",
)


@dataclass(frozen=True)
class Identity:
    name: str
    email: str


@dataclass(frozen=True)
class TagInfo:
    name: str  # without refs/tags/
    commit: str  # the commit it points at (peeled)
    created: datetime | None = None  # tagger date; None for a lightweight tag


@dataclass(frozen=True)
class CommitInfo:
    sha: str
    time: datetime  # committer date (UTC): when backupd recorded the snapshot
    author: str  # "Name <email>"
    subject: str
    tags: tuple[str, ...] = ()


# Fields separated by 0x1f; -z ends each record with NUL (subjects hold neither).
_LOG_FORMAT = "%H%x1f%ct%x1f%an <%ae>%x1f%s%x1f%D"


def _commit_info(record: str) -> CommitInfo:
    sha, when, author, subject, refs = record.strip("\n").split("\x1f")
    tags = tuple(ref.removeprefix("tag: ") for ref in refs.split(", ") if ref.startswith("tag: "))
    return CommitInfo(sha, datetime.fromtimestamp(int(when), UTC), author, subject, tags)


@dataclass(frozen=True)
class PushOutput:
    returncode: int | None  # None: killed after the timeout
    stdout: str
    stderr: str


class GitRepo:
    """A working tree with one branch of snapshots. Open per run; close when done."""

    def __init__(self, path: Path, branch: str) -> None:
        self.branch = branch
        self.path = Path(os.path.normpath(path.absolute()))  # as given, made absolute
        self._staged = 0  # paths staged since the last commit (see pack_trees)

    # --- opening ------------------------------------------------------------------------------

    @classmethod
    def open(cls, path: Path, *, branch: str) -> GitRepo:
        """Open the repository, creating an empty one when it does not exist."""
        if not (path / ".git").exists():
            _create_repository(path, branch)
        problem = _not_a_repository(path)
        if problem is not None:
            raise RepoError(f"cannot open git repository {path}: {problem}")
        return cls(path, branch)

    @classmethod
    def open_existing(cls, path: Path, *, branch: str) -> GitRepo:
        """Open a repository that backupd already wrote to, for reading or pushing only."""
        if _not_a_repository(path) is not None:
            raise RepoError(f"{path} is not a backupd repository (no snapshot yet?)")
        instance = cls(path, branch)
        if not instance.has_commits():
            instance.close()
            raise RepoError(f"{path} holds no snapshot yet")
        return instance

    def prepare(self, identity: Identity) -> None:
        """Recover from a killed run, then make sure there is a first commit (a README and
        the .gitattributes) and the snapshot branch is checked out. Call with the lock held.
        """
        self.recover()
        self._configure()
        if not self.has_commits():
            (self.path / "README.md").write_text(REPOSITORY_README, encoding="utf-8")
            (self.path / GITATTRIBUTES).write_text(REPOSITORY_GITATTRIBUTES, encoding="utf-8")
            self.stage(["README.md", GITATTRIBUTES])
            self.commit("backupd: initialise repository", author=identity, committer=identity)
        self._checkout_branch()
        self._update_readme(identity)
        self._update_gitattributes(identity)

    def _update_readme(self, identity: Identity) -> None:
        """Bring a README that backupd wrote, unchanged since, up to date (its own commit)."""
        readme = self.path / "README.md"
        try:
            current = readme.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return
        if current == REPOSITORY_README or current not in _OLDER_READMES:
            return
        readme.write_text(REPOSITORY_README, encoding="utf-8")
        self.stage(["README.md"])
        self.commit("backupd: README brought up to date", author=identity, committer=identity)

    def _update_gitattributes(self, identity: Identity) -> None:
        """Add the .gitattributes to a repository an older backupd made, once, in a commit of
        its own; bring one that backupd wrote, unchanged since, up to date. One that someone
        edited, or removed after backupd added it, is left as it is."""
        path = self.path / GITATTRIBUTES
        try:
            current: str | None = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            current = None
        except (OSError, UnicodeDecodeError):
            return
        if current == REPOSITORY_GITATTRIBUTES:
            return
        if current is None:
            if self._git("rev-list", "-1", "HEAD", "--", GITATTRIBUTES).strip():
                return  # it was there once: removed on purpose
            subject = "backupd: .gitattributes: views and bookkeeping marked as generated"
        elif current in _OLDER_GITATTRIBUTES:
            subject = "backupd: .gitattributes brought up to date"
        else:
            return
        path.write_text(REPOSITORY_GITATTRIBUTES, encoding="utf-8")
        self.stage([GITATTRIBUTES])
        self.commit(subject, author=identity, committer=identity)

    def recover(self) -> None:
        """Undo what a killed run can leave behind: git lock files and a half-staged index.

        Why removing a lock file is safe here: only backupd writes this repository and we
        hold its lock, so no other backupd is committing in it. The kernel released that
        lock when the previous holder died, but a git child of the killed process may still
        be finishing (a SIGKILL of the parent alone does not stop it), and a push of another
        run proceeds outside the lock; so lock files count as stale only once no live git
        process works in this tree. If one still does after a while, its locks are left
        alone: a git step that needs them then fails with git's own message.
        """
        locks = self._git_lock_files()
        if locks and self._wait_for_git_processes(locks):
            for lock in self._git_lock_files():
                lock.unlink(missing_ok=True)
                log(logger, "repo.stale_lock_removed", level=logging.WARNING, path=str(lock))
        staged = self._run(["diff-index", "--cached", "--quiet", "HEAD", "--"]).returncode
        # 1: the index differs from HEAD; another failure is one only once there is a HEAD.
        if staged == 1 or (staged != 0 and self.has_commits()):
            # A killed run may have staged part of a workspace; a later commit of another
            # workspace must not carry it. Index := HEAD; the working tree is reset per
            # workspace folder before each apply. (Asked first: a reset also looks at every
            # file of the working tree, 0.15 s at 50,000.)
            self._git("reset", "-q")

    def _git_lock_files(self) -> list[Path]:
        git_dir = self.path / ".git"
        found = [
            *git_dir.glob("*.lock"),
            *git_dir.glob("refs/**/*.lock"),
            *git_dir.glob("logs/**/*.lock"),
        ]
        return sorted(p for p in found if p.name != LOCK_FILE and p.is_file())

    def _wait_for_git_processes(self, locks: Sequence[Path]) -> bool:
        """True once no git process works in this tree (False: some still do)."""
        deadline = time.monotonic() + GIT_EXIT_WAIT
        while True:
            pids = live_git_processes(self.path)
            if pids is None:
                return _all_old(locks)
            if not pids:
                return True
            if time.monotonic() > deadline:
                log(
                    logger,
                    "repo.git_running",
                    level=logging.WARNING,
                    pids=",".join(map(str, pids)),
                    locks=",".join(lock.name for lock in locks),
                )
                return False
            time.sleep(0.1)

    def _configure(self) -> None:
        # Read once, set only what differs: a run opens the repository, and each git call
        # costs a process.
        current = self._git("config", "--local", "--list", "-z").split("\0")
        for setting in REPOSITORY_CONFIG:
            if setting not in current:
                self._git("config", *setting.split("\n", 1))
        self._store_bytes_as_they_are()

    def _store_bytes_as_they_are(self) -> None:
        """Make sure ``.git/info/attributes`` holds ``BYTES_AS_THEY_ARE`` (other lines kept).

        The .gitattributes asks clones for LF line ends in definitions; backupd itself must
        store every file as exported (a definition that does not parse is kept byte for
        byte), and a blob it stored ahead must keep the id git computes from the file.
        """
        info = self.path / ".git" / "info"
        attributes = info / "attributes"
        try:
            current = attributes.read_text(encoding="utf-8")
        except FileNotFoundError:
            current = ""
        except (OSError, UnicodeDecodeError) as error:
            raise RepoError(f"cannot read {attributes}: {error}") from None
        if BYTES_AS_THEY_ARE in current.splitlines():
            return
        try:
            info.mkdir(exist_ok=True)
            separator = "" if not current or current.endswith("\n") else "\n"
            attributes.write_text(f"{current}{separator}{BYTES_AS_THEY_ARE}\n", encoding="utf-8")
        except OSError as error:
            raise RepoError(f"cannot write {attributes}: {error}") from None

    def _checkout_branch(self) -> None:
        current = self._run(["symbolic-ref", "-q", "HEAD"])  # fails when HEAD is detached
        if (
            current.returncode == 0
            and current.stdout.strip() == f"refs/heads/{self.branch}".encode()
        ):
            return
        exists = self._run(["show-ref", "--verify", "--quiet", f"refs/heads/{self.branch}"])
        if exists.returncode == 0:
            self._git("checkout", "-q", self.branch)
        else:
            self._git("checkout", "-q", "-b", self.branch)

    def close(self) -> None:
        """Nothing to release (kept so that callers need not know)."""

    def __enter__(self) -> GitRepo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- queries ------------------------------------------------------------------------------

    # Queries go through the git command, never a library's object database: that keeps one
    # long-lived cat-file process per repository, which two threads must not talk to at once.

    def has_commits(self) -> bool:
        return self.head() is not None

    def head(self) -> str | None:
        return self.resolve_commit("HEAD")

    def tracked_files(self, folder: str) -> list[str]:
        """Files under ``folder`` in HEAD (POSIX, relative to the repository root)."""
        if not self.has_commits():
            return []
        output = self._git("ls-tree", "-r", "--name-only", "-z", "HEAD", "--", folder)
        return [path for path in output.split("\0") if path]

    # --- history (read-only; used by restore) --------------------------------------------------

    def branch_ref(self) -> str:
        """The snapshot branch: local, else as fetched from origin (a fresh clone), else HEAD."""
        for ref in (f"refs/heads/{self.branch}", f"refs/remotes/origin/{self.branch}"):
            if self.resolve_commit(ref) is not None:
                return ref
        return "HEAD"

    def resolve_commit(self, rev: str) -> str | None:
        """The full sha of the commit ``rev`` names (sha, tag, branch, HEAD~2 …), or None."""
        if not rev or rev.startswith("-"):
            return None
        try:
            output = self._git(
                "rev-parse", "--verify", "--quiet", "--end-of-options", rev + "^{commit}"
            )
        except RepoError:
            return None
        return output.strip() or None

    def commit_at(self, ref: str, moment: datetime) -> str | None:
        """The commit ``ref`` pointed at at ``moment``: its newest first-parent commit not after."""
        epoch = int(moment.timestamp())
        output = self._git("rev-list", "-1", "--first-parent", f"--min-age={epoch}", ref, "--")
        return output.strip() or None

    def history(self, ref: str, folder: str | None = None) -> list[CommitInfo]:
        """First-parent commits of ``ref`` (touching ``folder``, if given), newest first."""
        return self.log(ref, [folder] if folder is not None else [], first_parent=True)

    def last_commit_touching(self, rev: str, folder: str) -> str | None:
        """The newest commit reachable from ``rev`` that changed ``folder``."""
        output = self._git("rev-list", "-1", "--first-parent", rev, "--", folder)
        return output.strip() or None

    def folder_exists(self, rev: str, folder: str) -> bool:
        try:
            self._git("cat-file", "-e", f"{rev}:{folder}")
        except RepoError:
            return False
        return True

    def list_files(self, rev: str, folder: str) -> dict[str, str]:
        """Blob ids of every file under ``folder`` at ``rev``: path relative to the folder → oid."""
        return dict(self.iter_files(rev, folder))

    def iter_files(self, rev: str, folder: str) -> Iterator[tuple[str, str]]:
        """(path relative to ``folder``, blob id) of every file under it at ``rev``, streamed
        from git rather than read whole (a large workspace lists ~50,000 files)."""
        literal = f":(literal){folder}"  # job and workspace names are not patterns
        prefix = folder.rstrip("/") + "/"
        for record in self._records("ls-tree", "-r", "-z", "--full-tree", rev, "--", literal):
            meta, _, raw_path = record.partition(b"\t")
            _mode, kind, oid = meta.split(b" ")
            path = raw_path.decode("utf-8", "surrogateescape")
            if kind == b"blob" and path.startswith(prefix):
                yield path[len(prefix) :], oid.decode("ascii")

    def read_blobs(self, oids: Iterable[str]) -> dict[str, bytes]:
        """Contents of many blobs from one ``git cat-file --batch`` (not a process per file)."""
        wanted = list(dict.fromkeys(oids))
        if not wanted:
            return {}
        try:
            result = proc.run(
                ["git", "cat-file", "--batch"],
                cwd=self.path,
                input="".join(f"{oid}\n" for oid in wanted).encode("ascii"),
                timeout=600,
                env=GIT_LOCALE,
            )
        except OSError as error:
            raise RepoError(f"git cat-file failed in {self.path}: {error}") from None
        if result.returncode != 0:
            what = "timed out" if result.timed_out else result.error_line()
            raise RepoError(f"git cat-file failed in {self.path}: {what}")
        data, position, blobs = result.stdout, 0, {}
        for oid in wanted:
            end = data.index(b"\n", position)
            header = data[position:end].split(b" ")
            if len(header) != 3:
                raise RepoError(f"git cat-file: object {oid} is missing from {self.path}")
            size = int(header[2])
            blobs[oid] = data[end + 1 : end + 1 + size]
            position = end + 1 + size + 1  # content is followed by a newline
        return blobs

    def log(
        self,
        revision: str,
        paths: Sequence[str],
        *,
        max_count: int | None = None,
        diff_filter: str | None = None,
        first_parent: bool = False,
    ) -> list[CommitInfo]:
        """Commits on ``revision`` touching ``paths``, newest first (``git log -- paths``)."""
        options = [f"--max-count={max_count}"] if max_count else []
        if first_parent:
            options.append("--first-parent")
        if diff_filter:
            options.append(f"--diff-filter={diff_filter}")
        literal = [f":(literal){path}" for path in paths]  # job names are not patterns
        output = self._git(
            "log", "-z", f"--format={_LOG_FORMAT}", *options, revision, "--", *literal
        )
        return [_commit_info(record) for record in output.split("\0") if record.strip()]

    def commit_info(self, commit: str) -> CommitInfo:
        return _commit_info(self._git("log", "-1", f"--format={_LOG_FORMAT}", commit, "--"))

    def message(self, commit: str) -> str:
        """The whole message of ``commit`` (subject and body)."""
        return self._git("log", "-1", "--format=%B", commit, "--")

    def is_ancestor(self, ancestor: str, commit: str) -> bool:
        """Whether ``ancestor`` is ``commit`` or one of its ancestors."""
        done = self._run(["merge-base", "--is-ancestor", ancestor, commit])
        if done.returncode not in (0, 1):
            detail = done.stderr.decode("utf-8", "replace").strip().replace("\n", " ")[:500]
            raise RepoError(f"git merge-base failed in {self.path}: {detail}")
        return done.returncode == 0

    def read_file(self, commit: str, path: str) -> bytes | None:
        """A file's bytes as of ``commit``, or None when it did not exist then."""
        result = self._run(["cat-file", "blob", f"{commit}:{path}"])
        return result.stdout if result.returncode == 0 else None

    # --- changes ------------------------------------------------------------------------------

    def tree_id(self, rev: str, folder: str) -> str | None:
        """The id of ``folder``'s tree at ``rev`` (changes whenever anything under it does)."""
        try:
            return self._git("rev-parse", "--verify", "--quiet", f"{rev}:{folder}").strip() or None
        except RepoError:
            return None

    def folder_dirty(self, folder: str) -> bool:
        """Whether ``folder`` differs from HEAD in the index or working tree (a crashed run)."""
        output = self._git(
            "--literal-pathspecs",
            "--no-optional-locks",  # a check: it must not need to write the index
            "status",
            "--porcelain",
            "-z",
            "--untracked-files=all",
            "--ignored=matching",
            "--",
            folder,
        )
        return bool(output.strip("\0"))

    def reset_folder(self, folder: str) -> None:
        """Make ``folder`` equal HEAD again: undo what a crashed run may have left half-done."""
        if self.tracked_files(folder):
            self._git("reset", "-q", "HEAD", "--", folder)
            self._git("checkout", "-q", "HEAD", "--", folder)
        else:
            self._git("rm", "-r", "-q", "--cached", "--ignore-unmatch", "--", folder)
        self._git("clean", "-q", "-f", "-d", "-x", "--", folder)

    def stage(self, paths: Iterable[str], *, blobs_stored: bool = False) -> None:
        """Stage exactly these paths (additions, modifications and deletions), in one git call.

        ``blobs_stored``: their contents are in the object store already (a BlobWriter
        stored them); only their ids are recorded. A commit refuses ids of missing objects.
        """
        # Without stored blobs, a threshold of 1 byte sends every blob through git's bulk
        # check-in: one pack per call instead of a loose object (a file) per blob.
        if blobs_stored:
            command = ["git", "update-index", "--info-only", *STAGE_FLAGS]
        else:
            command = ["git", "-c", "core.bigFileThreshold=1", "update-index", *STAGE_FLAGS]
        # Plumbing, not `git add`: paths are taken literally (no pathspec matching, which
        # costs O(files x paths)); a path whose file is gone leaves the index. The paths are
        # streamed to it: a first snapshot of a large workspace stages ~50,000.
        counted = _Counted(path.encode("utf-8") + b"\0" for path in paths)
        chunks = _chunks(counted)
        first = next(chunks, None)
        if first is None:
            return
        try:
            with tempfile.TemporaryFile() as errors:
                with proc.started(
                    command,
                    cwd=self.path,
                    stdin=proc.PIPE,
                    stdout=proc.DEVNULL,
                    stderr=errors,  # a file: git cannot block on it while we write
                    env=GIT_LOCALE,
                ) as process:
                    stdin = cast(IO[bytes], process.stdin)  # a pipe: stdin=PIPE
                    try:
                        with stdin:
                            for chunk in itertools.chain([first], chunks):
                                stdin.write(chunk)
                    except BrokenPipeError:
                        pass  # git stopped reading: its exit status and message tell why
                    code = process.wait(timeout=3600)
                if code != 0:
                    errors.seek(0)
                    text = errors.read(4000).decode("utf-8", "replace")
                    detail = text.strip().replace("\n", " ")[:500]
                    raise RepoError(f"git add failed in {self.path} (update-index): {detail}")
        except (OSError, proc.ChildError) as error:
            raise RepoError(f"git add failed in {self.path} (update-index): {error}") from None
        self._staged += counted.count

    def commit(
        self, message: str, *, author: Identity, committer: Identity, folder: str | None = None
    ) -> str | None:
        """Commit what is staged; None when nothing is (never an empty commit).

        With ``folder``, refuse when anything outside it is staged: one workspace's commit
        must never carry another's changes.
        """
        environment = {
            "GIT_AUTHOR_NAME": author.name,
            "GIT_AUTHOR_EMAIL": author.email,
            "GIT_COMMITTER_NAME": committer.name,
            "GIT_COMMITTER_EMAIL": committer.email,
        }
        # Inside .git, not the temp folder: a killed run leaves no stray file, the next
        # commit overwrites it.
        message_file = self.path / ".git" / MESSAGE_FILE
        message_file.write_text(message, encoding="utf-8")
        # Plumbing, not `git commit`: that refreshes the whole index first (an lstat of
        # every file of every workspace, ~0.3 s at 200,000 files) and may start a gc.
        # write-tree refuses ids of objects that are not in the repository.
        staged, self._staged = self._staged, 0
        if folder is not None and staged >= PACK_TREES_FROM:
            self.pack_trees(folder)
        parent, parent_tree = self._head_and_tree()
        tree = self._git("write-tree").strip()
        if parent is not None:
            # Trees compared, not the index read again: a tree diff skips unchanged subtrees,
            # while every read of the index costs the size of the whole repository.
            if tree == parent_tree:
                return None
            if folder is not None:
                stray = self._changed_between(parent_tree, tree, outside=folder, limit=1)
                if stray:
                    raise RepoError(
                        f"the index holds changes outside {folder} ({stray[0]}); "
                        "refusing to commit them together"
                    )
        parents = ("-p", parent) if parent else ()
        sha = self._git(
            "commit-tree", *parents, "-F", str(message_file), tree, env=environment
        ).strip()
        subject = message.split("\n", 1)[0]
        # Moves the branch HEAD points to, only if it still is where the commit started.
        self._git("update-ref", "-m", f"commit: {subject}", "HEAD", sha, parent or "0" * 40)
        return sha

    def _head_and_tree(self) -> tuple[str | None, str]:
        """HEAD's commit and its tree, in one git call; (None, "") before the first commit."""
        found = self._run(["rev-parse", "HEAD^{commit}", "HEAD^{tree}", "--"])
        ids = [word for word in found.stdout.decode("ascii", "replace").split() if word != "--"]
        if found.returncode != 0 or len(ids) != 2:
            return None, ""
        return ids[0], ids[1]

    def pack_trees(self, folder: str) -> None:
        """Write the trees of ``folder`` as the index holds it into one pack.

        write-tree writes every tree it makes as a file of its own (a loose object): a first
        snapshot of 1,000 jobs is 1,000 job folders, so 1,000 files, 0.3 s on a busy disk.
        git fast-import writes the same trees into one pack when given the folder's files
        as a commit of a scratch ref; write-tree then finds them all and writes only the
        trees above the folder. Only a shortcut: when it fails, write-tree writes them all.
        """
        head = f"commit {SCRATCH_REF}\ncommitter backupd <backupd> 0 +0000\ndata 0\n"
        pieces = itertools.chain(
            [head.encode("ascii")],
            (
                b"M %s %s %s\n" % (mode, oid, _c_quoted(path))
                for mode, oid, path in self._index_entries(folder)
            ),
            [b"\ndone\n"],
        )
        command = ["git", "fast-import", "--quiet", "--force", "--done"]
        try:
            with tempfile.TemporaryFile() as errors:
                with proc.started(
                    command,
                    cwd=self.path,
                    stdin=proc.PIPE,
                    stdout=proc.DEVNULL,
                    stderr=errors,
                    env=GIT_LOCALE,
                ) as process:
                    stdin = cast(IO[bytes], process.stdin)
                    try:
                        with stdin:
                            for chunk in _chunks(pieces):
                                stdin.write(chunk)
                    except BrokenPipeError:
                        pass
                    code = process.wait(timeout=3600)
                errors.seek(0)
                detail = errors.read(2000).decode("utf-8", "replace").strip()
            self._run(["update-ref", "-d", SCRATCH_REF])
            if code != 0:
                raise RepoError(f"fast-import: {detail[:300]}")
        except (OSError, proc.ChildError, RepoError) as error:
            log(logger, "repo.pack_trees_failed", level=logging.WARNING, error=str(error))

    def _index_entries(self, folder: str) -> Iterator[tuple[bytes, bytes, bytes]]:
        """(mode, object id, path) of every index entry below ``folder``."""
        for record in self._records("ls-files", "-s", "-z", "--", f"{folder}/"):
            if record:
                info, _, path = record.partition(b"\t")
                mode, oid, _stage = info.split(b" ")
                yield mode, oid, path

    def housekeep(self) -> None:
        """``git gc --auto``, once after a run's commits (which skip it): packs loose objects
        and merges packs when git's thresholds say so, in the background as git does."""
        try:
            self._git("gc", "--auto", "--quiet")
        except RepoError as error:  # the commits stand; the next run tries again
            log(logger, "repo.gc_failed", level=logging.WARNING, error=str(error))

    def _changed_between(self, old: str, new: str, *, outside: str, limit: int) -> list[str]:
        """Up to ``limit`` paths that differ between two trees, outside a folder."""
        args = ["diff-tree", "-r", "--name-only", "-z", "--no-renames", old, new]
        args += ["--", ".", f":(exclude,literal){outside}"]
        with contextlib.closing(self._records(*args)) as records:  # closing ends git early
            found = itertools.islice((path for path in records if path), limit)
            return [path.decode("utf-8", "surrogateescape") for path in found]

    # --- tags -------------------------------------------------------------------------------

    def tags(self, prefix: str) -> list[TagInfo]:
        """Annotated tags under ``refs/tags/<prefix>``, newest tagger date first."""
        output = self._git(
            "for-each-ref",
            "--sort=-taggerdate",
            "--format=%(refname:strip=2)%00%(taggerdate:unix)%00%(*objectname)%00%(objectname)",
            f"refs/tags/{prefix.rstrip('/')}",
        )
        tags = []
        for line in output.splitlines():
            name, when, peeled, target = line.split("\0")
            created = datetime.fromtimestamp(int(when), UTC) if when else None
            tags.append(TagInfo(name, peeled or target, created))
        return tags

    def create_tag(self, name: str, message: str, *, tagger: Identity, when: datetime) -> None:
        """An annotated tag on HEAD, dated ``when`` (the tagger date is the snapshot time)."""
        environment = {
            "GIT_COMMITTER_NAME": tagger.name,
            "GIT_COMMITTER_EMAIL": tagger.email,
            "GIT_COMMITTER_DATE": f"{int(when.timestamp())} +0000",
        }
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", suffix=".txt") as message_file:
            message_file.write(message)
            message_file.flush()
            self._git(
                "tag",
                "-a",
                "--cleanup=verbatim",
                "-F",
                message_file.name,
                name,
                "HEAD",
                env=environment,
            )

    # --- remote -------------------------------------------------------------------------------

    def push(
        self,
        url: str,
        refspecs: Sequence[str],
        *,
        environment: Mapping[str, str],
        timeout: float,
        options: Sequence[str] = (),
    ) -> PushOutput:
        """``git push --porcelain --atomic``; never raises for a failed or timed-out push.

        ``options`` go before the subcommand (``-c name=value``); like ``url`` and
        ``environment`` they are visible to other users and must hold no secret.
        git runs in its own session so that a timeout kills it together with ssh (killing
        git alone would leave ssh holding the pipes open).
        """
        command = ["git", *options, "-C", str(self.path), "push", "--porcelain", "--atomic", url]
        done = proc.run([*command, *refspecs], timeout=timeout, env=environment)
        return PushOutput(
            done.returncode,
            done.stdout.decode("utf-8", "replace"),
            done.stderr.decode("utf-8", "replace"),
        )

    # --- plumbing -----------------------------------------------------------------------------

    def _records(self, *args: str) -> Generator[bytes]:
        """git's NUL-terminated output records, streamed; closing the iterator early ends git."""
        with proc.started(["git", *args], cwd=self.path, env=GIT_LOCALE) as process:
            assert process.stdout is not None  # noqa: S101 - stdout=PIPE
            pending = b""
            try:
                while chunk := process.stdout.read(1 << 16):
                    *complete, pending = (pending + chunk).split(b"\0")
                    yield from complete
            finally:
                if process.poll() is None:  # closed before the end: nothing more is wanted
                    proc.kill_session(process)
            stderr = process.stderr.read() if process.stderr is not None else b""
            process.wait()
        if process.returncode != 0:
            detail = stderr.decode("utf-8", "replace").strip().replace("\n", " ")[:500]
            raise RepoError(f"git {_subcommand(args)} failed in {self.path}: {detail}")

    def _git(self, *args: str, env: Mapping[str, str] | None = None) -> str:
        """Run git in the repository; its output (raises RepoError when git fails). ``env``
        adds variables for this call only."""
        result = self._run(args, env)
        if result.returncode != 0:
            text = result.stderr.decode("utf-8", "replace")
            detail = text.strip().replace("\n", " ")[:500]
            raise RepoError(f"git {_subcommand(args)} failed in {self.path}: {detail}")
        return result.stdout.decode("utf-8", "surrogateescape")

    def _run(self, args: Sequence[str], env: Mapping[str, str] | None = None) -> proc.Finished:
        try:
            return proc.run(["git", *args], cwd=self.path, env={**GIT_LOCALE, **(env or {})})
        except OSError as error:
            raise RepoError(f"git {_subcommand(args)} failed in {self.path}: {error}") from None


STAGE_FLAGS = ("--add", "--remove", "-z", "--stdin")
# A commit staging this many paths or more has its folder's trees packed first (pack_trees).
PACK_TREES_FROM = 1000
SCRATCH_REF = "refs/backupd/trees"  # the ref pack_trees' commit goes to (deleted right after)


class _Counted:
    """Passes items through, counting them."""

    def __init__(self, items: Iterable[bytes]) -> None:
        self._items = items
        self.count = 0

    def __iter__(self) -> Iterator[bytes]:
        for item in self._items:
            self.count += 1
            yield item


_ESCAPED = re.compile(rb'["\\\x00-\x1f\x7f]')


def _c_quoted(path: bytes) -> bytes:
    """``path`` in C-style quotes, as fast-import reads a path that may hold anything."""
    if not _ESCAPED.search(path):
        return b'"' + path + b'"'
    out = bytearray(b'"')
    for byte in path:
        if byte in (0x22, 0x5C):  # " and \
            out += b"\\" + bytes([byte])
        elif byte < 0x20 or byte == 0x7F:
            out += b"\\%03o" % byte
        else:
            out.append(byte)
    out += b'"'
    return bytes(out)


GIT_LOCALE = {"LANGUAGE": "C", "LC_ALL": "C"}  # git's messages in English, for our errors


def git_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a local git command: ours without our secrets, messages in
    English, plus ``extra``."""
    return proc.environment({**GIT_LOCALE, **(extra or {})})


def _chunks(pieces: Iterable[bytes], size: int = 1 << 16) -> Iterator[bytes]:
    """``pieces`` joined into chunks of about ``size`` bytes."""
    buffer = bytearray()
    for piece in pieces:
        buffer += piece
        if len(buffer) >= size:
            yield bytes(buffer)
            buffer.clear()
    if buffer:
        yield bytes(buffer)


def _subcommand(args: Sequence[str]) -> str:
    """The git command of ``args`` (after any ``-c name=value`` settings)."""
    rest = list(args)
    while len(rest) > 1 and rest[0].startswith("-"):
        rest = rest[2:] if rest[0] == "-c" else rest[1:]
    return rest[0] if rest else "?"


def _not_a_repository(path: Path) -> str | None:
    """Why ``path`` is not a git working tree (its own ``.git``, not a parent's), or None."""
    try:
        result = proc.run(
            ["git", "--git-dir", str(path / ".git"), "rev-parse", "--git-dir"], env=GIT_LOCALE
        )
    except OSError as error:
        return str(error)
    if result.returncode != 0:
        return result.stderr.decode("utf-8", "replace").strip().replace("\n", " ")[:500]
    return None


def _create_repository(path: Path, branch: str) -> None:
    """``git init`` elsewhere, then move ``.git`` in with one rename: a run killed while
    initialising leaves either no repository or a complete one, never half of one."""
    path.mkdir(parents=True, exist_ok=True)
    for leftover in path.glob(f"{INIT_PREFIX}*"):
        shutil.rmtree(leftover, ignore_errors=True)
    if any(path.iterdir()):
        raise RepoError(f"{path} exists, is not empty and is not a git repository")
    scratch = Path(tempfile.mkdtemp(prefix=INIT_PREFIX, dir=path))
    try:
        result = proc.run(
            ["git", "init", "-q", f"--initial-branch={branch}", str(scratch)], env=GIT_LOCALE
        )
        if result.returncode != 0:
            detail = result.stderr.decode("utf-8", "replace").strip().replace("\n", " ")[:500]
            raise RepoError(f"git init failed in {path}: {detail}")
        try:
            (scratch / ".git").rename(path / ".git")
        except OSError:
            if not (path / ".git").is_dir():
                raise
            return  # another process created it first: use that one
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log(logger, "repo.created", path=str(path))


def live_git_processes(worktree: Path) -> list[int] | None:
    """Ids of live git processes working in ``worktree``; None when /proc cannot tell."""
    proc = Path("/proc")
    if not (proc / "self" / "cwd").exists():
        return None
    target = worktree.resolve()
    pids: list[int] = []
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if not (entry / "comm").read_text().startswith("git"):
                continue
            cwd = (entry / "cwd").readlink()
        except OSError:
            continue  # gone meanwhile, a zombie, or not ours to inspect
        if cwd == target or cwd.is_relative_to(target):
            pids.append(int(entry.name))
    return pids


def _all_old(locks: Sequence[Path]) -> bool:
    """Without /proc, only lock files older than any git command can be declared stale."""
    now = time.time()
    ages = []
    for lock in locks:
        with contextlib.suppress(FileNotFoundError):
            ages.append(now - lock.stat().st_mtime)
    return all(age >= STALE_LOCK_AGE for age in ages)


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
