"""The index file is written row by row; it must stay byte for byte the canonical JSON."""

from __future__ import annotations

from backupd.dataarts.client import JobSummary
from backupd.snapshot.plan import index_bytes
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
            }
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
    assert index_bytes([]) == _canonical([]) == b'{\n  "jobs": {}\n}\n'
