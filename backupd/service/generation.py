"""One loaded configuration of the daemon, with the API clients it snapshots through.

A reload builds a new generation and swaps it in whole; snapshots that started under the old
one finish with it, and its clients close when the last of them is done.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence

from backupd.config import Config, SourceConfig
from backupd.dataarts.client import DataArtsClient
from backupd.errors import ConfigError
from backupd.model import WorkspaceTarget
from backupd.service.plan import DiscoveryJob, WorkspaceJob, plan_discoveries, plan_jobs

ClientFactory = Callable[[SourceConfig], DataArtsClient]


class Generation:
    """A config, its workspace jobs and one API client per source (shared by that source's
    workspaces, so that they also share its rate limit). Counts the snapshots using it.

    ``discovered``: the workspaces each discovering source had when this generation began
    (from the repository, or the previous generation); every discovery pass replaces them.
    """

    def __init__(
        self,
        config: Config,
        client_factory: ClientFactory,
        discovered: Mapping[str, Sequence[WorkspaceTarget]] | None = None,
    ) -> None:
        self.config = config
        self.sources = {source.name: source for source in config.sources}
        self.discoveries: dict[str, DiscoveryJob] = plan_discoveries(config)
        self._discovered = {
            name: tuple(found)
            for name, found in (discovered or {}).items()
            if name in self.sources and self.sources[name].discovers
        }
        self.jobs: dict[str, WorkspaceJob] = plan_jobs(config, self._discovered)
        self._clients: dict[str, DataArtsClient] = {}
        self._users = 0
        self._retired = False
        self._lock = threading.Lock()
        try:
            for source in config.sources:
                self._clients[source.name] = client_factory(source)
        except BaseException:
            self._close()
            raise

    def client(self, source: str) -> DataArtsClient:
        return self._clients[source]

    @property
    def discovered(self) -> dict[str, tuple[WorkspaceTarget, ...]]:
        with self._lock:
            return dict(self._discovered)

    def set_discovered(self, source: str, found: Sequence[WorkspaceTarget]) -> list[str]:
        """What a discovery pass of ``source`` found: its workspaces' labels, now jobs."""
        with self._lock:
            self._discovered[source] = tuple(found)
            jobs = plan_jobs(self.config, self._discovered)
            self.jobs = jobs  # replaced whole: readers never see it half-built
        return [target.label for target in found]

    def acquire(self) -> None:
        with self._lock:
            self._users += 1

    def release(self) -> None:
        with self._lock:
            self._users -= 1
            done = self._retired and self._users == 0
        if done:
            self._close()

    def retire(self) -> None:
        with self._lock:
            self._retired = True
            done = self._users == 0
        if done:
            self._close()

    def _close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients = {}


def restart_only_changes(old: Config, new: Config) -> None:
    """Refuse a reload that changes what only a restart can change."""
    fixed = {
        "repository.path": (old.repository.path, new.repository.path),  # the lock is held
        "repository.branch": (old.repository.branch, new.repository.branch),
        "daemon.max_parallel": (old.daemon.max_parallel, new.daemon.max_parallel),  # pool size
        "metrics": (old.metrics, new.metrics),  # the socket is bound
        "state_dir": (old.status_dir, new.status_dir),  # the status records are loaded
    }
    for key, (before, after) in fixed.items():
        if before != after:
            raise ConfigError(key, f"cannot change on reload ({before} → {after}); restart backupd")
