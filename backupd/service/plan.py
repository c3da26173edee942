"""What `backupd run` runs: one job per configured workspace, with its schedule resolved.

Pure: config in, frozen values out. A workspace's schedule takes each key from the nearest
level that sets it (workspace, then source, then the global ``schedule:``); ``cron`` and
``interval`` are one choice, so a workspace that sets ``interval`` is not also bound by a
global ``cron``.
"""

from __future__ import annotations

from dataclasses import dataclass

from backupd.config import Config, ScheduleConfig, SourceConfig
from backupd.model import WorkspaceTarget
from backupd.snapshot.discovery import ALL_FOLDERS
from backupd.snapshot.options import SnapshotOptions
from backupd.wiring import snapshot_options, targets

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


@dataclass(frozen=True)
class WorkspaceJob:
    """Everything needed to snapshot one workspace, except the API client and the repo."""

    target: WorkspaceTarget
    source: str
    options: SnapshotOptions
    schedule: ScheduleSpec
    # 'workspaces: all': this job discovers the source's workspaces, then snapshots each.
    discover: SourceConfig | None = None

    @property
    def label(self) -> str:
        return self.target.label


def resolve_schedule(*levels: ScheduleConfig | None) -> ScheduleSpec:
    """The schedule of the first level (most specific first) that sets each key."""
    present = [level for level in levels if level is not None]
    when = next((s for s in present if s.cron is not None or s.interval is not None), None)
    timezone = next((s.timezone for s in present if s.timezone is not None), DEFAULT_TIMEZONE)
    jitter = next((s.jitter for s in present if s.jitter is not None), 0.0)
    if when is None:
        return ScheduleSpec(timezone=timezone, jitter=jitter)
    return ScheduleSpec(cron=when.cron, interval=when.interval, timezone=timezone, jitter=jitter)


def plan_jobs(config: Config) -> dict[str, WorkspaceJob]:
    """One job per configured workspace, keyed by its label (``source/folder``)."""
    jobs: dict[str, WorkspaceJob] = {}
    for source in config.sources:
        options = snapshot_options(config, source, allow_mass_delete=False)
        if source.discovers:
            # The workspaces are known only at run time: one job for the whole source.
            target = WorkspaceTarget(source.name, "", ALL_FOLDERS)
            schedule = resolve_schedule(source.schedule, config.schedule)
            jobs[target.label] = WorkspaceJob(target, source.name, options, schedule, source)
            continue
        for workspace, target in zip(source.listed_workspaces, targets(source), strict=True):
            schedule = resolve_schedule(workspace.schedule, source.schedule, config.schedule)
            jobs[target.label] = WorkspaceJob(target, source.name, options, schedule)
    return jobs


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
