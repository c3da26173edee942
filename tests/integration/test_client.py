"""The DataArts client against the simulator: paging in both offset styles, errors, export."""

from __future__ import annotations

import itertools
import threading
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from backupd.dataarts import client as client_module
from backupd.dataarts.auth import StaticTokenAuth
from backupd.dataarts.client import (
    PAGES_AT_ONCE,
    ClientSettings,
    DataArtsClient,
    JobSummary,
    error_from_response,
)
from backupd.dataarts.retry import RetryPolicy
from backupd.errors import ApiError, AuthError, ClockSkewError, ServerError, ThrottledError
from backupd.secret import Secret
from backupd.simulator.server import DEFAULT_TOKEN, Simulator
from tests.helpers import workspace_id

WID = workspace_id(5)


def client_for(
    simulator: Simulator, *, page_size: int = 100, token: str = DEFAULT_TOKEN
) -> DataArtsClient:
    settings = ClientSettings(
        endpoint=simulator.url,
        project_id=simulator.project_id,
        page_size=page_size,
        timeout=10,
        retry=RetryPolicy(attempts=2, base_delay=0.01),
        requests_per_second=1000,
        exports_per_second=1000,
    )
    return DataArtsClient(settings, StaticTokenAuth(Secret(token)))


@pytest.mark.parametrize("offset_mode", ["page", "record"])
@pytest.mark.parametrize("page_size", [7, 50, 1000])
def test_listing_pages_through_every_job_whatever_offset_means(
    offset_mode: str, page_size: int
) -> None:
    with Simulator(offset_mode=offset_mode) as simulator:  # type: ignore[arg-type]
        simulator.add_workspace(WID, "ws")
        simulator.populate(WID, 93, realtime_fraction=0.3)
        with client_for(simulator, page_size=page_size) as client:
            jobs = client.list_jobs(WID)
            scripts = client.list_scripts(WID)
        listing_calls = [c for c in simulator.calls if c.path.endswith("/jobs")]

    assert [j.name for j in jobs] == sorted(simulator.jobs(WID))
    assert {j.job_type for j in jobs} == {"BATCH", "REAL_TIME"}
    assert all(j.last_update_time and j.last_update_user for j in jobs)
    assert sorted(s["name"] for s in scripts) == sorted(simulator.scripts(WID))
    # Bounded: one pass (plus a one-off probe) per job type, never a runaway loop.
    assert len(listing_calls) <= 2 * (93 // page_size + 3)
    assert all(c.workspace == WID for c in simulator.calls)


def test_export_streams_a_zip_holding_exactly_the_asked_jobs(
    simulator: Simulator, tmp_path: Path
) -> None:
    simulator.add_workspace(WID, "ws")
    names = sorted(simulator.populate(WID, 12))[:5]
    with client_for(simulator) as client:
        size = client.export_jobs(WID, names, tmp_path / "jobs.zip")
    with zipfile.ZipFile(tmp_path / "jobs.zip") as archive:
        entries = {info.filename: archive.read(info) for info in archive.infolist()}
    assert size == (tmp_path / "jobs.zip").stat().st_size
    assert entries == simulator.export_files(WID, names)


def test_export_refuses_more_than_100_names_before_calling(
    simulator: Simulator, tmp_path: Path
) -> None:
    simulator.add_workspace(WID, "ws")
    with client_for(simulator) as client, pytest.raises(ValueError, match="1 to 100"):
        client.export_jobs(WID, [f"j{i}" for i in range(101)], tmp_path / "x.zip")
    assert simulator.calls == []


def test_api_errors_carry_code_message_status_and_request_id(
    simulator: Simulator, tmp_path: Path
) -> None:
    simulator.add_workspace(WID, "ws")
    with client_for(simulator) as client, pytest.raises(ApiError) as caught:
        client.export_jobs(WID, ["no_such_job"], tmp_path / "x.zip")
    error = caught.value
    assert (error.status, error.code) == (400, "DLF.0100")
    assert error.message == "The job does not exist."
    assert error.request_id and error.request_id in str(error)
    assert not (tmp_path / "x.zip").exists() or (tmp_path / "x.zip").stat().st_size == 0


def test_wrong_token_is_an_auth_error_after_one_request(simulator: Simulator) -> None:
    simulator.add_workspace(WID, "ws")
    with client_for(simulator, token="wrong") as client, pytest.raises(AuthError):
        client.list_jobs(WID)


def _response(status: int, body: bytes, **headers: str) -> httpx.Response:
    return httpx.Response(status, content=body, headers=headers)


@pytest.mark.parametrize(
    ("body", "code", "message"),
    [
        (
            b'{"error_code":"DLF.3051","error_msg":"The request parameter is invalid."}',
            "DLF.3051",
            "The request parameter is invalid.",
        ),
        (
            b'{"errorCode":"DLF.0100","errorMsg":"The job does not exist."}',
            "DLF.0100",
            "The job does not exist.",
        ),
        (b'{"code":"APIGW.0101","message":"API not found"}', "APIGW.0101", "API not found"),
        (
            b'{"error":{"code":"401","message":"The token must be updated"}}',
            "401",
            "The token must be updated",
        ),
        (b"<html>bad gateway</html>", None, "<html>bad gateway</html>"),
    ],
)
def test_every_documented_error_shape_is_parsed(
    body: bytes, code: str | None, message: str
) -> None:
    error = error_from_response(_response(400, body, **{"X-Request-Id": "r-1"}), "list jobs")
    assert (error.code, error.message, error.request_id) == (code, message, "r-1")


def test_error_classes_follow_status_and_code() -> None:
    assert isinstance(
        error_from_response(_response(429, b"{}", **{"Retry-After": "3"}), "x"), ThrottledError
    )
    throttled = error_from_response(
        _response(
            429, b'{"error_code":"APIGW.0308","error_msg":"throttled"}', **{"Retry-After": "3"}
        ),
        "x",
    )
    assert isinstance(throttled, ThrottledError) and throttled.retry_after == 3.0
    assert isinstance(error_from_response(_response(503, b""), "x"), ServerError)
    skew = error_from_response(
        _response(
            401,
            b'{"error_code":"APIGW.0301","error_msg":"signature expired, '
            b'signature time:20250101T000000Z,server time:20250101T010000Z"}',
        ),
        "x",
    )
    assert isinstance(skew, ClockSkewError) and "clock" in str(skew)


@pytest.mark.parametrize("offset_mode", ["page", "record"])
def test_a_job_deleted_while_paging_is_not_mistaken_for_another(offset_mode: str) -> None:
    # Deleted after the first page: later pages shift up and skip a job, while the count
    # still adds up (the deleted job was seen). Taken as is, the skipped job would be
    # recorded as deleted and the deleted one kept.
    with Simulator(offset_mode=offset_mode) as simulator:  # type: ignore[arg-type]
        simulator.add_workspace(WID, "ws")
        simulator.populate(WID, 40, realtime_fraction=0.0)
        doomed = sorted(simulator.jobs(WID))[2]
        simulator.faults.delete_after_listing = [doomed]
        with client_for(simulator, page_size=7) as client:
            jobs = client.list_jobs(WID)
        assert [j.name for j in jobs] == sorted(simulator.jobs(WID))
        assert doomed not in {j.name for j in jobs} and len(jobs) == 39


def test_a_listing_whose_total_keeps_changing_is_refused() -> None:
    with Simulator() as simulator:
        simulator.add_workspace(WID, "ws")
        simulator.populate(WID, 40, realtime_fraction=0.0)
        simulator.faults.create_while_listing = True
        with client_for(simulator, page_size=7) as client, pytest.raises(ApiError) as caught:
            client.list_jobs(WID)
        assert "refusing to work from a partial listing" in str(caught.value)


def test_the_pages_after_the_first_are_requested_side_by_side() -> None:
    # A listing is a chain of pages; one page at a time leaves the listing rate unused.
    with Simulator() as simulator:
        simulator.add_workspace(WID, "ws")
        simulator.populate(WID, 40, realtime_fraction=0.0)
        simulator.faults.latency = 0.1
        with client_for(simulator, page_size=5) as client:
            jobs = client.list_jobs(WID)
        pages = [r for r in simulator.served if r.path.endswith("/jobs")]
    assert [j.name for j in jobs] == sorted(simulator.jobs(WID))
    events = sorted([(r.received, 1) for r in pages] + [(r.answered, -1) for r in pages])
    in_flight = list(itertools.accumulate(step for _, step in events))
    assert 2 <= max(in_flight) <= PAGES_AT_ONCE


def test_pages_side_by_side_are_made_summaries_where_they_arrive(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Pages wait for their turn (they are taken in order): as raw rows a 1,000-job page is
    # ~2 MB, so each is condensed in the thread that fetched it, before it waits.
    threads: list[str] = []
    summary_of = client_module.job_summary

    def recording(row: dict[str, Any], job_type: str) -> JobSummary:
        threads.append(threading.current_thread().name)
        return summary_of(row, job_type)

    monkeypatch.setattr(client_module, "job_summary", recording)
    with Simulator() as simulator:
        simulator.add_workspace(WID, "ws")
        simulator.populate(WID, 40, realtime_fraction=0.0)
        with client_for(simulator, page_size=5) as client:
            jobs = client.list_jobs(WID)
    assert [j.name for j in jobs] == sorted(simulator.jobs(WID))
    # The first page and the offset probe come one at a time; the other six side by side.
    assert sum(name.startswith("page") for name in threads) == 30
