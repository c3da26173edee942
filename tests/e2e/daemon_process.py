"""`backupd run` as a real subprocess, and a systemd notify socket the test owns."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

Event = dict[str, Any]

# Variables systemd or the developer's shell may have set that would change the daemon's
# behaviour under test.
_SCRUBBED = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM", "BACKUPD_CONFIG")


def clean_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if k not in _SCRUBBED}
    return {**environ, **(extra or {})}


class DaemonProcess:
    """Runs ``backupd --log-format json run -c CONFIG`` and collects its log events."""

    def __init__(
        self,
        config: Path,
        *,
        env: Mapping[str, str] | None = None,
        log_level: str = "info",
    ) -> None:
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            [
                *(sys.executable, "-m", "backupd"),
                *("--log-format", "json", "--log-level", log_level),
                *("run", "-c", str(config)),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=clean_environment(env),
        )
        self.events: list[Event] = []
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            try:
                event = json.loads(line)
            except ValueError:
                event = {"event": "(text)", "line": line.rstrip("\n")}
            with self._changed:
                self.lines.append(line)
                self.events.append(event)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_for(
        self,
        name: str,
        where: Callable[[Event], bool] = lambda event: True,
        *,
        timeout: float = 15,
        after: int = 0,
    ) -> Event:
        """The first event called ``name`` (from index ``after`` on) for which ``where`` holds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for event in self.events[after:]:
                    if event.get("event") == name and where(event):
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (
                    self.process.poll() is not None and not self._reader.is_alive()
                ):
                    raise AssertionError(
                        f"no {name!r} event within {timeout} s; log:\n" + "".join(self.lines)
                    )
                self._changed.wait(min(remaining, 0.2))

    def named(self, name: str) -> list[Event]:
        with self._changed:
            return [event for event in self.events if event.get("event") == name]

    def signal(self, number: int) -> None:
        self.process.send_signal(number)

    def wait_exit(self, timeout: float = 30) -> int:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=5)
        return code

    def stop(self, timeout: float = 30) -> int:
        self.signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def __enter__(self) -> DaemonProcess:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self._reader.join(timeout=5)
        if self.process.stderr is not None:
            self.process.stderr.close()


class NotifySocket:
    """A datagram socket in the abstract namespace, playing systemd's side of sd_notify."""

    def __init__(self) -> None:
        name = f"backupd-test-{uuid.uuid4().hex}"
        self.address = f"@{name}"
        self.messages: list[tuple[float, str]] = []
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(b"\0" + name.encode())
        self._socket.settimeout(0.1)
        self._changed = threading.Condition()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._receive, daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        while not self._closed.is_set():
            try:
                data = self._socket.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            with self._changed:
                # Wall-clock, to compare with the "time" of the daemon's log events.
                self.messages.append((time.time(), data.decode()))
                self._changed.notify_all()

    def wait_for(self, line: str, *, timeout: float = 15, after: int = 0) -> int:
        """Index of the first message (from ``after``) holding the line ``line``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for index, (_, text) in enumerate(self.messages[after:], start=after):
                    if any(part.startswith(line) for part in text.split("\n")):
                        return index
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    got = [text for _, text in self.messages]
                    raise AssertionError(f"no {line!r} within {timeout} s; got {got}")
                self._changed.wait(min(remaining, 0.2))

    def times_of(self, line: str) -> list[float]:
        with self._changed:
            return [at for at, text in self.messages if line in text.split("\n")]

    def texts(self) -> list[str]:
        with self._changed:
            return [text for _, text in self.messages]

    def __enter__(self) -> NotifySocket:
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed.set()
        self._thread.join(timeout=5)
        self._socket.close()
