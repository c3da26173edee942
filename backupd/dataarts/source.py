"""What the pipeline needs from DataArts: the JobSource protocol.

Snapshot, discovery and restore depend on this, not on the HTTP client. Two things satisfy
it: :class:`backupd.dataarts.client.DataArtsClient` (the real REST API) and the in-memory
fake in ``backupd/simulator/fake.py``; one contract suite (``tests/contract``) runs the same
behaviours against both, and against each of the simulator's field variants.

What every implementation promises:

* lists are complete or raise: every job (of the asked types), script and resource of the
  workspace, unique by name and sorted by it — never a partial list returned as if whole;
* ``export_jobs`` writes one batch-export zip of at most ``MAX_EXPORT_NAMES`` jobs, or raises
  ``ApiError`` (400 ``DLF.0100``/``DLF.3051``) when a named job does not exist;
* ``*_exists`` answers True or False only when the service said so; anything else raises;
* an optional API that is absent (404) or forbidden (403) raises ``ApiError`` with that
  status, so the caller can tell it from a failure of an essential one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar, overload

from backupd.dataarts.budget import Budget
from backupd.dataarts.client import InstanceInfo, JobSummary, WorkspaceInfo

_Kept = TypeVar("_Kept")


class JobSource(Protocol):
    """One source's DataArts, as the snapshot pipeline uses it (safe to share between
    threads)."""

    @property
    def credentials_proven(self) -> threading.Event:
        """Set once a call succeeded: the credentials work, parallel calls may start."""

    @property
    def retries(self) -> int:
        """Calls retried so far (throttled, server errors, transport failures)."""

    def budget(self, name: str) -> Budget:
        """The rate budget of one API (``budget.EXPORT``, ``budget.JOBS_LIST``, …): the
        pipeline sizes its parallelism from their rates and measured call durations."""

    def list_jobs(self, workspace_id: str, job_types: Sequence[str] = ...) -> list[JobSummary]:
        """Every job of the workspace (of ``job_types``; both by default), sorted by name."""

    @overload
    def list_scripts(self, workspace_id: str) -> list[dict[str, Any]]: ...

    @overload
    def list_scripts(
        self, workspace_id: str, keep: Callable[[dict[str, Any]], _Kept]
    ) -> list[_Kept]: ...

    def list_scripts(
        self, workspace_id: str, keep: Callable[[dict[str, Any]], Any] = ...
    ) -> list[Any]:
        """Every standalone script (content included), sorted by name; ``keep`` is what to
        hold of each, made as it arrives."""

    def list_resources(self, workspace_id: str) -> list[dict[str, Any]]:
        """Every resource definition, sorted by name (an optional API: may raise 404/403)."""

    def job_exists(self, workspace_id: str, name: str) -> bool: ...

    def script_exists(self, workspace_id: str, name: str) -> bool: ...

    def resource_exists(self, workspace_id: str, resource_id: str) -> bool: ...

    def export_jobs(
        self,
        workspace_id: str,
        names: Sequence[str],
        destination: Path,
        *,
        export_depend: bool = True,
        max_bytes: int = ...,
    ) -> int:
        """Batch-export ``names`` into the zip file ``destination``; returns its size."""

    def list_instances(self) -> list[InstanceInfo]: ...

    def list_workspaces(self, instance_id: str) -> list[WorkspaceInfo]: ...

    def close(self) -> None: ...
