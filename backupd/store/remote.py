"""Pushing the snapshots to a remote: how git reaches it and what its answer means.

Mostly pure functions; :meth:`GitRepo.push` runs the command. backupd pushes its branch and
its snapshot tags, never with ``--force``: a remote that moved ahead is reported, not
overwritten.

No secret ever goes on a command line (``ps`` shows it to every user) or into an environment
variable: a password reaches git through a credential helper reading a file only this user
can read, in a private folder that exists while git runs (:func:`git_access`). The command
lines and the environment hold paths only.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit, urlunsplit

from backupd.errors import CredentialError
from backupd.secret import Secret, child_environment
from backupd.store.tags import TAG_PREFIX

if TYPE_CHECKING:  # config checks URLs with this module: it must not load GitPython
    from backupd.store.gitrepo import PushOutput

CREDENTIALS_PREFIX = "backupd-git-"

# Updates refused because the remote holds commits we do not have.
_MOVED_AHEAD = ("non-fast-forward", "fetch first", "stale info")


@dataclass(frozen=True)
class PushResult:
    ok: bool
    remote: str  # the URL without credentials
    updated: tuple[str, ...] = ()  # refs the remote did not have (or had older)
    error: str | None = None


def refspecs(branch: str, remote_branch: str) -> list[str]:
    prefix = f"refs/tags/{TAG_PREFIX}"
    return [f"refs/heads/{branch}:refs/heads/{remote_branch}", f"{prefix}*:{prefix}*"]


def ssh_command(key_file: Path | None, timeout: float, known_hosts: Path | None = None) -> str:
    """GIT_SSH_COMMAND: the configured key only, a known host key only, and never a prompt.

    Without ``known_hosts`` ssh reads its usual files (~/.ssh/known_hosts of the user backupd
    runs as, /etc/ssh/ssh_known_hosts); an unknown or changed host key fails the push.
    """
    parts = ["ssh"]
    if key_file is not None:
        parts += ["-i", str(key_file), "-o", "IdentitiesOnly=yes"]
    if known_hosts is not None:
        parts += ["-o", f"UserKnownHostsFile={ssh_option_path(known_hosts)}"]
    parts += ["-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes"]
    parts += ["-o", f"ConnectTimeout={max(1, min(30, int(timeout)))}"]
    return shlex.join(parts)


def ssh_option_path(path: Path) -> str:
    """A path as the value of an ssh ``-o`` option: quoted (ssh splits such values at
    spaces) and with '%' doubled (ssh expands %-tokens in file names)."""
    return '"' + str(path).replace("%", "%%") + '"'


def push_environment(
    base: Mapping[str, str],
    key_file: Path | None,
    timeout: float,
    *,
    known_hosts: Path | None = None,
) -> dict[str, str]:
    """The environment of ``git push``: unattended (no prompts), parseable (C locale) and
    without any secret of ours (:func:`child_environment`)."""
    return {
        **child_environment(base),
        "GIT_SSH_COMMAND": ssh_command(key_file, timeout, known_hosts),
        "GIT_TERMINAL_PROMPT": "0",
        "LC_ALL": "C",
    }


def url_problem(url: str, *, password_given: bool = False) -> str | None:
    """Why ``url`` cannot be the remote's URL, or None. Never quotes the URL: it may hold
    a password, and that is the problem.
    """
    try:
        parts = urlsplit(url)
        user = parts.username
        has_password = parts.password is not None
    except ValueError:
        return None  # git judges what it cannot parse
    if "://" not in url:
        user, has_password = None, False  # scp-like user@host:path or a local path
    if has_password:
        if parts.scheme in ("http", "https"):
            instead = (
                f"write it as {parts.scheme}://USER@{parts.hostname or 'host'}/... and put the "
                "password (or token) in a file named by remote.password_file, or a systemd "
                "credential named by remote.password_credential"
            )
        else:
            instead = "remove it and give remote.ssh_key_file or remote.ssh_key_credential"
        return (
            "must not hold a password: every user on this machine can read git's command "
            f"line; {instead}"
        )
    if password_given:
        if parts.scheme not in ("http", "https"):
            return (
                "a password (remote.password, password_file, password_credential) is for "
                "http:// and https:// URLs only"
            )
        if not user:
            return (
                "needs the user name when a password is given: "
                f"{parts.scheme}://USER@{parts.hostname or 'host'}/..."
            )
    return None


def credential_line(url: str, password: str) -> str:
    """The line of git's credential store that answers for ``url`` with ``password``: the
    URL's scheme, user, host and path (so it answers with credential.useHttpPath too, and
    never to another host, such as one a redirect leads to)."""
    parts = urlsplit(url)
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]  # as written in the URL, percent-encoded
    return f"{parts.scheme}://{user}:{quote(password, safe='')}@{host}{parts.path}\n"


@dataclass(frozen=True)
class RemoteAuth:
    """What git needs to authenticate to the remote (the password is held, never shown)."""

    password: Secret | None = None
    ssh_key: Path | None = None
    known_hosts: Path | None = None


@dataclass(frozen=True)
class GitAccess:
    """How to run git against the remote: options before the subcommand (``-c …``) and its
    environment. Both hold paths, never a secret."""

    options: tuple[str, ...]
    environment: Mapping[str, str]


@contextlib.contextmanager
def git_access(
    url: str, auth: RemoteAuth, timeout: float, base: Mapping[str, str] | None = None
) -> Iterator[GitAccess]:
    """Run git against ``url`` inside this block (``base``: the environment, default ours).

    With a password, git's own credential store answers from a 0600 file in a private
    folder (0700) that is removed when the block ends. The helpers configured for the user
    are switched off then: none of them may store the password elsewhere.
    """
    environment = push_environment(
        os.environ if base is None else base, auth.ssh_key, timeout, known_hosts=auth.known_hosts
    )
    if auth.password is None:
        yield GitAccess((), environment)
        return
    try:
        folder = Path(tempfile.mkdtemp(prefix=CREDENTIALS_PREFIX))
    except OSError as error:
        raise CredentialError(f"remote.password: cannot create a private folder: {error}") from None
    try:
        store = folder / "credentials"
        try:
            descriptor = os.open(store, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
                handle.write(credential_line(url, auth.password.reveal()))
        except OSError as error:
            raise CredentialError(
                f"remote.password: cannot write {store}: {error.strerror or error}"
            ) from None
        helper = f"store --file={shlex.quote(str(store))}"
        yield GitAccess(
            ("-c", "credential.helper=", "-c", f"credential.helper={helper}"), environment
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def redact_url(url: str) -> str:
    """The URL without a password (or, for http(s), without the user, often a token)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if not parts.scheme or "@" not in parts.netloc:
        return url  # scp-like git@host:path carries no secret
    userinfo, _, host = parts.netloc.rpartition("@")
    user, has_password, _ = userinfo.partition(":")
    if parts.scheme in ("http", "https") or not user:
        shown = "***"
    else:
        shown = f"{user}:***" if has_password else user
    return urlunsplit(parts._replace(netloc=f"{shown}@{host}"))


