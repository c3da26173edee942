"""Alerts: tell someone when a workspace starts failing, recovers, or turns stale.

An alert is sent once per change of a workspace's state (ok → failing → stale → ok), never per
run: the state last alerted about is kept in the status file, so a restart does not repeat
it. Delivery goes to a webhook (JSON POST) and/or a command (the JSON on stdin), each bounded
by ``alerts.timeout``. A failed delivery is logged (``alert.failed``) and not retried; it
never fails a snapshot.
"""

from __future__ import annotations

import json
import logging
import queue
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

from backupd import proc, version
from backupd.config import AlertsConfig
from backupd.logs import log
from backupd.secret import holds_secret, live_secrets
from backupd.service.status import AlertState, WorkspaceStatus

logger = logging.getLogger(__name__)

AlertKind = Literal["failure", "partial", "recovery", "stale"]


def alert_kind(previous: AlertState | None, current: AlertState) -> AlertKind | None:
    """What to announce when the state goes from ``previous`` to ``current`` (None: nothing).

    A workspace never alerted about counts as ok. Stale → failing is no news (it is still
    failing, and a success is what ends staleness).
    """
    before = previous or "ok"
    if before == current:
        return None
    if current == "ok":
        return "recovery"
    if current == "stale":
        return "stale"
    if current == "partial":
        # Worse news than partial came first: recovering from it to partial is still news.
        return "partial" if before in ("ok", "failing") else None
    return None if before == "stale" else "failure"


def _when(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class AlertEvent:
    kind: AlertKind
    workspace: str
    time: datetime
    record: WorkspaceStatus
    stale_since: datetime | None = None

    @property
    def text(self) -> str:
        """One line for people (and for chat webhooks, which show the 'text' key)."""
        record = self.record
        last = _when(record.last_success) or "never"
        if self.kind == "failure":
            return f"backupd: {self.workspace} snapshot FAILED: {record.last_error}"
        if self.kind == "partial":
            shown = "; ".join(record.problems[:5])
            more = f" (+{len(record.problems) - 5} more)" if len(record.problems) > 5 else ""
            return f"backupd: {self.workspace} snapshot PARTIAL: {shown}{more}"
        if self.kind == "stale":
            return (
                f"backupd: {self.workspace} is STALE: last success {last}, "
                f"{record.failures} failed attempt(s) since; last error: "
                f"{record.last_error or 'none (not attempted)'}"
            )
        return f"backupd: {self.workspace} recovered: snapshot ok at {last}"

    def to_json(self) -> dict[str, Any]:
        record = self.record
        return {
            "event": self.kind,
            "workspace": self.workspace,
            "time": _when(self.time),
            "text": self.text,
            "host": socket.gethostname(),
            "last_success": _when(record.last_success),
            "last_attempt": _when(record.last_attempt),
            "failing_since": _when(record.failing_since),
            "failures": record.failures,
            "last_error": record.last_error,
            "last_commit": record.last_commit,
            "problems": list(record.problems),
            "stale_since": _when(self.stale_since),
            "backupd": version(),
        }


def _shown_url(url: str) -> str:
    # Chat webhooks carry their secret in the path: only scheme and host are logged.
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}"


def send_alert(config: AlertsConfig, event: AlertEvent) -> bool:
    """Deliver ``event`` to every configured channel; True if all took it. Never raises."""
    body = json.dumps(event.to_json(), ensure_ascii=False).encode("utf-8")
    delivered = True
    if config.webhook:
        delivered &= _deliver("webhook", _shown_url(config.webhook), event, _post, config, body)
    if config.command:
        delivered &= _deliver("command", config.command[0], event, _run, config, body)
    return delivered


def _deliver(
    channel: str,
    target: str,
    event: AlertEvent,
    how: Callable[[AlertsConfig, bytes, AlertEvent], None],
    config: AlertsConfig,
    body: bytes,
) -> bool:
    try:
        how(config, body, event)
    except Exception as error:  # noqa: BLE001 - an alert must never take a snapshot down
        log(
            logger,
            "alert.failed",
            level=logging.ERROR,
            channel=channel,
            target=target,
            alert=event.kind,
            workspace=event.workspace,
            error=f"{type(error).__name__}: {error}" if not str(error) else str(error),
        )
        return False
    log(logger, "alert.sent", channel=channel, alert=event.kind, workspace=event.workspace)
    return True


class AlertDeliveryError(Exception):
    pass


def _post(config: AlertsConfig, body: bytes, event: AlertEvent) -> None:
    url = config.webhook or ""
    try:
        response = httpx.post(
            url,
            content=body,
            headers={"Content-Type": "application/json", "User-Agent": f"backupd/{version()}"},
            timeout=config.timeout,
            follow_redirects=False,
        )
    except httpx.HTTPError as error:
        raise AlertDeliveryError(f"{type(error).__name__}: {error}") from None
    if response.status_code >= 300:
        raise AlertDeliveryError(f"HTTP {response.status_code} from the webhook")


def _run(config: AlertsConfig, body: bytes, event: AlertEvent) -> None:
    # Every user can read a command line (ps), and the program's environment is ours: no
    # secret of ours may be in either.
    held = live_secrets()
    if any(holds_secret(argument, held) for argument in config.command):
        raise AlertDeliveryError(
            "not run: alerts.command holds a secret backupd uses, and every user can read "
            "a command line; let the program read it from a file"
        )
    extra = {"BACKUPD_ALERT": event.kind, "BACKUPD_WORKSPACE": event.workspace}
    done = proc.run(list(config.command), input=body, timeout=config.timeout, env=extra)
    if done.timed_out:
        raise AlertDeliveryError(f"timed out after {config.timeout:g}s")
    if done.returncode != 0:
        detail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [""]
        raise AlertDeliveryError(f"exit code {done.returncode} {detail[0][:200]}".strip())


class AlertQueue:
    """Sends alerts on a thread of its own, so that the daemon's main loop and its snapshots
    never wait for a slow webhook. ``close`` waits (bounded) for what is queued."""

    def __init__(self, config: Callable[[], AlertsConfig]) -> None:
        self._config = config
        self._queue: queue.SimpleQueue[AlertEvent | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="backupd-alerts", daemon=True)
        self._thread.start()

    def put(self, event: AlertEvent) -> None:
        self._queue.put(event)

    def close(self, timeout: float) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _work(self) -> None:
        while (event := self._queue.get()) is not None:
            send_alert(self._config(), event)
