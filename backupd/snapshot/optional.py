"""Optional parts of the API: what a snapshot does without them.

Only the job list and job export are essential (dlf-api.md §12). The resource list is not
published in every region or deployment (``404 APIG.0101``) and IAM policies may forbid it
(``403``): then the stored resource definitions stay as they are, the snapshot is partial
(a problem names the part and what to do), and jobs and scripts are backed up all the same.
A source's workspaces share one ``OptionalParts`` per run: an API that is not published
(404) is asked for once, and its absence logged once. A refusal (403) is one workspace's:
IAM policies and workspace roles can differ between workspaces, so each is asked.
``resources: false`` in a source's config turns the part off: not asked, nothing reported,
the stored definitions kept.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from backupd.errors import ApiError, AuthError, CredentialsRejected
from backupd.logs import log
from backupd.model import WARNING_PREFIX

logger = logging.getLogger(__name__)

RESOURCES = "resources"


def unavailable_reason(error: ApiError) -> str | None:
    """Why an optional API cannot be used, when ``error`` says it is absent or forbidden;
    None for any other failure (which fails the snapshot as before)."""
    if isinstance(error, CredentialsRejected):
        return None
    shown = " ".join(part for part in (f"HTTP {error.status}", error.code) if part)
    if isinstance(error, AuthError) or error.status == 403:
        return f"the API is forbidden to these credentials ({shown}: {error.message})"
    if error.status == 404:
        return f"the API is not available here ({shown}: {error.message})"
    return None


@dataclass
class OptionalParts:
    """What one run learned about the optional APIs of one source."""

    _unavailable: dict[str, str] = field(default_factory=dict)  # part → why
    _asking: set[str] = field(default_factory=set)  # parts a first ask is under way for
    _answered: set[str] = field(default_factory=set)  # parts a first ask got an answer for
    _waiting: dict[str, int] = field(default_factory=dict)  # part → callers waiting for it
    _lock: threading.Condition = field(default_factory=threading.Condition)

    def waiting(self, part: str) -> int:
        """Callers waiting for the first answer about ``part``."""
        with self._lock:
            return self._waiting.get(part, 0)

    def first_answer(self, part: str) -> tuple[str | None, bool]:
        """Why ``part`` is unavailable to every workspace, if known, and whether the caller
        asks first: it must then call ``answered``. While a first ask is under way the
        others wait for it, so that an API not published here is asked for once a run
        even when the workspaces list side by side."""
        with self._lock:
            if part in self._asking:
                self._waiting[part] = self._waiting.get(part, 0) + 1
                self._lock.wait_for(lambda: part not in self._asking)
                self._waiting[part] -= 1
            first = part not in self._answered
            if first:
                self._asking.add(part)
            return self._unavailable.get(part), first

    def answered(self, part: str) -> None:
        """The first ask for ``part`` ended (rows, an absence, or a failure)."""
        with self._lock:
            self._asking.discard(part)
            self._answered.add(part)
            self._lock.notify_all()

    def lister(
        self, part: str, list_all: Callable[[str], list[Any]], *, enabled: bool = True
    ) -> OptionalListing:
        return OptionalListing(self, part, list_all, enabled)

    def _found_unavailable(self, part: str, reason: str, workspace: str, *, shared: bool) -> None:
        with self._lock:
            first = part not in self._unavailable
            if shared:
                self._unavailable.setdefault(part, reason)
        if first:
            log(
                logger,
                "snapshot.optional_api_unavailable",
                level=logging.WARNING,
                part=part,
                workspace=workspace,
                reason=reason,
                effect=f"stored {part} are kept as they are; set '{part}: false' to stop asking",
            )


@dataclass
class OptionalListing:
    """Lists one optional part for one workspace: its rows, or none and why (``reason``)."""

    parts: OptionalParts
    part: str
    list_all: Callable[[str], list[Any]]
    enabled: bool = True
    reason: str | None = None  # set when the part could not be listed
    listed: bool = False  # the part was listed (not turned off, not unavailable)

    def __call__(self, workspace_id: str) -> list[Any]:
        if not self.enabled:
            return []
        known, first = self.parts.first_answer(self.part)
        if known is not None:
            self.reason = known
            return []
        try:
            rows = self.list_all(workspace_id)
        except ApiError as error:
            reason = unavailable_reason(error)
            if reason is None:
                raise
            self.reason = reason
            shared = error.status == 404  # not published: the same for every workspace
            self.parts._found_unavailable(self.part, reason, workspace_id, shared=shared)
            return []
        finally:
            if first:
                self.parts.answered(self.part)
        self.listed = True
        return rows

    def problem(self, source: str) -> str | None:
        """What the snapshot could not record, for SnapshotResult.problems."""
        if self.reason is None:
            return None
        return (
            f"{WARNING_PREFIX}{self.part} not backed up: {self.reason}; the stored {self.part} are "
            f"kept as they are (set '{self.part}: false' for source {source} to stop asking)"
        )
