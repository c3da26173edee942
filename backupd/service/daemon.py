"""`backupd run`: the daemon's lifecycle, as systemd (Type=notify) expects it.

start    config valid → repository opened, prepared and locked for the whole lifetime → API
         clients → workspaces scheduled → READY=1
loop     the main thread waits for signals; WATCHDOG=1 every WatchdogSec/2, but only while
         the scheduler thread beats and no snapshot has overrun daemon.snapshot_timeout
SIGHUP   RELOADING=1 → load and check the new config → swap it in, reschedule → READY=1;
         an invalid config is logged and the running one kept
SIGTERM  STOPPING=1 → no new runs; running ones commit or abandon → exit 0; after
(SIGINT) daemon.stop_timeout, exit anyway (0 if no commit was under way, else 1)

Snapshots run on the scheduler's threads; signal handlers only queue the signal number, and
everything that follows runs on the main thread.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from backupd.config import Config, SourceConfig, load_config
from backupd.dataarts.client import DataArtsClient
from backupd.errors import BackupdError, ConfigError, UserError
from backupd.logs import log
from backupd.model import Fanout, SnapshotObserver, SnapshotResult, WorkspaceTarget
from backupd.service.alerts import AlertQueue
from backupd.service.generation import ClientFactory, Generation, restart_only_changes
from backupd.service.metrics import Metrics, MetricsServer
from backupd.service.monitor import Monitor
from backupd.service.plan import DISCOVERY_PREFIX, ScheduleSpec
from backupd.service.scheduler import Scheduler
from backupd.service.status import StatusStore
from backupd.service.systemd import Notifier, watchdog_interval
from backupd.snapshot.discovery import known_targets, read_map
from backupd.snapshot.memory import release_free_memory
from backupd.snapshot.run import Publisher, SourceRun, discover_workspaces, snapshot_sources
from backupd.snapshot.scratch import remove_stale_staging
from backupd.store.gitrepo import GitRepo, Identity, repository_lock
from backupd.wiring import make_client, snapshot_options

logger = logging.getLogger(__name__)

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
HANDLED_SIGNALS = (*STOP_SIGNALS, signal.SIGHUP)
IDLE_TICK = 1.0  # at most this many seconds between health checks


@dataclass(frozen=True)
class _Finished:
    result: SnapshotResult
    at: datetime


class Daemon:
    def __init__(
        self,
        config_path: Path,
        config: Config,
        *,
        notifier: Notifier,
        watchdog: float | None,
        client_factory: ClientFactory | None = None,
    ) -> None:
        self._config_path = config_path
        self._initial_config = config
        self._notifier = notifier
        self._watchdog_interval = watchdog
        self._metrics = Metrics()  # this daemon's own registry
        self._client_factory = client_factory or self._observed_client
        self._monitor: Monitor | None = None
        self._stale: list[str] = []
        self._publisher = Publisher()  # tags and pushes, one push at a time
        self._observer: SnapshotObserver = self._metrics  # + the monitor, once it exists
        self._signals: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._cancel = threading.Event()  # set once: stop starting or continuing snapshots
        self._write_lock = threading.Lock()  # apply+commit, one workspace at a time
        self._state = threading.Condition()  # guards everything below
        self._generation: Generation | None = None
        self._running: dict[str, float] = {}  # label → monotonic start
        self._finished: dict[str, _Finished] = {}
        self._last: str | None = None
        self._overran: set[str] = set()
        self._was_healthy = True
        self._scheduler = Scheduler(
            self._run_job,
            max_parallel=config.daemon.max_parallel,
            misfire_grace_time=config.daemon.misfire_grace_time,
        )

    # --- lifecycle ----------------------------------------------------------------------------

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; the exit code (0 after a clean stop)."""
        config = self._initial_config
        previous = {number: signal.getsignal(number) for number in HANDLED_SIGNALS}
        for number in HANDLED_SIGNALS:
            signal.signal(number, self._on_signal)
        try:
            with ExitStack() as stack:
                stack.callback(self._notifier.close)
                self._open_repository(config, stack)
                generation = Generation(
                    config, self._client_factory, discovered=_known_workspaces(config)
                )
                self._generation = generation
                self._start_monitoring(config, stack)
                scheduler = self._scheduler
                stack.callback(scheduler.shutdown)
                schedules = _schedules(generation)
                scheduler.sync(
                    schedules,
                    misfire_grace_time=config.daemon.misfire_grace_time,
                    run_now=schedules if config.daemon.run_at_start else (),
                )
                scheduler.start()
                self._log_schedule(generation)
                log(
                    logger,
                    "daemon.ready",
                    pid=os.getpid(),
                    workspaces=len(generation.jobs),
                    max_parallel=config.daemon.max_parallel,
                    watchdog_seconds=self._watchdog_interval or "off",
                )
                self._notifier.ready(self._status())
                self._main_loop()
                return self._stop()
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    def _open_repository(self, config: Config, stack: ExitStack) -> None:
        """Open (or create) the repository and hold its single-writer lock until exit."""
        repository = config.repository
        identity = Identity(repository.author.name, repository.author.email)
        with GitRepo.open(repository.path, branch=repository.branch) as repo:
            stack.enter_context(repository_lock(repo))  # LockedError: another backupd
            repo.prepare(identity)  # also repairs what a killed predecessor left
        remove_stale_staging(config.staging_dir)
        log(logger, "daemon.repository_locked", path=str(repository.path), pid=os.getpid())

    def _start_monitoring(self, config: Config, stack: ExitStack) -> None:
        """Status records, alerts and (if configured) the metrics endpoint."""
        alerts = AlertQueue(lambda: self._current().config.alerts)
        stack.callback(alerts.close, self._current().config.alerts.timeout * 2)
        self._monitor = Monitor(
            StatusStore(config.status_dir),
            schedule_of=self._schedule_of,
            deliver=alerts.put,
            sink=self._metrics,
            since=datetime.now(UTC),
        )
        self._observer = Fanout([self._metrics, self._monitor, _Recorder(self)])
        self._stale = self._monitor.check(self._current().jobs)
        if config.metrics is not None:
            server = MetricsServer(config.metrics.listen, self._metrics, self._health)
            stack.callback(server.close)

    def _schedule_of(self, label: str) -> ScheduleSpec | None:
        job = self._current().jobs.get(label)
        return None if job is None else job.schedule

    def _observed_client(self, source: SourceConfig) -> DataArtsClient:
        return make_client(source, api_observer=self._metrics.api(source.name), cancel=self._cancel)

    def _health(self) -> tuple[bool, str]:
        """/healthz: healthy unless a workspace is stale."""
        stale = self._watch().stale()
        if not stale:
            return True, "ok"
        lines = [f"stale: {label} (since {at:%Y-%m-%dT%H:%M:%SZ})" for label, at in stale.items()]
        return False, "\n".join(sorted(lines))

    def _watch(self) -> Monitor:
        monitor = self._monitor
        if monitor is None:  # pragma: no cover - set before any caller can run
            raise RuntimeError("daemon not started")
        return monitor

    def _on_signal(self, number: int, frame: FrameType | None) -> None:
        self._signals.put(number)  # SimpleQueue.put is safe in a signal handler

    def _main_loop(self) -> None:
        interval = self._watchdog_interval
        tick = min(interval or IDLE_TICK, IDLE_TICK)
        next_check = next_ping = time.monotonic()
        while True:
            try:
                number: int | None = self._signals.get(
                    timeout=max(0.0, next_check - time.monotonic())
                )
            except queue.Empty:
                number = None
            if number is not None:
                log(logger, "daemon.signal", signal=signal.Signals(number).name)
            if number in STOP_SIGNALS:
                return
            if number == signal.SIGHUP:
                self._reload()
            now = time.monotonic()
            if now >= next_check:
                self._check_staleness()
                healthy = self._check_health()
                if healthy and interval and now >= next_ping:
                    self._notifier.watchdog()
                    next_ping = now + interval
                next_check = now + tick

    def _stop(self) -> int:
        self._cancel.set()
        generation = self._current()
        limit = generation.config.daemon.stop_timeout
        with self._state:
            running = sorted(self._running)
        log(logger, "daemon.stopping", running=",".join(running) or "none")
        self._notifier.stopping(
            f"stopping; waiting for {', '.join(running)}" if running else "stopping"
        )
        self._scheduler.shutdown()
        deadline = time.monotonic() + limit
        with self._state:
            while self._running and (remaining := deadline - time.monotonic()) > 0:
                self._state.wait(remaining)
            left = ",".join(sorted(self._running))
        if left:
            # Still running = stuck in an API call or in git. Holding the write lock proves
            # no commit is under way and none can start: abandoning them loses nothing.
            if self._write_lock.acquire(blocking=False):
                log(logger, "daemon.stop_abandoned", level=logging.WARNING, staging=left)
                _hard_exit(0)
            log(logger, "daemon.stop_timeout", level=logging.ERROR, committing=left, seconds=limit)
            _hard_exit(1)
        generation.retire()
        log(logger, "daemon.stopped")
        return 0

    # --- reload -------------------------------------------------------------------------------

    def _reload(self) -> None:
        self._notifier.reloading()
        log(logger, "daemon.reloading", config=str(self._config_path))
        old = self._current()
        try:
            config = load_config(self._config_path)
            restart_only_changes(old.config, config)
            generation = Generation(config, self._client_factory, discovered=old.discovered)
        except UserError as error:
            self._reload_failed(error)
            return
        schedules = _schedules(generation)
        added = set(schedules) - set(_schedules(old))
        with self._state:
            self._generation = generation
        try:
            result = self._scheduler.sync(
                schedules,
                misfire_grace_time=config.daemon.misfire_grace_time,
                run_now=added if config.daemon.run_at_start else (),
            )
        except ConfigError as error:  # the scheduler refused a schedule; nothing changed
            with self._state:
                self._generation = old
            generation.retire()
            self._reload_failed(error)
            return
        old.retire()
        log(
            logger,
            "daemon.reloaded",
            workspaces=len(generation.jobs),
            added=",".join(result.added) or "none",
            rescheduled=",".join(result.rescheduled) or "none",
            removed=",".join(result.removed) or "none",
        )
        self._log_schedule(generation, only=(*result.added, *result.rescheduled))
        self._notifier.ready(self._status())

    def _reload_failed(self, error: Exception) -> None:
        log(
            logger,
            "daemon.reload_failed",
            level=logging.ERROR,
            error=str(error),
            kept="the previous config",
        )
        self._notifier.ready(f"reload failed, running on the previous config: {error}")

    # --- snapshots (scheduler threads) --------------------------------------------------------

    def _run_job(self, label: str) -> None:
        """A scheduler thread's work: one workspace's snapshot, or one source's discovery."""
        if self._cancel.is_set():
            return  # queued before the stop: do not even start
        with self._state:
            generation = self._current()
            if label.startswith(DISCOVERY_PREFIX):
                known = label in generation.discoveries
            else:
                known = label in generation.jobs
            if not known or label in self._running:
                return  # removed by a reload since it became due, or (defensively) running
            generation.acquire()
            self._running[label] = time.monotonic()
        try:
            if label.startswith(DISCOVERY_PREFIX):
                self._discover(generation, label.removeprefix(DISCOVERY_PREFIX))
            else:
                self._snapshot(generation, label)
        finally:
            generation.release()
            with self._state:
                del self._running[label]
                self._state.notify_all()
            self._notifier.status(self._status())

    def _snapshot(self, generation: Generation, label: str) -> None:
        """One workspace through the one driver (snapshot/run.py), then tag and push."""
        job = generation.jobs[label]
        config = generation.config
        run = SourceRun(generation.sources[job.source], targets=(job.target,))
        log(logger, "snapshot.started", workspace=label)
        try:
            with self._repository(config) as repo:
                results = snapshot_sources(
                    config,
                    repo,
                    [run],
                    _identity(config),
                    clients=lambda source: contextlib.nullcontext(generation.client(source.name)),
                    options_for=functools.partial(
                        snapshot_options, config, allow_mass_delete=False
                    ),
                    observer=self._observer,
                    cancel=self._cancel,
                    commit_lock=self._write_lock,
                    parallel=1,
                )
                if any(r.commit for r in results):
                    with self._write_lock:
                        repo.housekeep()
                if not self._cancel.is_set():
                    self._publisher.tag(
                        repo, config, results, _identity(config), commit_lock=self._write_lock
                    )
                    pushed = self._publisher.push(repo, config, results)
                    if pushed is not None:
                        self._metrics.push_finished(pushed.ok)
        except Exception as error:  # a bug: keep the daemon and the other workspaces going
            logger.debug("traceback", exc_info=True)
            self._internal_error(job.target, error)
        finally:
            release_free_memory()

    def _discover(self, generation: Generation, source_name: str) -> None:
        """A discovering source's pass: discover its workspaces (committing the map), then
        run each as a job of its own, so each has its slot, timeout, status and metrics."""
        config = generation.config
        run = SourceRun(generation.sources[source_name], discover=True)
        try:
            with self._repository(config) as repo:
                found, _ = discover_workspaces(
                    generation.client(source_name),
                    repo,
                    run,
                    _identity(config),
                    commit_lock=self._write_lock,
                    observer=self._observer,
                )
        except Exception as error:  # a bug: the workspaces found last time still run
            logger.debug("traceback", exc_info=True)
            self._internal_error(WorkspaceTarget(source_name, "", "*"), error)
            found = list(generation.discovered.get(source_name, ()))
        labels = generation.set_discovered(source_name, found)
        if self._cancel.is_set():
            return
        for label in labels:
            self._scheduler.run_once(label)

    @contextlib.contextmanager
    def _repository(self, config: Config) -> Iterator[GitRepo]:
        # Opened per run: GitPython leaks in long-lived processes.
        repository = config.repository
        with GitRepo.open(repository.path, branch=repository.branch) as repo:
            yield repo

    def _internal_error(self, target: WorkspaceTarget, error: Exception) -> None:
        log(
            logger,
            "snapshot.failed",
            level=logging.ERROR,
            workspace=target.label,
            error=f"internal error: {type(error).__name__}: {error}",
        )
        self._observer.finished(SnapshotResult(target, ok=False, error=f"internal error: {error}"))

    def _record(self, result: SnapshotResult) -> None:
        with self._state:
            self._finished[result.target.label] = _Finished(result, datetime.now(UTC))
            self._last = result.target.label

    # --- health and status --------------------------------------------------------------------

    def _check_staleness(self) -> None:
        stale = self._watch().check(self._current().jobs)
        if stale != self._stale:
            self._stale = stale
            self._notifier.status(self._status())

    def _check_health(self) -> bool:
        """Healthy = the scheduler dispatches and no snapshot is past its deadline."""
        limit = self._current().config.daemon.snapshot_timeout
        now = time.monotonic()
        with self._state:
            overran = {label for label, start in self._running.items() if now - start > limit}
            starts = dict(self._running)
        for label in sorted(overran - self._overran):
            log(
                logger,
                "daemon.overrun",
                level=logging.ERROR,
                workspace=label,
                seconds=round(now - starts[label]),
                limit=limit,
            )
        self._overran = overran
        scheduler_ok = self._scheduler.healthy()
        healthy = scheduler_ok and not overran
        if healthy != self._was_healthy:
            reason = "the scheduler stopped dispatching" if not scheduler_ok else "overrun"
            log(
                logger,
                "daemon.healthy" if healthy else "daemon.unhealthy",
                level=logging.INFO if healthy else logging.ERROR,
                reason="recovered" if healthy else reason,
                watchdog="fed" if healthy else "withheld",
            )
            self._notifier.status(self._status())
        self._was_healthy = healthy
        return healthy

    def _status(self) -> str:
        """The one line `systemctl status backupd` shows."""
        generation = self._current()
        with self._state:
            finished = dict(self._finished)
            running = sorted(self._running)
            last = self._last
            overran = sorted(self._overran)
        failing = sorted(label for label, f in finished.items() if not f.result.ok)
        parts: list[str] = []
        if overran:
            parts.append(f"UNHEALTHY: {', '.join(overran)} past daemon.snapshot_timeout")
        if self._stale:
            parts.append(f"STALE: {', '.join(self._stale)}")
        if last is not None:
            done = finished[last]
            when = done.at.strftime("%H:%M:%SZ")
            if done.result.ok:
                outcome = f"commit {done.result.commit[:10]}" if done.result.commit else "no change"
                parts.append(f"last: {last} ok, {outcome} at {when}")
            else:
                parts.append(f"last: {last} FAILED at {when}: {(done.result.error or '')[:120]}")
        else:
            parts.append("no snapshot yet")
        if running:
            parts.append(f"running: {', '.join(running)}")
        count = len(generation.jobs)
        parts.append(f"{count} workspace{'' if count == 1 else 's'}, {len(failing)} failing")
        return "; ".join(parts)

    def _log_schedule(self, generation: Generation, only: tuple[str, ...] | None = None) -> None:
        for label, job in generation.jobs.items():
            if only is not None and label not in only:
                continue
            next_run = self._scheduler.next_run(label)
            log(
                logger,
                "daemon.scheduled",
                workspace=label,
                schedule=job.schedule.describe(),
                next_run=next_run.isoformat(timespec="seconds") if next_run else "none",
            )

    def _current(self) -> Generation:
        generation = self._generation
        if generation is None:  # pragma: no cover - set before any caller can run
            raise RuntimeError("daemon not started")
        return generation


