"""sd_notify(3) in the standard library: a datagram to $NOTIFY_SOCKET per state change.

No dependency: the protocol is one ``sendto`` of newline-separated ``KEY=value`` lines to a
Unix datagram socket, whose name starts with '@' for the abstract namespace. Outside systemd
(no $NOTIFY_SOCKET) every call is a no-op, so the daemon does not need to know where it runs.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Mapping

from backupd.logs import log

logger = logging.getLogger(__name__)


def _address(value: str) -> str | bytes | None:
    if value.startswith("@"):
        return b"\0" + value[1:].encode()  # abstract namespace: leading NUL, not '@'
    if value.startswith("/"):
        return value
    return None  # vsock: and other transports of newer systemd: not ours to speak


class Notifier:
    """Sends state changes to the service manager; thread-safe, never raises."""

    def __init__(self, address: str | None) -> None:
        self._address = _address(address) if address else None
        self._socket: socket.socket | None = None
        self._lock = threading.Lock()
        if self._address is not None:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Notifier:
        environ = os.environ if environ is None else environ
        return cls(environ.get("NOTIFY_SOCKET") or None)

    @property
    def enabled(self) -> bool:
        return self._socket is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=value`` lines in one datagram; False when there is no one to tell."""
        if self._socket is None or self._address is None:
            return False
        payload = "\n".join(assignments).encode("utf-8", "replace")
        with self._lock:
            try:
                self._socket.sendto(payload, self._address)
            except OSError as error:
                # The manager going away must not take the daemon with it.
                log(logger, "systemd.notify_failed", level=logging.DEBUG, error=str(error))
                return False
        return True

    def ready(self, status: str) -> bool:
        return self.notify("READY=1", status_line(status))

    def reloading(self) -> bool:
        # MONOTONIC_USEC lets systemd ≥ 253 (Type=notify-reload) match READY to this reload.
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self, status: str) -> bool:
        return self.notify("STOPPING=1", status_line(status))

    def status(self, status: str) -> bool:
        return self.notify(status_line(status))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def close(self) -> None:
        with self._lock:
            if self._socket is not None:
                self._socket.close()
                self._socket = None


def status_line(text: str) -> str:
    """A STATUS= assignment: one line, as `systemctl status` shows it."""
    return "STATUS=" + " ".join(text.split())


def watchdog_interval(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings (half of WatchdogSec), or None when not asked for.

    WATCHDOG_PID names the process the watchdog is meant for: a child that inherited the
    variables must not ping on its parent's behalf.
    """
    environ = os.environ if environ is None else environ
    try:
        usec = int(environ.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    pid = environ.get("WATCHDOG_PID")
    if usec <= 0 or (pid and pid != str(os.getpid())):
        return None
    return usec / 1_000_000 / 2
