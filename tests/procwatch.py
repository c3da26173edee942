"""Watch every process's command line and environment for secrets, in a thread, while a test
runs something (bounded in rounds and time, never timed)."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType


@dataclass
class Sighting:
    pid: int
    what: str  # "cmdline" or "environ"
    argv: list[str]


@dataclass
class Findings:
    rounds: int = 0
    leaks: list[Sighting] = field(default_factory=list)
    # Processes whose command line held the marker (e.g. the test server's host:port).
    marked: dict[int, list[str]] = field(default_factory=dict)
    marked_environ_read: set[int] = field(default_factory=set)


class ProcessWatch:
    """Reads /proc/*/cmdline and (where readable) /proc/*/environ of every process, over and
    over: ``secrets`` must appear in none of them; ``inherited`` secrets in no command line
    and in no environment but that of the processes ``owners`` (a test started them with
    the secret in their environment on purpose; their children must not get it)."""

    def __init__(
        self,
        secrets: list[bytes],
        *,
        marker: bytes,
        inherited: list[bytes] | None = None,
        owners: set[int] | None = None,
        max_rounds: int = 100_000,
        max_seconds: float = 120.0,
    ) -> None:
        self.secrets = [s for s in secrets if s]
        self.inherited = [s for s in inherited or [] if s]
        self.marker = marker
        self.owners = owners if owners is not None else set()
        self.max_rounds = max_rounds
        self.max_seconds = max_seconds
        self.findings = Findings()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="procwatch", daemon=True)
        self._own = os.getpid()

    def __enter__(self) -> ProcessWatch:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(timeout=self.max_seconds)

    def _watch(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        while not self._stop.is_set() and self.findings.rounds < self.max_rounds:
            if time.monotonic() > deadline:
                break
            self._round()
            self.findings.rounds += 1
            self._stop.wait(0.001)  # a breath for the processes watched (2 cores shared)

    def _round(self) -> None:
        try:
            names = [entry.name for entry in Path("/proc").iterdir()]
        except OSError:
            return
        for name in names:
            if not name.isdigit() or int(name) == self._own:
                continue
            pid = int(name)
            cmdline = _read(f"/proc/{name}/cmdline")
            if cmdline is None:
                continue
            argv = [part.decode("utf-8", "replace") for part in cmdline.split(b"\0") if part]
            if _holds(cmdline, self.secrets + self.inherited):
                self.findings.leaks.append(Sighting(pid, "cmdline", argv))
            marked = self.marker in cmdline
            if marked:
                self.findings.marked.setdefault(pid, argv)
            # Its parent now, with the command line just read: a fork that runs git a moment
            # later and is gone by the time the environment is judged still counts as what
            # it was when it was read (the owner's memory, not a child given the secret).
            parent = _parent(pid)
            environ = _read(f"/proc/{name}/environ")
            if environ is None:
                continue
            if marked:
                self.findings.marked_environ_read.add(pid)
            if _holds(environ, self.secrets) or (
                _holds(environ, self.inherited) and not self._is_owner(pid, parent, cmdline)
            ):
                self.findings.leaks.append(Sighting(pid, "environ", argv))

    def _is_owner(self, pid: int, parent: int, cmdline: bytes) -> bool:
        """An owner, or its fork that has not run its new program yet: that still shows
        the owner's command line and environment (it is the owner's memory, not a child
        that was given the secret)."""
        if pid in self.owners:
            return True
        return parent in self.owners and cmdline == _read(f"/proc/{parent}/cmdline")


def _parent(pid: int) -> int:
    """The parent's pid (0 when the process is gone)."""
    stat = _read(f"/proc/{pid}/stat") or b""
    fields = stat.rpartition(b")")[2].split()
    return int(fields[1]) if len(fields) > 1 else 0


def _holds(data: bytes, secrets: list[bytes]) -> bool:
    return any(secret in data for secret in secrets)


def _read(path: str) -> bytes | None:
    try:
        return Path(path).read_bytes()
    except OSError:  # gone meanwhile, or not ours to read
        return None
