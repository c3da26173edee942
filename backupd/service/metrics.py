"""Prometheus metrics: /metrics and /healthz for `backupd run`, and the textfile that
`backupd snapshot` leaves for node_exporter (the only module importing prometheus_client).

Every daemon gets its own CollectorRegistry (no process-wide registry: tests and reloads
never see another daemon's numbers). The rest of backupd reports through the observer hooks
(observer.py) and the monitor's HealthSink; this module turns those into metrics and serves
them, with /healthz, on ``metrics.listen`` from a small stdlib HTTP server.

The state of each workspace (last success, last attempt, ok or not, jobs, duration, stale)
is defined once, in :class:`WorkspaceGauges`, and fed from the same status records in both
modes: the daemon's registry holds it next to its counters, build_info and process metrics;
a one-shot run renders it alone, with build_info and the run's result, into a textfile
(:func:`render_textfile`). Counters stay out of the textfile: a process that exits after one
run would restart them at every run, which rate() cannot tell from a real reset.
"""

from __future__ import annotations

import logging
import platform
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    ProcessCollector,
    disable_created_metrics,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from backupd import version
from backupd.errors import UserError
from backupd.logs import log
from backupd.model import ApiObserver, SnapshotObserver, SnapshotResult, WorkspaceTarget
from backupd.service.monitor import HealthSink
from backupd.service.status import WorkspaceStatus

logger = logging.getLogger(__name__)

DURATION_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)
Health = Callable[[], tuple[bool, str]]
RunResult = Literal["ok", "partial", "failed"]
RUN_RESULTS: tuple[RunResult, ...] = ("ok", "partial", "failed")

# A `_created` series per counter and histogram child doubles what is scraped and tells
# nobody anything (the process start time is in process_start_time_seconds).
disable_created_metrics()  # type: ignore[no-untyped-call]


class _ProcessCollector(ProcessCollector):
    """process_* metrics that also work in the shipped units: ``ProcSubset=pid`` hides
    /proc/stat, where ProcessCollector reads the boot time, and without one it reports
    nothing at all. The boot time then comes from CLOCK_BOOTTIME."""

    def _boot_time(self) -> float:
        try:
            return float(super()._boot_time())  # type: ignore[no-untyped-call]
        except OSError:
            return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)


def add_build_info(registry: CollectorRegistry) -> None:
    """backupd_build_info{version, python} 1: which backupd wrote these numbers."""
    info = Info("backupd_build", "backupd version and the Python running it.", registry=registry)
    info.info({"version": version(), "python": platform.python_version()})


class WorkspaceGauges:
    """The state of every workspace, as its status record says: one definition for /metrics
    and the textfile, so that the alert rules and the dashboard work with either."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def gauge(name: str, documentation: str) -> Gauge:
            return Gauge(name, documentation, ["workspace"], registry=registry)

        self.last_success = gauge(
            "backupd_last_success_timestamp_seconds",
            "Unix time of the workspace's last successful snapshot.",
        )
        self.last_attempt = gauge(
            "backupd_last_attempt_timestamp_seconds",
            "Unix time the workspace's last snapshot ended (successful or not).",
        )
        self.last_ok = gauge(
            "backupd_last_snapshot_ok",
            "1 if the workspace's last snapshot succeeded, 0 if it failed.",
        )
        self.failures = gauge(
            "backupd_consecutive_failures",
            "Failed snapshots of the workspace since its last success.",
        )
        self.jobs = gauge(
            "backupd_workspace_jobs", "Jobs listed by the workspace's last successful snapshot."
        )
        self.duration = gauge(
            "backupd_last_snapshot_duration_seconds",
            "Duration of the workspace's last snapshot (successful or not).",
        )
        self.stale = gauge(
            "backupd_workspace_stale",
            "1 while the workspace's last success is older than twice its schedule period.",
        )
        self.stale_after = gauge(
            "backupd_workspace_stale_after_timestamp_seconds",
            "Unix time from which the workspace is stale unless a snapshot succeeds first "
            "(written by one-shot runs, so that staleness shows even when none runs again).",
        )

    def update(
        self, record: WorkspaceStatus, stale: bool, stale_after: datetime | None = None
    ) -> None:
        label = record.workspace
        if record.gone:  # DataArts no longer lists it: nothing to alert on (status says GONE)
            self.forget(label)
            return
        if record.last_success is not None:
            self.last_success.labels(label).set(record.last_success.timestamp())
        if record.last_attempt is not None:
            self.last_attempt.labels(label).set(record.last_attempt.timestamp())
            self.last_ok.labels(label).set(0 if record.failing else 1)
            self.failures.labels(label).set(record.failures)
        if record.jobs is not None:
            self.jobs.labels(label).set(record.jobs)
        if record.duration is not None:
            self.duration.labels(label).set(record.duration)
        self.stale.labels(label).set(1 if stale else 0)
        if stale_after is not None:
            self.stale_after.labels(label).set(stale_after.timestamp())

    def forget(self, label: str) -> None:
        for gauge in vars(self).values():
            gauge.remove(label)


class Metrics(SnapshotObserver, HealthSink):
    """The daemon's metrics, fed by snapshot hooks, API hooks and the monitor."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        add_build_info(r)
        _ProcessCollector(registry=r)  # process_*: memory, CPU, open files, start time
        self._workspaces = WorkspaceGauges(r)
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
        self._workspaces.update(record, stale)

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


@dataclass(frozen=True)
class WorkspaceState:
    """A workspace as a one-shot run leaves it: its record, and its staleness."""

    record: WorkspaceStatus
    stale: bool
    stale_after: datetime | None


def render_textfile(
    workspaces: Iterable[WorkspaceState], *, result: RunResult, ended: datetime, duration: float
) -> bytes:
    """The node_exporter textfile of a `backupd snapshot` run (Prometheus text format)."""
    registry = CollectorRegistry(auto_describe=True)
    add_build_info(registry)
    gauges = WorkspaceGauges(registry)
    for state in workspaces:
        gauges.update(state.record, state.stale, state.stale_after)
    Gauge(
        "backupd_last_run_timestamp_seconds",
        "Unix time the last `backupd snapshot` run ended.",
        registry=registry,
    ).set(ended.timestamp())
    Gauge(
        "backupd_last_run_duration_seconds",
        "Duration of the last `backupd snapshot` run.",
        registry=registry,
    ).set(duration)
    outcome = Gauge(
        "backupd_last_run_result",
        "1 for the result of the last `backupd snapshot` run, 0 for the others: ok (every "
        "workspace succeeded), partial (some failed), failed (all failed, or none could run).",
        ["result"],
        registry=registry,
    )
    for name in RUN_RESULTS:
        outcome.labels(name).set(1 if name == result else 0)
    return generate_latest(registry)


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
