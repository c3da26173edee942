"""The one place that starts child processes (git, ssh under git, alert commands).

Every child runs in a session of its own, so a timeout kills it together with whatever it
started (ssh under ``git push`` would otherwise hold the pipes open); it gets our environment
without any secret of ours (:func:`backupd.secret.child_environment`) plus the variables the
caller names; and nothing here ever puts a secret on a command line: callers pass paths to
files that hold them.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from backupd.secret import child_environment

PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL
Child = subprocess.Popen
ChildError = subprocess.SubprocessError  # a wait that timed out, among others


@dataclass(frozen=True)
class Finished:
    """How a child ended: its exit code (None: killed at the timeout) and its output."""

    returncode: int | None
    stdout: bytes
    stderr: bytes

    @property
    def timed_out(self) -> bool:
        return self.returncode is None

    def error_line(self, limit: int = 500) -> str:
        """Its error output as one line (for messages)."""
        return self.stderr.decode("utf-8", "replace").strip().replace("\n", " ")[:limit]


def environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """A child's environment: ours without our secrets, plus ``extra``."""
    return {**child_environment(), **(extra or {})}


def run(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    input: bytes | None = None,
    timeout: float | None = None,
    env: Mapping[str, str] | None = None,
) -> Finished:
    """Run ``argv`` to its end (or kill its whole session at ``timeout``).

    Raises OSError when it cannot be started (no such program).
    """
    with started(argv, cwd=cwd, stdin=PIPE if input is not None else DEVNULL, env=env) as child:
        try:
            stdout, stderr = child.communicate(input, timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_session(child)
            stdout, stderr = child.communicate()
            return Finished(None, stdout, stderr)
    return Finished(child.returncode, stdout, stderr)


def spawn(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    stdin: int | IO[bytes] = DEVNULL,
    stdout: int | IO[bytes] = PIPE,
    stderr: int | IO[bytes] = PIPE,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` in a session of its own; the caller waits for it (or kills it)."""
    return subprocess.Popen(
        list(argv),
        cwd=cwd,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        env=environment(env),
        start_new_session=True,
    )


@contextlib.contextmanager
def started(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    stdin: int | IO[bytes] = DEVNULL,
    stdout: int | IO[bytes] = PIPE,
    stderr: int | IO[bytes] = PIPE,
    env: Mapping[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """A running child for streaming to or from it; left early, its session is killed."""
    child = spawn(argv, cwd=cwd, stdin=stdin, stdout=stdout, stderr=stderr, env=env)
    try:
        yield child
    finally:
        if child.poll() is None:
            kill_session(child)
        for pipe in (child.stdin, child.stdout, child.stderr):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
        child.wait()


def kill_session(child: subprocess.Popen[bytes]) -> None:
    """SIGKILL the child and everything in its session (it leads its own)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGKILL)