def interpret(output: PushOutput, url: str, remote_branch: str, timeout: float) -> PushResult:
    """Turn the porcelain answer of ``git push`` into a result with a clear error."""
    shown = redact_url(url)
    if output.returncode is None:
        return PushResult(False, shown, error=f"push to {shown} timed out after {timeout:g}s")
    refs = _porcelain(output.stdout)
    updated = tuple(to for flag, to, _ in refs if flag in " *+")
    if output.returncode == 0:
        return PushResult(True, shown, updated)
    reasons = {to: reason for flag, to, reason in refs if flag == "!"}
    branch_ref = f"refs/heads/{remote_branch}"
    if any(word in reasons.get(branch_ref, "") for word in _MOVED_AHEAD):
        error = (
            f"push to {shown} rejected: its branch {remote_branch!r} has commits this "
            "repository does not have (someone else pushed there); backupd never "
            "force-pushes, so reconcile the remote by hand"
        )
    elif (tags := [to for to, reason in reasons.items() if "already exists" in reason]) != []:
        error = (
            f"push to {shown} rejected: tag {tags[0].removeprefix('refs/tags/')} already "
            "exists there with other content; backupd never overwrites a tag"
        )
    elif reasons:
        ref, reason = next(
            ((r, why) for r, why in reasons.items() if "atomic" not in why),
            next(iter(reasons.items())),
        )
        error = f"push to {shown} rejected for {ref}: {reason}"
    else:
        error = f"push to {shown} failed: {_stderr_summary(output.stderr, url, shown)}"
    return PushResult(False, shown, updated=(), error=error)


def _porcelain(stdout: str) -> list[tuple[str, str, str]]:
    """(flag, remote ref, summary) of each ref line of ``git push --porcelain``."""
    refs = []
    for line in stdout.splitlines():
        fields = line.split("\t")
        if len(fields) == 3 and len(fields[0]) == 1:
            _, _, to = fields[1].partition(":")
            refs.append((fields[0], to, fields[2]))
    return refs


def _stderr_summary(stderr: str, url: str, shown: str) -> str:
    lines = [
        line.strip()
        for line in stderr.replace(url, shown).splitlines()
        if line.strip() and not line.startswith(("hint:", "error: failed to push some refs"))
    ]
    text = " ".join(lines[:3]) or "git push failed without a message"
    return re.sub(r"\s+", " ", text)[:500]
