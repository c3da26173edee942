"""DataArts Factory (DLF v1) REST client: job, script and resource listings, batch export,
import, and the management listings (instances, workspaces) that workspace discovery needs.

Facts behind the choices here are in dlf-api.md: the 'workspace' and 'X-Project-Id' headers
on every call, two listings (BATCH and REAL_TIME), undocumented paging semantics (§2.3),
at most 100 names per batch export, error bodies in several shapes (§7.3), and instances and
workspaces on a second host, ``dayu.<region>`` (§1.1, §1.4).
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import ssl
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar
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

MAX_EXPORT_NAMES = 100  # documented per-call limit of batch-export
# How long a refusal of the credentials is repeated without asking again (then one more try).
REFUSAL_MEMORY = 60.0
MAX_RESOURCE_LIMIT = 100  # documented page size range of the resource list: 1-100
MAX_WORKSPACE_LIMIT = 100  # documented page size range of the workspace list: 1-100
INSTANCE_LIMIT = 20  # the instance list's documented default; its maximum is not documented
INSTANCE_EFFECTIVE = 2  # instance status: 1 not effective, 2 effective, 3 deleted, 4 frozen…
JOB_TYPES = ("BATCH", "REAL_TIME")
OffsetMode = Literal["page", "record"]
# Pages of one listing requested side by side once its first page told the total: a
# workspace's listings are chains of pages, and one chain at a time cannot use the listing
# rate. The client's connection slots and rate limit still apply to each page.
PAGES_AT_ONCE = 3


_Kept = TypeVar("_Kept")
_Row = TypeVar("_Row")
_Fetched = TypeVar("_Fetched")


def _as_is(row: _Row) -> _Row:
    return row


def _in_order(fetch: Callable[[int], _Fetched], offsets: range, at_once: int) -> Iterator[_Fetched]:
    """``fetch(offset)`` for each offset, ``at_once`` in flight, results in offset order.

    Stopping early (or a failed fetch) cancels the fetches not started yet.
    """
    if not offsets:
        return
    with ThreadPoolExecutor(min(at_once, len(offsets)), thread_name_prefix="page") as pool:
        pending: deque[Future[_Fetched]] = deque()
        upcoming = iter(offsets)
        try:
            for offset in itertools.islice(upcoming, at_once):
                pending.append(pool.submit(fetch, offset))
            while pending:
                result = pending.popleft().result()
                for offset in itertools.islice(upcoming, 1):
                    pending.append(pool.submit(fetch, offset))
                yield result
        finally:
            for future in pending:
                future.cancel()


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

    def list_jobs(self, workspace_id: str) -> list[JobSummary]:
        """Every job of the workspace (BATCH and REAL_TIME), unique by name, sorted."""
        jobs: dict[str, JobSummary] = {}
        for job_type in JOB_TYPES:
            summaries = self._list_all(
                "jobs",
                "jobs",
                workspace_id,
                extra=[("jobType", job_type)],
                what="list jobs",
                # A summary per row as each page arrives: a raw row is ten times its size.
                condense=functools.partial(_job_summary, job_type=job_type),
            )
            for summary in summaries.values():
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

    def list_scripts(
        self,
        workspace_id: str,
        keep: Callable[[dict[str, Any]], _Kept] = _as_is,  # type: ignore[assignment]
    ) -> list[_Kept]:
        """Every standalone script definition of the workspace (content included), by name.

        ``keep``: what to hold of each definition, made as its page arrives.
        """
        scripts = self._list_all(
            "scripts",
            "scripts",
            workspace_id,
            extra=[],
            what="list scripts",
            max_limit=100,
            keep=keep,
        )
        return [scripts[name] for name in sorted(scripts)]

    def list_resources(self, workspace_id: str) -> list[dict[str, Any]]:
        """Every resource definition of the workspace (name, type, OBS location, …)."""
        rows = self._list_all(
            "resources",
            "resources",
            workspace_id,
            extra=[],
            what="list resources",
            max_limit=MAX_RESOURCE_LIMIT,
        )
        return [rows[name] for name in sorted(rows)]

    def list_instances(self) -> list[InstanceInfo]:
        """The project's DataArts Studio instances (management host)."""
        rows = self._list_management(
            "instances",
            ("commodity_orders", "commodity_order_lists"),  # older docs name it the latter
            "resource_id",
            limit=INSTANCE_LIMIT,
            what="list instances",
        )
        instances = [
            InstanceInfo(
                id=str(row["resource_id"]),
                name=str(row.get("resource_name") or ""),
                status=row.get("status") if isinstance(row.get("status"), int) else None,
            )
            for row in rows
        ]
        return sorted(instances, key=lambda instance: instance.id)

    def list_workspaces(self, instance_id: str) -> list[WorkspaceInfo]:
        """Every workspace of one instance (management host), sorted by name."""
        rows = self._list_management(
            f"workspaces/{quote(instance_id, safe='')}",
            ("data",),
            "id",
            limit=min(self.settings.page_size, MAX_WORKSPACE_LIMIT),
            what="list workspaces",
        )
        workspaces = [
            WorkspaceInfo(
                id=str(row["id"]),
                name=str(row.get("name") or row["id"]),
                instance_id=str(row.get("instance_id") or instance_id),
            )
            for row in rows
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

    def _list_all(
        self,
        resource: str,
        item_key: str,
        workspace_id: str,
        *,
        extra: list[tuple[str, str]],
        what: str,
        max_limit: int = 1000,
        condense: Callable[[dict[str, Any]], _Row] = _as_is,  # type: ignore[assignment]
        keep: Callable[[_Row], _Kept] = _as_is,  # type: ignore[assignment]
    ) -> dict[str, _Kept]:
        """Page through a listing until ``total`` distinct names are seen (dlf-api.md §2.3).

        Offset paging shifts when entries are created or deleted meanwhile: an entry can be
        missed while the count still adds up (one deleted before it, one added after), and a
        missed job would be recorded as deleted. So every page must report the same total,
        and the distinct names must reach it; else the listing runs once more, then fails.
        ``condense``: what to make of every row, in the thread that fetched its page (pages
        wait there for their turn: a raw page of 1,000 jobs is ~2 MB). ``keep``: what to hold
        of the first row of each name, made in listing order as pages arrive.
        """
        limit = min(self.settings.page_size, max_limit)
        listing = functools.partial(
            self._page_through,
            resource,
            item_key,
            workspace_id,
            extra,
            limit,
            what,
            condense,
            keep,
        )
        items, total, stable = listing()
        if len(items) < total or not stable:
            log(
                logger,
                "list.inconsistent",
                level=logging.WARNING,
                what=what,
                seen=len(items),
                total=total,
                workspace=workspace_id,
            )
            items, total, stable = listing()
            if len(items) < total or not stable:
                problem = (
                    f"listing returned {len(items)} distinct entries but reported {total}"
                    if len(items) < total
                    else "the reported total changed while paging"
                )
                raise ApiError(
                    f"{problem}; refusing to work from a partial listing",
                    operation=what,
                )
        return items

    def _page_through(
        self,
        resource: str,
        item_key: str,
        workspace_id: str,
        extra: list[tuple[str, str]],
        limit: int,
        what: str,
        condense: Callable[[dict[str, Any]], _Row],
        keep: Callable[[_Row], _Kept],
    ) -> tuple[dict[str, _Kept], int, bool]:
        """The entries by name, the last total reported, and whether every page reported it."""
        path = f"/v1/{self.settings.project_id}/{resource}"
        totals: set[int] = set()

        def fetch(offset: int) -> tuple[list[tuple[str, _Row]], int]:
            query = [*extra, ("limit", str(limit)), ("offset", str(offset))]
            data = self._get_json(path, workspace_id, query, what)
            rows = data.get(item_key) or []
            if not isinstance(rows, list) or not all(
                isinstance(row, dict) and isinstance(row.get("name"), str) for row in rows
            ):
                raise ApiError(f"unexpected {item_key!r} in response", operation=what)
            total = data.get("total")
            if not isinstance(total, int) or total < 0:
                raise ApiError("response has no valid 'total'", operation=what)
            totals.add(total)
            return [(row["name"], condense(row)) for row in rows], total

        seen: dict[str, _Kept] = {}

        def take(rows: list[tuple[str, _Row]]) -> None:
            for name, row in rows:
                if name not in seen:
                    seen[name] = keep(row)

        first, total = fetch(0)
        take(first)
        if len(first) < limit or len(seen) >= total:
            return seen, total, len(totals) == 1

        mode_key = f"{resource}?{limit}"
        with self._lock:
            mode = self._offset_modes.get(mode_key)
        offset = 1
        if mode is None:
            # offset is documented both as a page number and as a record offset: probe once.
            second, total = fetch(1)
            mode = "record" if second and second[0][0] == first[1][0] else "page"
            with self._lock:
                self._offset_modes[mode_key] = mode
            take(second)
            if mode == "page" and (len(second) < limit or len(seen) >= total):
                return seen, total, len(totals) == 1
            offset = 2 if mode == "page" else limit
        else:
            offset = 1 if mode == "page" else limit
        del first
        step = 1 if mode == "page" else limit
        # The pages the reported total still needs, side by side and taken in order.
        end = -(-total // limit) if mode == "page" else total
        rows: list[tuple[str, _Row]] = []
        for rows, page_total in _in_order(fetch, range(offset, end, step), PAGES_AT_ONCE):
            total = page_total
            before = len(seen)
            take(rows)
            if len(seen) == before:
                break  # the service repeats itself: the count check decides
            offset += step
        if rows and (len(rows) < limit or len(seen) >= total):
            return seen, total, len(totals) == 1
        # Entries added while listing: page on, one at a time, until a short page.
        for _ in range(total // limit + 5):
            rows, total = fetch(offset)
            before = len(seen)
            take(rows)
            if len(rows) < limit or len(seen) >= total or len(seen) == before:
                break
            offset += step
        return seen, total, len(totals) == 1

    def _list_management(
        self, resource: str, item_keys: tuple[str, ...], id_key: str, *, limit: int, what: str
    ) -> list[dict[str, Any]]:
        """Page through a management list, keyed by ``id_key``.

        Its paging is documented even more loosely than the job list's (offset is a "page
        number" for instances and a "data offset" for workspaces; 'count' may be the total
        or the page size), so: probe the offset style, dedupe by id, stop on a short page or
        one without news, and distrust a listing that holds fewer rows than 'count' says.
        """
        if not self.settings.management_endpoint:
            raise ApiError("no management endpoint configured", operation=what)
        url = f"{self.settings.management_endpoint}/v1/{self.settings.project_id}/{resource}"
        for attempt in (1, 2):
            rows, count = self._page_by_id(url, item_keys, id_key, limit, what)
            if count is None or len(rows) >= count:
                return list(rows.values())
            log(
                logger,
                "list.inconsistent",
                level=logging.WARNING,
                what=what,
                seen=len(rows),
                total=count,
                attempt=attempt,
            )
        raise ApiError(
            f"listing returned {len(rows)} distinct entries but reported {count}; "
            "refusing to work from a partial listing",
            operation=what,
        )

    def _page_by_id(
        self, url: str, item_keys: tuple[str, ...], id_key: str, limit: int, what: str
    ) -> tuple[dict[str, dict[str, Any]], int | None]:
        def fetch(offset: int) -> tuple[list[dict[str, Any]], int | None]:
            query = [("limit", str(limit)), ("offset", str(offset))]
            data = self._get_json(url, None, query, what)
            count = data.get("count")
            count = count if isinstance(count, int) and count >= 0 else None
            key = next((k for k in item_keys if k in data), None)
            if key is None:
                if count in (0, None):  # an empty list may come without its array
                    return [], count
                raise ApiError(f"response has no {item_keys[0]!r}", operation=what)
            rows = data[key]
            if not isinstance(rows, list) or not all(
                isinstance(row, dict) and isinstance(row.get(id_key), str) and row[id_key]
                for row in rows
            ):
                raise ApiError(f"unexpected {key!r} in response", operation=what)
            return rows, count

        seen: dict[str, dict[str, Any]] = {}

        def add(rows: list[dict[str, Any]]) -> int:
            before = len(seen)
            for row in rows:
                seen.setdefault(row[id_key], row)
            return len(seen) - before

        first, count = fetch(0)
        add(first)
        if len(first) < limit:
            return seen, count
        second, count = fetch(1)
        record = bool(second) and len(first) > 1 and second[0][id_key] == first[1][id_key]
        if not add(second) or (not record and len(second) < limit):
            return seen, count
        step, offset = (limit, limit) if record else (1, 2)
        for _ in range(10_000 // limit + 5):  # hard cap: never a runaway loop
            rows, count = fetch(offset)
            if not add(rows) or len(rows) < limit:
                break
            offset += step
        return seen, count

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
            # while waiting for the rate: backoff sleeps happen outside, holding neither.
            while True:
                if self._cancel is not None and self._cancel.is_set():
                    raise SnapshotCancelled(f"{what}: not started, backupd is stopping")
                with chosen.slot():
                    wait = chosen.try_start()
                    if wait <= 0:
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
                self._sleep(wait)

        return call_with_retries(
            limited,
            policy=self.settings.retry,
            what=what,
            sleep=self._sleep,
            on_retry=self._on_retry,
        )

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


def _job_summary(row: Mapping[str, Any], job_type: str) -> JobSummary:
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
