"""The pure parts of a restore: what goes into the zip, dependents, dates, atomic writes."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from backupd.errors import RestoreError
from backupd.restore.plan import (
    dependents,
    index_jobs,
    parse_moment,
    restore_entries,
    split_entries,
    write_atomically,
    zip_bytes,
)
from backupd.store.normalise import canonical_json, script_view


def job(name: str, depends: list[Any] | None = None, **extra: Any) -> bytes:
    cron = {"dependJobs": {"jobs": depends or [], "sameWorkSpaceJobs": []}}
    return canonical_json({"name": name, "schedule": {"type": "CRON", "cron": cron}, **extra})


def script(name: str, content: str = "SELECT 1;", kind: str = "HiveSQL") -> bytes:
    return canonical_json({"name": name, "type": kind, "content": content})


def tree() -> dict[str, bytes]:
    """A stored workspace tree as snapshot writes it, views and metadata included."""
    return {
        "jobs/a/a.job": job("a"),
        "jobs/a/s1.script": script("s1"),
        "jobs/a/s1.sql": script_view(json.loads(script("s1")))[1],  # type: ignore[index]
        "jobs/b/b.job": job("b", ["a"]),
        "jobs/b/s1.script": script("s1"),
        "jobs/b/s1.sql": script_view(json.loads(script("s1")))[1],  # type: ignore[index]
        "jobs/b/s2.script": script("s2", "echo hi", "Shell"),
        "jobs/b/s2.sh": b"echo hi\n",
        "jobs/c/c.job": job("c", depends=[{"jobName": "b"}]),
        "jobs/c/notes.sql": b"-- a real exported file, not a view\n",
        "jobs/作业/作业.job": job("作业"),
        "jobs/orphan/x.script": script("x"),  # a folder without its .job is not a job
        "scripts/s1.script": script("s1"),
        "scripts/s1.sql": b"SELECT 1;\n",
        "scripts/s9.script": script("s9"),
        ".backupd/index.json": b"{}",
    }


def test_jobs_are_folders_holding_their_job_file() -> None:
    index = index_jobs(tree())
    assert list(index) == ["a", "b", "c", "作业"]
    assert index["b"][0] == "jobs/b/b.job"


def test_entries_leave_out_derived_views_and_metadata_and_keep_real_files() -> None:
    entries = restore_entries(tree(), ["a", "b", "c"], ["s1", "s9"])
    assert list(entries) == [
        "jobs/a/a.job",
        "jobs/a/s1.script",
        "jobs/b/b.job",
        "jobs/b/s1.script",
        "jobs/b/s2.script",
        "jobs/c/c.job",
        "jobs/c/notes.sql",
        "scripts/s9.script",  # s1 already travels with job a
    ]
    # JSON is re-serialised compactly, with the same values.
    assert entries["jobs/b/b.job"] == (
        b'{"name":"b","schedule":{"cron":{"dependJobs":{"jobs":["a"],'
        b'"sameWorkSpaceJobs":[]}},"type":"CRON"}}'
    )
    assert json.loads(entries["jobs/a/s1.script"]) == json.loads(script("s1"))


def test_dependents_are_followed_transitively_through_both_dependency_lists() -> None:
    definitions = {
        name: json.loads(data)
        for name, data in ((n, tree()[p[0]]) for n, p in index_jobs(tree()).items())
    }
    definitions["d"] = {
        "name": "d",
        "schedule": {
            "cron": {"dependJobs": {"sameWorkSpaceJobs": ["c"], "otherWorkSpaceJobs": ["a"]}}
        },
    }
    assert dependents(definitions, ["a"]) == {"b", "c", "d"}
    assert dependents(definitions, ["c"]) == {"d"}
    assert dependents(definitions, ["d"]) == set()


def test_zip_holds_exactly_the_entries_with_utf8_names() -> None:
    entries = restore_entries(tree(), ["作业"])
    data = zip_bytes(entries, datetime(2026, 11, 20, 3, 0, tzinfo=UTC))
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() == ["jobs/作业/作业.job"]
        info = archive.infolist()[0]
        assert info.flag_bits & 0x800 and info.date_time == (2026, 11, 20, 3, 0, 0)


def test_split_keeps_each_job_with_its_scripts_and_respects_the_limit() -> None:
    entries = restore_entries(tree(), ["a", "b", "c", "作业"], ["s9"])
    parts = split_entries(entries, 250)
    assert len(parts) > 1
    assert [p for part in parts for p in part] == list(entries)
    for part in parts:
        assert sum(len(d) for d in part.values()) <= 250
        folders = {p.split("/")[1] for p in part if p.startswith("jobs/")}
        for folder in folders:
            assert all(p in part for p in entries if p.startswith(f"jobs/{folder}/"))
    with pytest.raises(RestoreError, match="more than the 10 bytes"):
        split_entries(entries, 10)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-20", datetime(2026, 11, 20, tzinfo=UTC)),
        ("2026-11-20 03:00", datetime(2026, 11, 20, 3, 0, tzinfo=UTC)),
        ("2026-11-20T03:00:00Z", datetime(2026, 11, 20, 3, 0, tzinfo=UTC)),
        ("2026-11-20T11:00:00+08:00", datetime(2026, 11, 20, 3, 0, tzinfo=UTC)),
        ("20261120T030000Z", datetime(2026, 11, 20, 3, 0, tzinfo=UTC)),
        ("snapshot/2026-11-20T030000Z", None),
        ("a1b2c3d", None),
        ("HEAD~2", None),
    ],
)
def test_dates_are_iso_8601_and_naive_means_utc(text: str, expected: datetime | None) -> None:
    assert parse_moment(text) == expected


def test_an_invalid_date_is_an_error_not_a_revision() -> None:
    with pytest.raises(RestoreError, match="not a valid date"):
        parse_moment("2026-13-45")


def test_atomic_write_leaves_no_file_when_it_fails(tmp_path: Path) -> None:
    target = tmp_path / "jobs.zip"
    write_atomically(target, b"zip")
    assert target.read_bytes() == b"zip"
    with pytest.raises(RestoreError, match="does not exist"):
        write_atomically(tmp_path / "missing" / "jobs.zip", b"zip")
    (tmp_path / "dir.zip").mkdir()
    with pytest.raises(RestoreError, match="cannot write"):
        write_atomically(tmp_path / "dir.zip", b"zip")  # rename onto a directory fails
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.zip", "jobs.zip"]
