"""The index file is written row by row; it must stay byte for byte the canonical JSON."""

from __future__ import annotations

from backupd.dataarts.client import JobSummary
from backupd.snapshot.plan import index_bytes
from backupd.store.index import JobRecord, WorkspaceIndex
from backupd.store.normalise import canonical_json


def _canonical(jobs: list[JobSummary]) -> bytes:
    return canonical_json(
        {
            "jobs": {
                job.name: {
                    "jobType": job.job_type,
                    "lastUpdateTime": job.last_update_time,
                    "lastUpdateUser": job.last_update_user,
                }
                for job in jobs
            },
            "resources": {},
            "scripts": {},
            "version": 2,
        }
    )


def test_index_rows_are_the_canonical_json_of_the_index() -> None:
    jobs = [
        JobSummary("zeta", "BATCH", 1_700_000_000_000, "alice"),
        JobSummary("Alpha", "REAL_TIME", None, None),
        JobSummary('quo"te\\back', "BATCH", 0, "bob"),
        JobSummary("日本語ジョブ", "BATCH", 2**60, "用户"),
        JobSummary("tab\tnew\nline", "BATCH", -1, ""),
        JobSummary("a", "BATCH", 1, "first"),
        JobSummary("a", "BATCH", 2, "second"),  # a repeated name: the last row wins, as in a dict
    ]
    assert index_bytes(jobs) == _canonical(jobs)


def test_an_empty_workspace_has_an_empty_index() -> None:
    assert index_bytes([]) == _canonical([])
    assert (
        index_bytes([])
        == b'{\n  "jobs": {},\n  "resources": {},\n  "scripts": {},\n  "version": 2\n}\n'
    )


def test_paths_and_exported_names_are_recorded_where_they_differ() -> None:
    index = WorkspaceIndex(
        jobs={
            "CON": JobRecord(
                "BATCH", 5, "王伟", "CON~0123456789", {"CON~0123456789.job": "jobs/CON/CON.job"}
            ),
            "flat": JobRecord("REAL_TIME", None, None, None, {"flat.job": "jobs/flat.job"}),
            "plain": JobRecord("BATCH", 1, "a"),
        },
        scripts={"aux": "aux~0123456789"},
        resources={"lib\\jar": "lib_jar~0123456789"},
    )
    expected = canonical_json(
        {
            "jobs": {
                "CON": {
                    "files": {"CON~0123456789.job": "jobs/CON/CON.job"},
                    "jobType": "BATCH",
                    "lastUpdateTime": 5,
                    "lastUpdateUser": "王伟",
                    "path": "CON~0123456789",
                },
                "flat": {
                    "files": {"flat.job": "jobs/flat.job"},
                    "jobType": "REAL_TIME",
                    "lastUpdateTime": None,
                    "lastUpdateUser": None,
                },
                "plain": {"jobType": "BATCH", "lastUpdateTime": 1, "lastUpdateUser": "a"},
            },
            "resources": {"lib\\jar": "lib_jar~0123456789"},
            "scripts": {"aux": "aux~0123456789"},
            "version": 2,
        }
    )
    assert index.to_bytes() == expected
    assert WorkspaceIndex.parse(expected) == index


def test_a_first_format_index_reads_as_names_stored_as_they_are() -> None:
    index = WorkspaceIndex.parse(b'{"jobs": {"CON": {"jobType": "BATCH", "lastUpdateTime": 3}}}')
    assert index.version == 1
    assert index.job_folder("CON") == "CON"
    assert index.jobs["CON"].zip_entry("CON", "CON.job") == "jobs/CON/CON.job"