class _Recorder(SnapshotObserver):
    """Keeps the daemon's own view of the last results (its systemd STATUS= line)."""

    def __init__(self, daemon: Daemon) -> None:
        self._daemon = daemon

    def finished(self, result: SnapshotResult) -> None:
        self._daemon._record(result)


def _identity(config: Config) -> Identity:
    return Identity(config.repository.author.name, config.repository.author.email)


def _schedules(generation: Generation) -> dict[str, ScheduleSpec]:
    """What the scheduler triggers: listed workspaces and discovery passes (a discovered
    workspace is started by its source's pass)."""
    schedules = {
        label: job.schedule for label, job in generation.jobs.items() if not job.discovered
    }
    schedules.update({label: job.schedule for label, job in generation.discoveries.items()})
    return schedules


def _known_workspaces(config: Config) -> dict[str, list[WorkspaceTarget]]:
    """The workspaces each discovering source had at the last discovery (the repository's
    maps), so that they are watched for staleness before the first pass."""
    known: dict[str, list[WorkspaceTarget]] = {}
    for source in config.sources:
        if source.discovers:
            try:
                workspace_map = read_map(config.repository.path / source.name)
            except BackupdError as error:
                log(logger, "workspaces.map_unreadable", level=logging.WARNING, error=str(error))
                continue
            known[source.name] = known_targets(source, workspace_map)
    return known


def _hard_exit(code: int) -> None:
    """Exit now, even with a snapshot thread stuck in a call (the interpreter would join it).

    The kernel releases the repository lock; the next run resets a half-written folder.
    """
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(code)


def run_daemon(config_path: Path, config: Config) -> int:
    """Entry point of `backupd run` (config already loaded and valid)."""
    daemon = Daemon(
        config_path,
        config,
        notifier=Notifier.from_environment(),
        watchdog=watchdog_interval(),
    )
    return daemon.run()
