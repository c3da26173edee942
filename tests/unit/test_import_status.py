"""Reading a system task: either spelling of its subtask list, and each job by its exact name."""

from __future__ import annotations

from typing import Any

import pytest

from backupd.restore.importer import _part_result, subtask_job, task_subtasks

JOBS = ("job", "the", "job_batch", "x", "Import the x job.")


@pytest.mark.parametrize(
    ("name", "job"),
    [
        ("Import the job_batch job.", "job_batch"),
        ("Import the job job.", "job"),
        ("Import the the job.", "the"),
        ("job_batch", "job_batch"),  # the bare name
        ("the", "the"),
        # Substrings and near misses name nothing.
        ("Import the y job.", None),
        ("Import the job_batch job", None),
        ("import the job_batch job.", None),
        ("Import the job_batch job. ", None),
        ("job_batch ", None),
        ("Importing the job", None),
        # 'x' and the job literally called 'Import the x job.': not guessed.
        ("Import the x job.", None),
        ("Import the Import the x job. job.", "Import the x job."),
        ("x", "x"),
        # No usable name.
        ("", None),
        (None, None),
        (42, None),
        (["job"], None),
    ],
)
def test_a_subtask_names_one_job_exactly_or_none(name: object, job: str | None) -> None:
    assert subtask_job(name, JOBS) == job


@pytest.mark.parametrize("key", ["subtasks", "subTasks", "sub_tasks", "SubTasks"])
def test_the_subtask_list_is_read_under_either_spelling(key: str) -> None:
    task = {"status": "SUCCESSFUL", key: [{"name": "a"}, "junk", None, {"name": "b"}]}
    assert [s["name"] for s in task_subtasks(task)] == ["a", "b"]


@pytest.mark.parametrize("value", [None, {}, "subtasks", 3])
def test_a_subtask_list_that_is_not_a_list_holds_nothing(value: object) -> None:
    assert task_subtasks({"subtasks": value}) == []


def outcome(task: dict[str, Any], jobs: tuple[str, ...] = JOBS) -> dict[str, str]:
    result = _part_result("obs://b/k.zip", "t1", task, jobs, set(), overwrite=False)
    return {job.name: job.status for job in result.jobs}


def test_the_sdk_shape_with_extra_fields_gives_each_job_its_status() -> None:
    # ListSystemTasksResponse / SubTaskStatus as the SDK (3.1.219) models them, plus fields
    # no model has: unknown fields are ignored.
    task = {
        "id": "t1",
        "name": "Import the job from obs://b/k.zip.",
        "startTime": "1544777081000",
        "lastUpdate": 1544777083000,
        "status": "SUCCESSFUL",
        "subTasks": [
            {
                "id": "s1",
                "name": "Import the x job.",
                "startTime": "1",
                "endTime": "2",
                "status": "successful",
                "taskId": "t1",
                "extra": {"nested": True},
            },
            {"id": "s2", "name": "Import the job job.", "status": "FAILED"},
            {"id": "s3", "name": "Import the the job.", "status": "SUCCESSFUL"},
        ],
    }
    assert outcome(task, ("x", "job", "the", "job_batch")) == {
        "x": "SUCCESSFUL",
        "job": "FAILED",
        "the": "SUCCESSFUL",
        "job_batch": "UNKNOWN",  # no subtask names it
    }


def test_a_job_never_takes_another_jobs_subtask() -> None:
    # The old matching (substring, longest name first) gave 'job' the subtask of 'x'.
    task = {
        "status": "FAILED",
        "subtasks": [
            {"name": "Import the x job.", "status": "FAILED"},
            {"name": "Import the job_batch job.", "status": "SUCCESSFUL"},
        ],
    }
    statuses = outcome(task, ("job", "the", "job_batch", "x"))
    assert statuses == {
        "job": "UNKNOWN",
        "the": "UNKNOWN",
        "job_batch": "SUCCESSFUL",
        "x": "FAILED",
    }


def test_a_nameless_subtask_is_not_given_to_the_only_job() -> None:
    task = {"status": "SUCCESSFUL", "subtasks": [{"id": "s1", "status": "SUCCESSFUL"}]}
    result = _part_result("obs://b/k.zip", "t1", task, ["alone"], set(), overwrite=False)
    assert [(j.name, j.status, j.known) for j in result.jobs] == [("alone", "UNKNOWN", False)]
    assert result.other_subtasks == ("(no usable name): SUCCESSFUL",)
    assert not result.ok and not result.failed  # not a success, but the next part may go


@pytest.mark.parametrize(
    ("statuses", "status"),
    [
        (["SUCCESSFUL", "SUCCESSFUL"], "SUCCESSFUL"),
        (["SUCCESSFUL", "FAILED"], "FAILED"),
        (["SUCCESSFUL", "RUNNING"], "UNKNOWN"),
        ([None], "UNKNOWN"),
        ([""], "UNKNOWN"),
        (["RUNNING"], "RUNNING"),
    ],
)
def test_a_job_with_several_or_odd_subtask_statuses(statuses: list[object], status: str) -> None:
    task = {"status": "SUCCESSFUL", "subtasks": [{"name": "a", "status": s} for s in statuses]}
    result = _part_result("obs://b/k.zip", "t1", task, ["a"], set(), overwrite=False)
    assert result.jobs[0].status == status
    assert result.ok is (status == "SUCCESSFUL")
    assert result.failed is (status == "FAILED")


def test_a_failed_task_fails_its_part_even_when_every_job_succeeded() -> None:
    task = {"status": "FAILED", "subtasks": [{"name": "a", "status": "SUCCESSFUL"}]}
    result = _part_result("obs://b/k.zip", "t1", task, ["a"], set(), overwrite=False)
    assert not result.ok and result.failed
