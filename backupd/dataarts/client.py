"""DataArts Factory (DLF v1) REST client: job, script and resource listings, batch export,
import, and the management listings (instances, workspaces) that workspace discovery needs.

Facts behind the choices here are in dlf-api.md: the 'workspace' and 'X-Project-Id' headers
on every call, two listings (BATCH and REAL_TIME), undocumented paging semantics (§2.3),
at most 100 names per batch export, error bodies in several shapes (§7.3), and instances and
workspaces on a second host, ``dayu.<region>`` (§1.1, §1.4).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import itertools
import json
import logging
import ssl
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar, overload
from urllib.parse import quote, urlsplit

import httpx

from backupd.dataarts.auth import connection_error, encode_query, is_clock_skew_message
from backupd.dataarts.budget import (
    DOCUMENTED_RATES,
    EXPORT,
    JOBS_LIST,
    RESTORE,
    Budget,
    budget_of,
    budget_rates,
)
from backupd.dataarts.limits import (
    MAX_EXPORT_NAMES,
    MAX_RESOURCE_LIMIT,
    MAX_SCRIPT_LIMIT,
    MAX_WORKSPACE_LIMIT,
)
from backupd.dataarts.retry import RetryPolicy, call_with_retries
from backupd.errors import (
    ApiError,
    AuthError,
    ClockSkewError,
    CredentialsRejected,
    ServerError,
    SnapshotCancelled,
    ThrottledError,
    TransportError,
)
from backupd.logs import log
from backupd.model import ApiObserver

logger = logging.getLogger(__name__)

# How long a refusal of the credentials is repeated without asking again (then one more try).
REFUSAL_MEMORY = 60.0
INSTANCE_LIMIT = 20  # the instance list's documented default; its maximum is not documented
INSTANCE_EFFECTIVE = 2  # instance status: 1 not effective, 2 effective, 3 deleted, 4 frozen…
JOB_TYPES = ("BATCH", "REAL_TIME")
OffsetMode = Literal["page", "record"]
# Pages of one listing requested side by side once its first page told the total: a
# workspace's listings are chains of pages, and one chain at a time cannot use the listing
# rate. The client's connection slots and rate limit still apply to each page.
PAGES_AT_ONCE = 3
LIST_PASSES = 2  # a listing that does not add up is read once more, then refused
PAGE_READS = 3  # a page that disagrees with the listing is read again, twice at most
PROBE_READS = 2  # offset=1 answers asked before the offset mode is given up on
MAX_OPEN_PAGES = 10_000  # rows a list without a trustworthy total is paged to, at most
# What the show calls answer for an item that does not exist (dlf-api.md §7.3): the proof.
JOB_MISSING = "DLF.0100"
SCRIPT_MISSING = "DLF.6201"
RESOURCE_MISSING = "DLF.6241"


_Kept = TypeVar("_Kept")
_Row = TypeVar("_Row")
_Fetched = TypeVar("_Fetched")


def _as_is(row: _Row) -> _Row:
    return row


def in_order(
    fetch: Callable[[int], _Fetched], offsets: range, at_once: int
) -> Generator[_Fetched, None, None]:
    """``fetch(offset)`` for each offset, ``at_once`` in flight, results in offset order.

    Stopping early (or a failed fetch) cancels the fetches not started yet.
    """
    if not offsets:
        return
    with ThreadPoolExecutor(min(at_once, len(offsets)), thread_name_prefix="page") as pool:
        pending: deque[Future[_Fetched]] = deque()
        upcoming = iter(offsets)
        try:
            # Each in a copy of this context: the pages' calls keep the caller's rank.
            for offset in itertools.islice(upcoming, at_once):
                pending.append(pool.submit(contextvars.copy_context().run, fetch, offset))
            while pending:
                result = pending.popleft().result()
                for offset in itertools.islice(upcoming, 1):
                    pending.append(pool.submit(contextvars.copy_context().run, fetch, offset))
                yield result
        finally:
            for future in pending:
                future.cancel()


@dataclass(frozen=True)
class _Listing(Generic[_Row]):
    """One paged list of the API: where it is, what its answers hold, what to make of a row."""

    what: str  # the operation, for errors and logs
    url: str  # a path on the DLF host, or a whole URL (management host)
    workspace_id: str | None
    query: tuple[tuple[str, str], ...]  # besides limit and offset
    rows_keys: tuple[str, ...]  # the array of rows: the first of these the answer holds
    key: str  # the field that names a row
    total_key: str
    limit: int
    condense: Callable[[dict[str, Any]], _Row]  # made of each row where its page arrives
    kind: str  # what the offset mode is remembered under (with the page size)
    # Every answer reports the list's total, and it says how many pages there are (DLF).
    # Not exact: 'count' may be the total or the page size, or be missing (management).
    exact: bool = True


@dataclass(frozen=True)
class _Page(Generic[_Row]):
    rows: list[tuple[str, _Row]]  # (name, condensed row), in the order the service sent
    total: int | None

    def names(self) -> list[str]:
        return [name for name, _ in self.rows]

    def distinct(self) -> bool:
        return len({name for name, _ in self.rows}) == len(self.rows)


def _mode_of(
    first: list[str], second: list[str], size: int, total: int | None
) -> OffsetMode | None:
    """What ``offset=1`` answering ``second`` says about ``offset``, after ``offset=0``
    answered ``first`` (a full page of ``size``); None: neither reading fits the answer.

    ``total``: the listing's (None: unknown, and an empty answer then means a page number
    past the end). With a page size of 1 both readings coincide.
    """
    shifted = bool(second) and second[: size - 1] == first[1:]
    if shifted and (total is None or len(second) == min(size, total - 1)):
        return "record"
    if not set(second) & set(first):
        if total is None and len(second) <= size:
            return "page"
        if total is not None and len(second) == min(size, total - size):
            return "page"
    return None


def _short_of(listing: _Listing[Any], seen: int, total: int | None) -> str | None:
    """Why a listing that ended holding ``seen`` entries is incomplete (None: it is not)."""
    if total is None or seen == total or (seen > total and not listing.exact):
        return None
    return f"listing returned {seen} distinct entries but reported {total}"


@dataclass(frozen=True, slots=True)
class JobSummary:
    """One row of the job list: what identifies a job and tells whether it changed."""

    name: str
    job_type: str
    last_update_time: int | None
    last_update_user: str | None


@dataclass(frozen=True)
class InstanceInfo:
    """One DataArts Studio instance of the project (a row of the instance list)."""

    id: str
    name: str
    status: int | None

    @property
    def effective(self) -> bool:
        return self.status == INSTANCE_EFFECTIVE


@dataclass(frozen=True)
class WorkspaceInfo:
    """One workspace of an instance (a row of the workspace list)."""

    id: str
    name: str
    instance_id: str


@dataclass(frozen=True)
class ClientSettings:
    endpoint: str
    project_id: str
    # dayu.<region>: instance and workspace lists (None: this client does not discover).
    management_endpoint: str | None = None
    page_size: int = 100
    timeout: float = 60.0
    verify: bool | ssl.SSLContext = True  # a context carries an extra CA bundle
    retry: RetryPolicy = RetryPolicy()
    # Calls per second of each API's budget (budget.py names them); the rest documented.
    rates: Mapping[str, float] = field(default_factory=lambda: DOCUMENTED_RATES)
    # Deprecated: the rate of every listing budget / every export-class budget.
    requests_per_second: float | None = None
    exports_per_second: float | None = None
    # Most calls of one budget in flight; how many are follows the calls' measured duration.
    max_concurrent: int = 32
    user_agent: str = "backupd"

    def budget_rates(self) -> dict[str, float]:
        return budget_rates(
            self.rates, list_rate=self.requests_per_second, export_rate=self.exports_per_second
        )


class DataArtsClient:
    """One pooled HTTP client per source; safe to share between threads."""

    def __init__(
        self,
        settings: ClientSettings,
        auth: httpx.Auth,
        *,
        transport: httpx.BaseTransport | None = None,
        observer: ApiObserver | None = None,
        cancel: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """``cancel``: once set, no further call starts (a stopping process); each call then
        raises SnapshotCancelled, so a snapshot stops between two calls, never inside one.
        ``clock`` and ``sleep`` pace the calls (tests give their own)."""
        self.settings = settings
        self._cancel = cancel
        self._observer = observer or ApiObserver()
        self._sleep = sleep
        # One budget per API, as the service counts them (dlf-api.md §7.1).
        self._budgets = {
            name: Budget(
                name, rate, max_in_flight=settings.max_concurrent, clock=clock, sleep=sleep
            )
            for name, rate in settings.budget_rates().items()
        }
        self._http = httpx.Client(
            base_url=settings.endpoint,
            auth=auth,
            timeout=httpx.Timeout(settings.timeout, connect=min(settings.timeout, 15.0)),
            verify=settings.verify,
            transport=transport,
            headers={
                "X-Project-Id": settings.project_id,
                "Content-Type": "application/json;charset=UTF-8",
                "User-Agent": settings.user_agent,
            },
            follow_redirects=False,
            event_hooks={"response": [self._observe]},
            # Connections kept open for the calls in flight of the busiest budgets.
            limits=httpx.Limits(max_keepalive_connections=2 * settings.max_concurrent),
        )
        self._offset_modes: dict[str, OffsetMode] = {}
        self._lock = threading.Lock()
        self._retries = 0
        # Until one call has succeeded, calls go one at a time: wrong credentials then cost
        # one refused request, not one per workspace running in parallel.
        self._credentials_proven = threading.Event()
        self._first_call = threading.Lock()
        self._refusal: tuple[float, CredentialsRejected] | None = None

    @property
    def credentials_proven(self) -> threading.Event:
        """Set once a call succeeded: the credentials work (parallel work may start)."""
        return self._credentials_proven

    def budget(self, name: str) -> Budget:
        """The rate budget of one API (``budget.EXPORT``, ``budget.JOBS_LIST``, …)."""
        return self._budgets[name]

    @property
    def budgets(self) -> Mapping[str, Budget]:
        return self._budgets

    @property
    def retries(self) -> int:
        """Calls retried so far (throttled, server errors, transport failures)."""
        with self._lock:
            return self._retries

    def _on_retry(self, error: Exception) -> None:
        self._count_retry(error)
        self._observer.retry(error)

    def _count_retry(self, _error: Exception) -> None:
        with self._lock:
            self._retries += 1

    def close(self) -> None:
        self._http.close()

    def _observe(self, response: httpx.Response) -> None:
        self._observer.response(response.status_code)

    def __enter__(self) -> DataArtsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DataArtsClient(endpoint={self.settings.endpoint!r})"

    # --- public operations ---------------------------------------------------------------

    def list_jobs(
        self, workspace_id: str, job_types: Sequence[str] = JOB_TYPES
    ) -> list[JobSummary]:
        """Every job of the workspace (of ``job_types``: both by default), unique by name,
        sorted.

        The other job types are listed beside the first once its first page came: one
        after the other, the last workspace's second list waited for the first one's last
        page, then asked its own pages in turn, after the rate would have allowed them. A
        first list that fails before its first page (a server down) leaves them unasked.
        """
        answered = threading.Event()  # the first type's first page came, or its listing ended
        first_failed: list[bool] = []

        def listed(
            job_type: str, first_page: threading.Event | None = None
        ) -> dict[str, JobSummary]:
            listing = self._dlf_listing(
                "jobs",
                workspace_id,
                what="list jobs",
                query=(("jobType", job_type),),
                # A summary per row as each page arrives: a raw row is ten times its size.
                condense=functools.partial(job_summary, job_type=job_type),
            )
            return self._list_all(listing, _as_is, first_page)

        def listed_after_first(job_type: str) -> dict[str, JobSummary]:
            answered.wait()
            return {} if first_failed else listed(job_type)

        first, *others = job_types
        with ThreadPoolExecutor(max(1, len(others)), thread_name_prefix="job-type") as pool:
            # In copies of this context: the calls keep the caller's rank (CALL_RANK).
            futures = [
                pool.submit(contextvars.copy_context().run, listed_after_first, job_type)
                for job_type in others
            ]
            try:
                by_type = [listed(first, answered)]
            except BaseException:
                first_failed.append(True)
                raise
            finally:
                answered.set()
            by_type += [future.result() for future in futures]
        jobs: dict[str, JobSummary] = {}
        for listing in by_type:  # the first type's summary of a name, as before
            for summary in listing.values():
                jobs.setdefault(summary.name, summary)
        return [jobs[name] for name in sorted(jobs)]

    def probe_jobs(self, workspace_id: str) -> tuple[int, str | None]:
        """(jobs in the workspace, the name of one of them), from one listing call per job
        type with limit 1: proves that listing works without paging through everything."""
        path = f"/v1/{self.settings.project_id}/jobs"
        total, name = 0, None
        for job_type in JOB_TYPES:
            query = [("jobType", job_type), ("limit", "1"), ("offset", "0")]
            data = self._get_json(path, workspace_id, query, "list jobs")
            count, rows = data.get("total"), data.get("jobs")
            total += count if isinstance(count, int) else 0
            if name is None and isinstance(rows, list) and rows and isinstance(rows[0], dict):
                first = rows[0].get("name")
                name = first if isinstance(first, str) else None
        return total, name

    @overload
    def list_scripts(self, workspace_id: str) -> list[dict[str, Any]]: ...

    @overload
    def list_scripts(
        self, workspace_id: str, keep: Callable[[dict[str, Any]], _Kept]
    ) -> list[_Kept]: ...

    def list_scripts(
        self, workspace_id: str, keep: Callable[[dict[str, Any]], Any] = _as_is
    ) -> list[Any]:
        """Every standalone script definition of the workspace (content included), by name.

        ``keep``: what to hold of each definition, made as its page arrives.
        """
        listing = self._dlf_listing(
            "scripts",
            workspace_id,
            what="list scripts",
            max_limit=MAX_SCRIPT_LIMIT,
            condense=_as_is,
        )
        scripts = self._list_all(listing, keep)
        return [scripts[name] for name in sorted(scripts)]

    def list_resources(self, workspace_id: str) -> list[dict[str, Any]]:
        """Every resource definition of the workspace (name, type, OBS location, …)."""
        listing = self._dlf_listing(
            "resources",
            workspace_id,
            what="list resources",
            max_limit=MAX_RESOURCE_LIMIT,
            condense=_as_is,
        )
        rows = self._list_all(listing, _as_is)
        return [rows[name] for name in sorted(rows)]

    def job_exists(self, workspace_id: str, name: str) -> bool:
        """Whether the workspace holds the job ``name`` now: its detail, or 400 DLF.0100.

        Anything else (a server error after retries, another code) raises: only the
        service's own "does not exist" proves a job gone (dlf-api.md §12). Job detail is in
        the export's rate class (10/s per user, §7.1).
        """
        path = f"/v1/{self.settings.project_id}/jobs/{quote(name, safe='')}"
        return self._exists(path, workspace_id, JOB_MISSING, "show job")

    def script_exists(self, workspace_id: str, name: str) -> bool:
        """Whether the workspace holds the script ``name`` now (400 DLF.6201 when not)."""
        path = f"/v1/{self.settings.project_id}/scripts/{quote(name, safe='')}"
        return self._exists(path, workspace_id, SCRIPT_MISSING, "show script")

    def resource_exists(self, workspace_id: str, resource_id: str) -> bool:
        """Whether the workspace holds the resource with id ``resource_id`` now (400
        DLF.6241 when not)."""
        path = f"/v1/{self.settings.project_id}/resources/{quote(resource_id, safe='')}"
        return self._exists(path, workspace_id, RESOURCE_MISSING, "show resource")

    def probe_resources(self, workspace_id: str) -> int:
        """How many resource definitions the workspace holds, from one listing call with
        limit 1 (proves the optional resource API answers)."""
        path = f"/v1/{self.settings.project_id}/resources"
        query = [("limit", "1"), ("offset", "0")]
        total: object = self._get_json(path, workspace_id, query, "list resources").get("total")
        return total if isinstance(total, int) else 0

    def list_instances(self) -> list[InstanceInfo]:
        """The project's DataArts Studio instances (management host)."""
        rows = self._list_all(
            self._management_listing(
                "instances",
                ("commodity_orders", "commodity_order_lists"),  # older docs name it the latter
                "resource_id",
                limit=INSTANCE_LIMIT,
                what="list instances",
            ),
            _as_is,
        )
        instances = [
            InstanceInfo(
                id=str(row["resource_id"]),
                name=str(row.get("resource_name") or ""),
                status=row.get("status") if isinstance(row.get("status"), int) else None,
            )
            for row in rows.values()
        ]
        return sorted(instances, key=lambda instance: instance.id)

    def list_workspaces(self, instance_id: str) -> list[WorkspaceInfo]:
        """Every workspace of one instance (management host), sorted by name."""
        rows = self._list_all(
            self._management_listing(
                f"workspaces/{quote(instance_id, safe='')}",
                ("data",),
                "id",
                limit=min(self.settings.page_size, MAX_WORKSPACE_LIMIT),
                what="list workspaces",
            ),
            _as_is,
        )
        workspaces = [
            WorkspaceInfo(
                id=str(row["id"]),
                name=str(row.get("name") or row["id"]),
                instance_id=str(row.get("instance_id") or instance_id),
            )
            for row in rows.values()
        ]
        return sorted(workspaces, key=lambda workspace: (workspace.name, workspace.id))

    def export_jobs(
        self,
        workspace_id: str,
        names: Sequence[str],
        destination: Path,
        *,
        export_depend: bool = True,
        max_bytes: int = 1024**3,
    ) -> int:
        """Batch-export ``names`` into the zip file ``destination``; returns its size.

        The body is streamed to disk: a 100-job zip never sits in memory.
        """
        if not 0 < len(names) <= MAX_EXPORT_NAMES:
            raise ValueError(f"batch export takes 1 to {MAX_EXPORT_NAMES} names, got {len(names)}")
        body = json.dumps(
            {"jobList": list(names), "exportDepend": export_depend},
            ensure_ascii=False,
            separators=(",", ":"),
        ).encode("utf-8")
        path = f"/v1/{self.settings.project_id}/jobs/batch-export"

        def attempt() -> int:
            request = self._build("POST", path, workspace_id, body=body)
            request.headers["Accept"] = "application/octet-stream"
            return self._stream_to_file(request, destination, max_bytes, "batch export")

        size: int = self._call(attempt, "batch export", EXPORT)
        return size

    # --- import (restore, dlf-api.md §5) -----------------------------------------------------

    def check_file(self, workspace_id: str, obs_path: str) -> dict[str, Any]:
        """What DataArts reads in an import file already in OBS: ``{jobs: […], scripts: […]}``."""
        path = f"/v1/{self.settings.project_id}/jobs/check-file"
        body = _json_body({"path": obs_path})
        return self._post_json(path, workspace_id, body, "check import file", retry=True)

    def import_jobs(
        self,
        workspace_id: str,
        obs_path: str,
        *,
        overwrite: bool = False,
        target_status: str | None = None,
        approvers: Sequence[str] = (),
    ) -> str:
        """Start importing the zip at ``obs_path``; returns the system task id to poll.

        ``target_status`` (SAVED | SUBMITTED | PRODUCTION) and ``approvers`` (user names, sent
        as ``[{"approverName": …}]``) are what a workspace with review on needs; each is sent
        only when given.

        Not retried after a server error or a lost answer: the import may have started, and a
        second one would race it. Throttling (nothing was done) is retried.
        """
        path = f"/v1/{self.settings.project_id}/jobs/import"
        policy = "OVERWRITE" if overwrite else "SKIP"
        request: dict[str, Any] = {"path": obs_path, "sameNamePolicy": policy}
        if target_status is not None:
            request["targetStatus"] = target_status
        if approvers:
            request["approvers"] = [{"approverName": name} for name in approvers]
        body = _json_body(request)
        data = self._post_json(path, workspace_id, body, "import jobs", retry=False)
        task_id = data.get("taskId")
        if not isinstance(task_id, str | int) or task_id == "":
            raise ApiError("response has no 'taskId'", operation="import jobs")
        return str(task_id)

    def system_task(self, workspace_id: str, task_id: str) -> dict[str, Any]:
        """One asynchronous task: ``{id, name, status: RUNNING|SUCCESSFUL|FAILED, subtasks}``."""
        path = f"/v1/{self.settings.project_id}/system-tasks/{quote(task_id, safe='')}"
        return self._get_json(path, workspace_id, (), "query import task")

    def _post_json(
        self, path: str, workspace_id: str, body: bytes, what: str, *, retry: bool
    ) -> dict[str, Any]:
        def attempt() -> dict[str, Any]:
            request = self._build("POST", path, workspace_id, body=body)
            return _json_object(self._send(request, what), what)

        if retry:
            result: dict[str, Any] = self._call(attempt, what, budget_of("POST", path))
            return result

        def once() -> dict[str, Any]:
            try:
                return attempt()
            except (ServerError, TransportError) as error:
                # Not retryable as such: the import may have started; a second would race it.
                raise ApiError(
                    f"{error} — the import may or may not have started: check the workspace in "
                    "the DataArts console before trying again",
                    operation=what,
                ) from None

        unsure: dict[str, Any] = self._call(once, what, RESTORE)  # retries 429 only
        return unsure

    # --- listing ----------------------------------------------------------------------------

    def _dlf_listing(
        self,
        resource: str,
        workspace_id: str,
        *,
        what: str,
        query: tuple[tuple[str, str], ...] = (),
        max_limit: int = 1000,
        condense: Callable[[dict[str, Any]], _Row],
    ) -> _Listing[_Row]:
        """A DLF list (jobs, scripts, resources): rows by ``name``, every answer its total."""
        return _Listing(
            what=what,
            url=f"/v1/{self.settings.project_id}/{resource}",
            workspace_id=workspace_id,
            query=query,
            rows_keys=(resource,),
            key="name",
            total_key="total",
            limit=min(self.settings.page_size, max_limit),
            condense=condense,
            kind=resource,
        )

    def _management_listing(
        self, resource: str, rows_keys: tuple[str, ...], key: str, *, limit: int, what: str
    ) -> _Listing[dict[str, Any]]:
        """A management list (instances, workspaces), keyed by ``key``.

        Its paging is documented even more loosely than the job list's (offset is a "page
        number" for instances and a "data offset" for workspaces; 'count' may be the total
        or the page size): it pages until a short page or one without news, and a listing
        holding fewer rows than 'count' says is distrusted.
        """
        if not self.settings.management_endpoint:
            raise ApiError("no management endpoint configured", operation=what)
        return _Listing(
            what=what,
            url=f"{self.settings.management_endpoint}/v1/{self.settings.project_id}/{resource}",
            workspace_id=None,
            query=(),
            rows_keys=rows_keys,
            key=key,
            total_key="count",
            limit=limit,
            condense=_as_is,
            kind=resource.split("/", 1)[0],
            exact=False,
        )

    def _list_all(
        self,
        listing: _Listing[_Row],
        keep: Callable[[_Row], _Kept],
        first_page: threading.Event | None = None,
    ) -> dict[str, _Kept]:
        """Every entry of a list by its key, from a complete listing (dlf-api.md §2.3).

        Offset paging shifts when entries are created or deleted meanwhile: an entry can be
        missed while the count still adds up (one deleted before it, one added after), and a
        missed job would look deleted. And the service glitches: an empty page, a page
        reporting another total, rows left out. So a listing is complete only when every
        page reports the same total and holds the rows that total says it must, each name
        new; a page that does not is read again (bounded), and a listing that still does
        not agree runs once more, then fails. ``keep``: what to hold of the first row of
        each name, made in listing order as pages arrive (``listing.condense`` is made of
        every row in the thread that fetched its page). ``first_page`` is set once a first
        page came.
        """
        for attempt in range(1, LIST_PASSES + 1):
            items, problem = self._page_through(listing, keep, first_page)
            if problem is None:
                return items
            log(
                logger,
                "list.inconsistent",
                level=logging.WARNING,
                what=listing.what,
                workspace=listing.workspace_id or "-",
                problem=problem,
                attempt=attempt,
            )
        raise ApiError(
            f"{problem}; refusing to work from a partial listing", operation=listing.what
        )

    def _page_through(
        self,
        listing: _Listing[_Row],
        keep: Callable[[_Row], _Kept],
        first_page: threading.Event | None = None,
    ) -> tuple[dict[str, _Kept], str | None]:
        """One pass over a listing: the entries by key, and what made it incomplete (None:
        complete). The one paging loop of the client, for every list."""
        seen: dict[str, _Kept] = {}

        def take(page: _Page[_Row]) -> int:
            before = len(seen)
            for name, row in page.rows:
                if name not in seen:
                    seen[name] = keep(row)
            return len(seen) - before

        first = self._first_page(listing)
        if isinstance(first, str):
            return seen, first
        if first_page is not None:
            first_page.set()
        page, size = first
        del first
        take(page)
        # An exact list's total says which pages there are; an open one pages to a short page.
        exact = page.total if listing.exact else None
        if exact is not None and exact == size == len(page.rows):
            # Exactly one full page: a lowered total looks the same. The next answer must
            # agree that nothing follows (in either offset reading).
            after = self._fetch_page(listing, 1)
            if after.total != exact or (after.rows and after.names() != page.names()[1:]):
                return seen, f"a full first page reported a total of {exact}; the next disagrees"
            return seen, None
        if len(page.rows) < size or (exact is not None and exact <= size):
            return seen, _short_of(listing, len(seen), page.total)
        probed = self._offset_mode(listing, page, size)
        if isinstance(probed, str):
            return seen, probed
        mode, second = probed
        del page  # a raw page of 1,000 jobs is ~2 MB; taken, it is not needed
        step = 1 if mode == "page" else size
        offset = 1 if mode == "page" else size
        if second is not None:  # a page-number probe is the second page
            take(second)
            offset = 2
            if not second.rows or (exact is None and len(second.rows) < size):
                return seen, _short_of(listing, len(seen), second.total)
        del second

        def fetch(offset: int) -> tuple[int, _Page[_Row]]:
            return offset, self._fetch_page(listing, offset)

        if exact is not None:
            # The pages the total still needs, side by side and taken in order.
            offsets = range(offset, -(-exact // size) if mode == "page" else exact, step)
        else:
            # To a short page, one at a time (the total is no guide), never a runaway loop.
            offsets = range(offset, offset + step * (MAX_OPEN_PAGES // size + 5), step)
        total: int | None = exact
        at_once = PAGES_AT_ONCE if exact is not None else 1
        with contextlib.closing(in_order(fetch, offsets, at_once)) as pages:
            for offset, page in pages:
                if exact is None:
                    total = page.total
                    if not take(page) or len(page.rows) < size:
                        break
                    continue
                start = offset * size if mode == "page" else offset
                expected = min(size, exact - start)
                agreed = self._agreeing(listing, page, offset, exact, expected, seen)
                if agreed is None:
                    self._forget_mode(listing, size)
                    return seen, (
                        f"the page at offset {offset} kept disagreeing with the listing "
                        f"(total {exact}, {expected} new rows expected)"
                    )
                take(agreed)
        return seen, _short_of(listing, len(seen), total)

    def _first_page(self, listing: _Listing[_Row]) -> tuple[_Page[_Row], int] | str:
        """The first page and the page size the service uses, or what was wrong with it.

        A page must hold as many rows as its total says (all of them, or a full page); one
        that does not is read again. The same short page twice is the service serving fewer
        rows than asked (a silent clamp, dlf-api.md §12): its size is the page size.
        """
        page = self._fetch_page(listing, 0)
        if not listing.exact:
            return page, listing.limit
        previous: _Page[_Row] | None = None
        for _ in range(PAGE_READS):
            if previous is not None:
                page = self._fetch_page(listing, 0)
            assert page.total is not None  # noqa: S101
            expected = min(listing.limit, page.total)
            if len(page.rows) == expected and page.distinct():
                return page, listing.limit
            if (
                previous is not None
                and 0 < len(page.rows) < expected
                and page.distinct()
                and page.names() == previous.names()
                and page.total == previous.total
            ):
                return page, len(page.rows)
            previous = page
        return (
            f"the first page kept disagreeing with its total ({len(page.rows)} rows, total "
            f"{page.total})"
        )

    def _offset_mode(
        self, listing: _Listing[_Row], first: _Page[_Row], size: int
    ) -> tuple[OffsetMode, _Page[_Row] | None] | str:
        """What ``offset`` means for this list: a page number (then also the second page)
        or a record offset; or why the probe could not tell.

        ``offset`` is documented both ways (dlf-api.md §2.3): ``offset=1`` is asked and
        compared with the first page. A record offset repeats the first page shifted by one;
        a page number gives new rows, as many as the total leaves. An answer that fits
        neither (empty, another total, rows left out) is asked again, never taken for a
        mode. Only a mode an answer confirmed is remembered for other listings of the list.
        """
        key = f"{listing.kind}?{size}"
        with self._lock:
            known = self._offset_modes.get(key)
        if known is not None:
            return known, None
        names = first.names()
        for _ in range(PROBE_READS):
            second = self._fetch_page(listing, 1)
            if listing.exact and second.total != first.total:
                continue
            mode = _mode_of(names, second.names(), size, first.total if listing.exact else None)
            if mode is None:
                continue
            if second.rows:  # an empty second page of an open list confirms nothing
                with self._lock:
                    self._offset_modes[key] = mode
            return mode, second if mode == "page" else None
        return "the offset probe (offset=1) answered neither as a page number nor a record offset"

    def _forget_mode(self, listing: _Listing[Any], size: int) -> None:
        """A page disagreed: the offset mode remembered for the list is asked anew."""
        with self._lock:
            self._offset_modes.pop(f"{listing.kind}?{size}", None)

    def _agreeing(
        self,
        listing: _Listing[_Row],
        page: _Page[_Row],
        offset: int,
        total: int,
        expected: int,
        seen: Mapping[str, object],
    ) -> _Page[_Row] | None:
        """``page`` (or a fresh read of it) when it reports ``total`` and holds ``expected``
        rows, every name new; None when it kept disagreeing."""
        for read in range(PAGE_READS):
            if read:
                page = self._fetch_page(listing, offset)
            names = page.names()
            if (
                page.total == total
                and len(names) == expected
                and page.distinct()
                and not any(name in seen for name in names)
            ):
                return page
        return None

    def _fetch_page(self, listing: _Listing[_Row], offset: int) -> _Page[_Row]:
        """One page, its rows condensed here (in the thread that fetched it)."""
        query = [*listing.query, ("limit", str(listing.limit)), ("offset", str(offset))]
        data = self._get_json(listing.url, listing.workspace_id, query, listing.what)
        total = data.get(listing.total_key)
        if not isinstance(total, int) or total < 0:
            if listing.exact:
                raise ApiError(
                    f"response has no valid {listing.total_key!r}", operation=listing.what
                )
            total = None
        rows_key = next((k for k in listing.rows_keys if k in data), listing.rows_keys[0])
        rows = data.get(rows_key) or []  # an empty list may come without its array
        if not isinstance(rows, list) or not all(
            isinstance(row, dict) and isinstance(row.get(listing.key), str) for row in rows
        ):
            raise ApiError(f"unexpected {rows_key!r} in response", operation=listing.what)
        return _Page([(row[listing.key], listing.condense(row)) for row in rows], total)

    def _exists(self, path: str, workspace_id: str, missing: str, what: str) -> bool:
        def attempt() -> bool:
            request = self._build("GET", path, workspace_id)
            try:
                self._send(request, what)
            except ApiError as error:
                if type(error) is ApiError and error.status == 400 and error.code == missing:
                    return False
                raise
            return True

        exists: bool = self._call(attempt, what, budget_of("GET", path))
        return exists

    # --- HTTP plumbing ------------------------------------------------------------------------

    def _build(
        self,
        method: str,
        path: str,
        workspace_id: str | None,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: bytes | None = None,
    ) -> httpx.Request:
        # The query is encoded exactly as the signer canonicalises it, so wire and signature agree.
        url = path + ("?" + encode_query(query) if query else "")
        # Management calls (instances, workspaces) are not scoped to a workspace.
        headers = {"workspace": workspace_id} if workspace_id is not None else {}
        return self._http.build_request(method, url, content=body, headers=headers)

    def _call(self, attempt: Any, what: str, budget: str = JOBS_LIST) -> Any:
        """``attempt()`` within the API's budget (its rate and calls in flight), retried."""
        chosen = self._budgets[budget]

        def limited() -> Any:
            # A start only with a slot in hand, right before sending: a call waiting for a
            # slot must not take a start and later burst with others. And no slot held
            # while waiting for the rate: backoff sleeps happen outside, holding neither,
            # but keeping the call's place in line (the budget's ``line``: lower ranks first).
            if not self._credentials_proven.is_set():
                # While the first call is out, another waits for its answer (``_send``): it
                # waits here, before it takes a start, or the service would count it as
                # late as it was sent while we counted it as early as it started.
                with self._first_call:
                    pass
            with chosen.line() as ticket:
                while True:
                    if self._cancel is not None and self._cancel.is_set():
                        raise SnapshotCancelled(f"{what}: not started, backupd is stopping")
                    with chosen.slot(ticket):
                        wait = chosen.try_start()
                        if wait <= 0:
                            chosen.started(ticket)
                            return self._attempt_started(attempt, chosen)
                    self._sleep(wait)

        return call_with_retries(
            limited,
            policy=self.settings.retry,
            what=what,
            sleep=self._sleep,
            on_retry=self._on_retry,
        )

    def _attempt_started(self, attempt: Callable[[], Any], chosen: Budget) -> Any:
        """``attempt()`` now, its round trip (or 429) told to its budget."""
        started = chosen.clock()
        try:
            result = attempt()
        except ThrottledError as error:
            wait_asked = error.retry_after
            if wait_asked is not None:  # the same cap as the retry's own wait
                wait_asked = min(wait_asked, self.settings.retry.max_retry_after)
            chosen.throttled(started, wait_asked)
            raise
        except ApiError as error:
            if error.status is not None:  # answered: a round trip all the same
                chosen.finished(started)
            raise
        chosen.finished(started)
        return result

    def _get_json(
        self, path: str, workspace_id: str | None, query: Sequence[tuple[str, str]], what: str
    ) -> dict[str, Any]:
        def attempt() -> dict[str, Any]:
            request = self._build("GET", path, workspace_id, query=query)
            return _json_object(self._send(request, what), what)

        budget = budget_of("GET", urlsplit(path).path)  # management calls give a whole URL
        result: dict[str, Any] = self._call(attempt, what, budget)
        return result

    def _send(self, request: httpx.Request, what: str) -> httpx.Response:
        if self._credentials_proven.is_set():
            return self._send_now(request, what)
        with self._first_call:
            refusal = self._refusal
            if refusal is not None and time.monotonic() - refusal[0] < REFUSAL_MEMORY:
                raise refusal[1]
            if not self._credentials_proven.is_set():
                try:
                    response = self._send_now(request, what)
                except CredentialsRejected as error:
                    self._refusal = (time.monotonic(), error)
                    raise
                self._credentials_proven.set()
                return response
        return self._send_now(request, what)

    def _send_now(self, request: httpx.Request, what: str) -> httpx.Response:
        try:
            response = self._http.send(request)
        except httpx.TransportError as error:
            raise connection_error(error, what, url=request.url) from None
        if response.status_code >= 400:
            raise error_from_response(response, what)
        return response

    def _stream_to_file(
        self, request: httpx.Request, destination: Path, max_bytes: int, what: str
    ) -> int:
        try:
            response = self._http.send(request, stream=True)
            try:
                if response.status_code >= 400:
                    response.read()
                    raise error_from_response(response, what)
                content_type = response.headers.get("content-type", "")
                if "json" in content_type:
                    # Some gateways answer 200 with an error document instead of the zip.
                    response.read()
                    raise error_from_response(response, what)
                expected = response.headers.get("content-length")
                written = 0  # decoded bytes; Content-Length counts them as sent (maybe encoded)
                with open(destination, "wb") as file:
                    for chunk in response.iter_bytes(1024 * 1024):
                        written += len(chunk)
                        if written > max_bytes:
                            raise ApiError(
                                f"export is larger than limits.max_archive_bytes ({max_bytes})",
                                operation=what,
                            )
                        file.write(chunk)
                received = response.num_bytes_downloaded
                if expected is not None and expected.isdigit() and int(expected) != received:
                    raise TransportError(
                        f"body cut short: {received} of {expected} bytes", operation=what
                    )
                return written
            finally:
                response.close()
        except httpx.TransportError as error:
            raise connection_error(error, what, url=request.url) from None


def _json_body(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def job_summary(row: Mapping[str, Any], job_type: str) -> JobSummary:
    last_update = row.get("lastUpdateTime")
    user = row.get("lastUpdateUser")
    # A few distinct types and users repeat over thousands of rows: one string each.
    return JobSummary(
        name=str(row["name"]),
        job_type=sys.intern(str(row.get("jobType") or job_type)),
        last_update_time=last_update if isinstance(last_update, int) else None,
        last_update_user=sys.intern(user) if isinstance(user, str) and user else None,
    )


def _json_object(response: httpx.Response, what: str) -> dict[str, Any]:
    """The JSON object a successful response carries; a body that does not parse was most
    likely cut short (a TransportError, which may be retried)."""
    try:
        data = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise TransportError(
            "response is not valid JSON (cut short?)",
            operation=what,
            status=response.status_code,
            request_id=_request_id(response),
        ) from None
    if not isinstance(data, dict):
        raise ApiError("response is not a JSON object", operation=what)
    return data


def _request_id(response: httpx.Response) -> str | None:
    found: str | None = response.headers.get("X-Request-Id") or response.headers.get("X-Request-ID")
    return found


def parse_error_body(body: bytes) -> tuple[str | None, str | None]:
    """(code, message) from any of the error shapes of dlf-api.md §7.3."""
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        text = body.decode("utf-8", "replace").strip()
        return None, text[:200] or None
    for candidate in _error_dicts(data):
        for code_key, message_key in (
            ("error_code", "error_msg"),
            ("errorCode", "errorMsg"),
            ("code", "message"),
        ):
            if code_key in candidate or message_key in candidate:
                code = candidate.get(code_key)
                message = candidate.get(message_key)
                return (
                    str(code) if code is not None else None,
                    str(message) if message is not None else None,
                )
    return None, None


def _error_dicts(data: Any) -> Iterator[dict[str, Any]]:
    if isinstance(data, dict):
        yield data
        for value in data.values():
            if isinstance(value, dict):
                yield value


def error_from_response(response: httpx.Response, what: str) -> ApiError:
    """Turn an error response into the matching exception."""
    code, message = parse_error_body(response.content)
    status = response.status_code
    message = message or response.reason_phrase or "no error message"
    details: dict[str, Any] = {
        "status": status,
        "code": code,
        "request_id": _request_id(response),
        "operation": what,
    }
    if status == 401 or code == "APIGW.0301":
        if is_clock_skew_message(message):
            return ClockSkewError(
                f"{message} — the local clock differs from the server's by more than 15 "
                "minutes; synchronise it (NTP)",
                **details,
            )
        return CredentialsRejected(
            f"{message} — the credentials were rejected (wrong or expired AK/SK, password or "
            "token?)",
            **details,
        )
    if status == 403 or code == "DLF.6888":
        # Authenticated but not allowed: often one workspace only (a missing workspace role).
        return AuthError(message, **details)
    if status == 429 or code == "APIGW.0308":
        return ThrottledError(message, retry_after=_retry_after(response), **details)
    if status >= 500:
        return ServerError(message, **details)
    return ApiError(message, **details)


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return float(value)
    except ValueError:
        return None
