"""What `backupd run` runs: one job per workspace, with its schedule resolved.

A listed workspace runs on its own schedule. A discovering source (``workspaces: all``) has a
discovery job on the source's schedule; each pass discovers the workspaces again and runs
each as a job of its own (its own slot, timeout, status record, metrics and alerts).

Pure: config in, frozen values out. A workspace's schedule takes each key from the nearest
level that sets it (workspace, then source, then the global ``schedule:``); ``cron`` and
``interval`` are one choice, so a workspace that sets ``interval`` is not also bound by a
global ``cron``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from backupd.config import Config, ScheduleConfig
from backupd.model import WorkspaceTarget

DEFAULT_CRON = "0 * * * *"  # hourly, documented on ScheduleConfig.cron
DEFAULT_TIMEZONE = "UTC"


@dataclass(frozen=True)
class ScheduleSpec:
    """A resolved schedule: exactly one of ``cron`` and ``interval`` is set."""

    cron: str | None = DEFAULT_CRON
    interval: float | None = None
    timezone: str = DEFAULT_TIMEZONE
    jitter: float = 0.0

    def describe(self) -> str:
        when = f"every {self.interval:g}s" if self.interval is not None else f"cron {self.cron}"
        return f"{when} {self.timezone}" + (f" jitter {self.jitter:g}s" if self.jitter else "")


DISCOVERY_PREFIX = "discover:"  # the label of a source's discovery job


@dataclass(frozen=True)
class WorkspaceJob:
    """One workspace the daemon snapshots (except the API client and the repository).

    ``discovered``: found by its source's discovery, which runs it after each pass; it has no
    trigger of its own.
    """

    target: WorkspaceTarget
    source: str
    schedule: ScheduleSpec
    discovered: bool = False

    @property
    def label(self) -> str:
        return self.target.label


@dataclass(frozen=True)
class DiscoveryJob:
    """A discovering source's pass: discover its workspaces, then run each of them."""

    source: str
    schedule: ScheduleSpec

    @property
    def label(self) -> str:
        return f"{DISCOVERY_PREFIX}{self.source}"


def resolve_schedule(*levels: ScheduleConfig | None) -> ScheduleSpec:
    """The schedule of the first level (most specific first) that sets each key."""
    present = [level for level in levels if level is not None]
    when = next((s for s in present if s.cron is not None or s.interval is not None), None)
    timezone = next((s.timezone for s in present if s.timezone is not None), DEFAULT_TIMEZONE)
    jitter = next((s.jitter for s in present if s.jitter is not None), 0.0)
    if when is None:
        return ScheduleSpec(timezone=timezone, jitter=jitter)
    return ScheduleSpec(cron=when.cron, interval=when.interval, timezone=timezone, jitter=jitter)


def plan_jobs(
    config: Config, discovered: Mapping[str, Sequence[WorkspaceTarget]] | None = None
) -> dict[str, WorkspaceJob]:
    """One job per workspace, keyed by its label (``source/folder``): every listed one, and
    for discovering sources those of ``discovered`` (source name → targets)."""
    jobs: dict[str, WorkspaceJob] = {}
    for source in config.sources:
        if source.discovers:
            schedule = resolve_schedule(source.schedule, config.schedule)
            for target in (discovered or {}).get(source.name, ()):
                jobs[target.label] = WorkspaceJob(target, source.name, schedule, discovered=True)
            continue
        for workspace in source.listed_workspaces:
            target = WorkspaceTarget(source.name, workspace.id, workspace.folder)
            schedule = resolve_schedule(workspace.schedule, source.schedule, config.schedule)
            jobs[target.label] = WorkspaceJob(target, source.name, schedule)
    return jobs


def plan_discoveries(config: Config) -> dict[str, DiscoveryJob]:
    """The discovery job of each discovering source, keyed by its label."""
    jobs = [
        DiscoveryJob(source.name, resolve_schedule(source.schedule, config.schedule))
        for source in config.sources
        if source.discovers
    ]
    return {job.label: job for job in jobs}


def schedule_of(config: Config, label: str) -> ScheduleSpec | None:
    """The schedule of the workspace ``source/folder`` (listed or discovered), if configured."""
    source_name, _, folder = label.partition("/")
    source = next((s for s in config.sources if s.name == source_name), None)
    if source is None:
        return None
    if source.discovers:
        return resolve_schedule(source.schedule, config.schedule)
    workspace = next((w for w in source.listed_workspaces if w.folder == folder), None)
    if workspace is None:
        return None
    return resolve_schedule(workspace.schedule, source.schedule, config.schedule)
