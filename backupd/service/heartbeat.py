"""Heartbeat pings in the healthchecks.io style, around each `backupd snapshot` run.

``<url>/start`` when the run starts, then ``<url>`` when every workspace succeeded or
``<url>/fail`` when one did not (POST, with a line per workspace as the body). The service on
the other end raises the alarm when a run fails, takes too long, or never comes — which no
process on this machine can report once it is stopped itself.

A ping is bounded by ``heartbeat.timeout``, is tried once, and never fails the snapshot: a
failed ping is logged (``heartbeat.failed``) and forgotten. The ping URL usually holds a
secret (the check's id): logs show only its scheme and host.
"""

from __future__ import annotations

import logging
from typing import Literal
from urllib.parse import urlsplit

import httpx

from backupd import version
from backupd.config import HeartbeatConfig
from backupd.logs import log

logger = logging.getLogger(__name__)

Ping = Literal["start", "success", "fail"]
MAX_BODY = 10_000  # bytes: a summary, not a log (healthchecks.io keeps the first 100 kB)


def shown_url(url: str) -> str:
    """The URL as logs may show it: scheme and host only."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}"


def ping_url(url: str, ping: Ping) -> str:
    base = url.rstrip("/")
    return {"start": f"{base}/start", "success": base, "fail": f"{base}/fail"}[ping]


def _error_text(error: Exception, url: str) -> str:
    """``error`` as a log line, without the URL's secret path or query."""
    text = str(error)
    parts = urlsplit(url)
    for hidden in (parts.path.rstrip("/"), parts.query):
        if hidden:
            text = text.replace(hidden, "/…")
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


class Heartbeat:
    """The pings of one run; every method returns whether the ping was answered, and never
    raises. Without a configuration it does nothing."""

    def __init__(self, config: HeartbeatConfig | None) -> None:
        self._config = config

    def start(self) -> bool:
        return self._ping("start", None)

    def finish(self, ok: bool, summary: str) -> bool:
        return self._ping("success" if ok else "fail", summary)

    def _ping(self, ping: Ping, body: str | None) -> bool:
        config = self._config
        if config is None:
            return False
        target = shown_url(config.url)
        try:
            response = httpx.request(
                "GET" if body is None else "POST",
                ping_url(config.url, ping),
                content=None if body is None else body.encode("utf-8")[:MAX_BODY],
                headers={"User-Agent": f"backupd/{version()}"},
                timeout=config.timeout,
                follow_redirects=False,
            )
        except Exception as error:  # noqa: BLE001 - a ping must never take a snapshot down
            problem = _error_text(error, config.url)
        else:
            if response.status_code < 300:
                log(logger, "heartbeat.sent", ping=ping, target=target)
                return True
            problem = f"HTTP {response.status_code}"
        log(
            logger,
            "heartbeat.failed",
            level=logging.WARNING,
            ping=ping,
            target=target,
            error=problem,
        )
        return False
