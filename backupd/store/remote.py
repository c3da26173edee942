"""Pushing the snapshots to a remote: the command's environment and what its answer means.

Pure functions; :meth:`GitRepo.push` runs the command. backupd pushes its branch and its
snapshot tags, never with ``--force``: a remote that moved ahead is reported, not overwritten.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from backupd.store.gitrepo import PushOutput
from backupd.store.tags import TAG_PREFIX

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


def ssh_command(key_file: Path | None, timeout: float) -> str:
    """GIT_SSH_COMMAND: the configured key only, and never a prompt."""
    parts = ["ssh"]
    if key_file is not None:
        parts += ["-i", str(key_file), "-o", "IdentitiesOnly=yes"]
    parts += ["-o", "BatchMode=yes", "-o", f"ConnectTimeout={max(1, min(30, int(timeout)))}"]
    return shlex.join(parts)


def push_environment(
    base: Mapping[str, str], key_file: Path | None, timeout: float
) -> dict[str, str]:
    """The environment of ``git push``: unattended (no prompts) and parseable (C locale)."""
    return {
        **base,
        "GIT_SSH_COMMAND": ssh_command(key_file, timeout),
        "GIT_TERMINAL_PROMPT": "0",
        "LC_ALL": "C",
    }


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
