"""An in-memory JobSource: the simulator's state, answered without HTTP.

The same service as :class:`backupd.simulator.server.Simulator` holds — its workspaces, jobs,
scripts, resources, export layouts and name encodings, its optional APIs missing or
forbidden — but answered directly: no sockets, no signatures, no paging, no rate limits.
Pipeline tests run on it in milliseconds, and the contract suite (``tests/contract``) holds
it to the same behaviours as the HTTP client on the simulator. What it does not model is
what lives below the protocol: paging glitches, throttling, retries, truncated bodies.

``calls`` counts each operation (``"export"``, ``"list_jobs"``, ``"job_exists"``, …) for
tests that count API calls.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar, overload

import httpx

from backupd.dataarts.budget import DOCUMENTED_RATES, Budget
from backupd.dataarts.client import (
    JOB_TYPES,
    InstanceInfo,
    JobSummary,
    WorkspaceInfo,
    error_from_response,
    job_summary,
)
from backupd.dataarts.limits import MAX_EXPORT_NAMES
from backupd.errors import ApiError
from backupd.simulator.server import Simulator

_Kept = TypeVar("_Kept")

# What the service answers for a missing job or an absent / forbidden optional API.
_JOB_MISSING = (400, {"error_code": "DLF.0100", "error_msg": "The job does not exist."})
_UNPUBLISHED = (
    404,
    {
        "error_code": "APIG.0101",
        "error_msg": "The API does not exist or has not been published in the environment",
    },
)
_FORBIDDEN = (403, {"error_code": "DLF.6888", "error_msg": "Invalid account permissions."})


def _error(answer: tuple[int, dict[str, str]], what: str) -> ApiError:
    """The exception the HTTP client raises for the same answer (one mapping, reused)."""
    status, body = answer
    return error_from_response(httpx.Response(status, json=body), what)


class FakeJobSource:
    """The JobSource protocol over a :class:`Simulator`'s state (never started)."""

    def __init__(self, simulator: Simulator) -> None:
        self._simulator = simulator
        self._proven = threading.Event()
        self._proven.set()  # no credentials to prove
        self._lock = threading.Lock()
        self.calls: collections.Counter[str] = collections.Counter()
        # The documented budgets, for the pipeline to size itself by; the fake never waits.
        self._budgets = {name: Budget(name, rate) for name, rate in DOCUMENTED_RATES.items()}

    def _count(self, operation: str) -> None:
        with self._lock:
            self.calls[operation] += 1

    @property
    def credentials_proven(self) -> threading.Event:
        return self._proven

    @property
    def retries(self) -> int:
        return 0

    def budget(self, name: str) -> Budget:
        return self._budgets[name]

    def list_jobs(
        self, workspace_id: str, job_types: Sequence[str] = JOB_TYPES
    ) -> list[JobSummary]:
        self._count("list_jobs")
        jobs: dict[str, JobSummary] = {}
        for job_type in job_types:
            for row in self._simulator.job_rows(workspace_id, job_type):
                summary = job_summary(row, job_type)
                jobs.setdefault(summary.name, summary)
        return [jobs[name] for name in sorted(jobs)]

    @overload
    def list_scripts(self, workspace_id: str) -> list[dict[str, Any]]: ...

    @overload
    def list_scripts(
        self, workspace_id: str, keep: Callable[[dict[str, Any]], _Kept]
    ) -> list[_Kept]: ...

    def list_scripts(
        self, workspace_id: str, keep: Callable[[dict[str, Any]], Any] = lambda row: row
    ) -> list[Any]:
        self._count("list_scripts")
        scripts = self._simulator.scripts(workspace_id)
        return [keep(scripts[name]) for name in sorted(scripts)]

    def list_resources(self, workspace_id: str) -> list[dict[str, Any]]:
        self._count("list_resources")
        self._optional_api(self._simulator.resources_api, "list resources")
        resources = self._simulator.resources(workspace_id)
        return [resources[name] for name in sorted(resources)]

    def job_exists(self, workspace_id: str, name: str) -> bool:
        self._count("job_exists")
        return name in self._simulator.jobs(workspace_id)

    def script_exists(self, workspace_id: str, name: str) -> bool:
        self._count("script_exists")
        return name in self._simulator.scripts(workspace_id)

    def resource_exists(self, workspace_id: str, resource_id: str) -> bool:
        self._count("resource_exists")
        self._optional_api(self._simulator.resources_api, "show resource")
        resources = self._simulator.resources(workspace_id).values()
        return any(str(r.get("id")) == resource_id for r in resources)

    def export_jobs(
        self,
        workspace_id: str,
        names: Sequence[str],
        destination: Path,
        *,
        export_depend: bool = True,
        max_bytes: int = 1024**3,
    ) -> int:
        self._count("export")
        if not 0 < len(names) <= MAX_EXPORT_NAMES:
            raise ValueError(f"batch export takes 1 to {MAX_EXPORT_NAMES} names, got {len(names)}")
        existing = self._simulator.jobs(workspace_id)
        if any(name not in existing for name in names):
            raise _error(_JOB_MISSING, "batch export")
        archive = self._simulator.export_archive(workspace_id, names, export_depend=export_depend)
        if len(archive) > max_bytes:
            raise ApiError(f"export larger than {max_bytes} bytes", operation="batch export")
        destination.write_bytes(archive)
        return len(archive)

    def list_instances(self) -> list[InstanceInfo]:
        self._count("list_instances")
        self._optional_api(self._simulator.management_api, "list instances")
        return [InstanceInfo(id=i, name=n, status=s) for i, n, s in self._simulator.instances()]

    def list_workspaces(self, instance_id: str) -> list[WorkspaceInfo]:
        self._count("list_workspaces")
        self._optional_api(self._simulator.management_api, "list workspaces")
        found = self._simulator.workspaces(instance_id)
        workspaces = [WorkspaceInfo(i, name, instance_id) for i, name in found.items()]
        return sorted(workspaces, key=lambda workspace: (workspace.name, workspace.id))

    def close(self) -> None:
        pass

    def __enter__(self) -> FakeJobSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def _optional_api(availability: str, what: str) -> None:
        if availability == "missing":
            raise _error(_UNPUBLISHED, what)
        if availability == "forbidden":
            raise _error(_FORBIDDEN, what)
