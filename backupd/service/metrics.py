"""Prometheus metrics and /healthz for `backupd run` (the only module importing
prometheus_client).

Every daemon gets its own CollectorRegistry (no process-wide registry: tests and reloads
never see another daemon's numbers). The rest of backupd reports through the observer hooks
(observer.py) and the monitor's HealthSink; this module turns those into metrics and serves
them, with /healthz, on ``metrics.listen`` from a small stdlib HTTP server.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from backupd.errors import UserError
from backupd.logs import log
from backupd.model import ApiObserver, SnapshotObserver, SnapshotResult, WorkspaceTarget
from backupd.service.monitor import HealthSink
from backupd.service.status import WorkspaceStatus

logger = logging.getLogger(__name__)

DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
Health = Callable[[], tuple[bool, str]]


class Metrics(SnapshotObserver, HealthSink):
    """The daemon's metrics, fed by snapshot hooks, API hooks and the monitor."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._duration = Histogram(
            "backupd_snapshot_duration_seconds",
            "Duration of workspace snapshots (successful or not).",
            ["workspace"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self._snapshots = Counter(
            "backupd_snapshots",
            "Workspace snapshots by result (success, failure).",
            ["workspace", "result"],
            registry=r,
        )
        self._jobs = Counter("backupd_exported_jobs", "Jobs exported.", ["workspace"], registry=r)
        self._bytes = Counter(
            "backupd_exported_bytes",
            "Bytes of export archives received.",
            ["workspace"],
            registry=r,
        )
        self._requests = Counter(
            "backupd_api_requests",
            "DataArts API responses by HTTP status (retries included).",
            ["source", "status"],
            registry=r,
        )
        self._retries = Counter(
            "backupd_api_retries", "DataArts API calls retried.", ["source"], registry=r
        )
        self._throttled = Counter(
            "backupd_api_throttled",
            "DataArts API calls answered 429 (throttled).",
            ["source"],
            registry=r,
        )
        self._last_success = Gauge(
            "backupd_last_success_timestamp_seconds",
            "Unix time of the workspace's last successful snapshot.",
            ["workspace"],
            registry=r,
        )
        self._stale = Gauge(
            "backupd_workspace_stale",
            "1 while the workspace's last success is older than twice its schedule period.",
            ["workspace"],
            registry=r,
        )
        self._push_failures = Counter(
            "backupd_push_failures", "Pushes to the remote that failed.", registry=r
        )

    # --- snapshot hooks -----------------------------------------------------------------------

    def exported(
        self, target: WorkspaceTarget, batch: int, batches: int, jobs: int, size: int
    ) -> None:
        self._jobs.labels(target.label).inc(jobs)
        self._bytes.labels(target.label).inc(size)

    def finished(self, result: SnapshotResult) -> None:
        if result.gone:
            return
        label = result.target.label
        self._snapshots.labels(label, "success" if result.ok else "failure").inc()
        self._duration.labels(label).observe(result.duration)

    def push_finished(self, ok: bool) -> None:
        if not ok:
            self._push_failures.inc()

    # --- monitor ------------------------------------------------------------------------------

    def workspace(self, record: WorkspaceStatus, stale: bool) -> None:
        if record.last_success is not None:
            self._last_success.labels(record.workspace).set(record.last_success.timestamp())
        self._stale.labels(record.workspace).set(1 if stale else 0)

    # --- API hooks ----------------------------------------------------------------------------

    def api(self, source: str) -> ApiObserver:
        return _SourceApi(self, source)

    def _response(self, source: str, status: int) -> None:
        self._requests.labels(source, str(status)).inc()
        if status == 429:
            self._throttled.labels(source).inc()

    def _retry(self, source: str) -> None:
        self._retries.labels(source).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _SourceApi(ApiObserver):
    def __init__(self, metrics: Metrics, source: str) -> None:
        self._metrics = metrics
        self._source = source

    def response(self, status: int) -> None:
        self._metrics._response(self._source, status)

    def retry(self, error: Exception) -> None:
        self._metrics._retry(self._source)


def parse_listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host.removeprefix("[").removesuffix("]"), int(port)


class MetricsServer:
    """/metrics and /healthz over HTTP on its own thread."""

    def __init__(self, listen: str, metrics: Metrics, health: Health) -> None:
        host, port = parse_listen(listen)
        handler = type("Handler", (_Handler,), {"metrics": metrics, "health": staticmethod(health)})
        try:
            server_class = _IPv6Server if ":" in host else ThreadingHTTPServer
            self._server = server_class((host, port), handler)
        except OSError as error:
            raise UserError(
                f"metrics.listen: cannot listen on {listen}: {error.strerror or error}"
            ) from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="backupd-metrics",
            daemon=True,
        )
        self._thread.start()
        log(logger, "metrics.listening", address=listen)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    metrics: Metrics
    health: Health

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._answer(200, self.metrics.render(), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            healthy, text = self.health()
            self._answer(200 if healthy else 503, text.encode() + b"\n", "text/plain")
        else:
            self._answer(404, b"not found: try /metrics or /healthz\n", "text/plain")

    def _answer(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # scrapes every few seconds would drown the log
