"""An optional API absent from the service is asked for once a run, also when the
workspaces list side by side: while one workspace's first ask is under way, the others
wait for its answer instead of asking too."""

from __future__ import annotations

import threading
from typing import Any

from backupd.errors import ApiError
from backupd.snapshot.optional import RESOURCES, OptionalParts
from tests.helpers import until


def list_in_background(parts: OptionalParts, list_all: Any, workspace: str) -> threading.Thread:
    listing = parts.lister(RESOURCES, list_all)
    thread = threading.Thread(target=listing, args=(workspace,), daemon=True)
    thread.start()
    return thread


def test_side_by_side_workspaces_ask_an_absent_api_once() -> None:
    parts = OptionalParts()
    asked: list[str] = []
    first_asked, answer = threading.Event(), threading.Event()

    def list_all(workspace: str) -> list[Any]:
        asked.append(workspace)
        first_asked.set()
        answer.wait(10)
        raise ApiError("API not found", status=404, code="APIG.0101")

    first = list_in_background(parts, list_all, "w1")
    assert first_asked.wait(10)
    second = list_in_background(parts, list_all, "w2")
    until(lambda: parts.waiting(RESOURCES) == 1, "the second workspace waits for the first")
    assert asked == ["w1"]  # it waits instead of asking too
    answer.set()
    until(lambda: not first.is_alive() and not second.is_alive(), "both workspaces answered")
    assert asked == ["w1"]  # not published: the second took the first's answer
    later = parts.lister(RESOURCES, list_all)
    assert later("w3") == [] and later.reason is not None and asked == ["w1"]


def test_after_a_first_answer_with_rows_every_workspace_asks_for_its_own() -> None:
    parts = OptionalParts()
    asked: list[str] = []

    def list_all(workspace: str) -> list[Any]:
        asked.append(workspace)
        return [{"name": workspace}]

    for workspace in ("w1", "w2", "w3"):
        assert parts.lister(RESOURCES, list_all)(workspace) == [{"name": workspace}]
    assert asked == ["w1", "w2", "w3"]


def test_a_refusal_is_one_workspaces_and_the_next_asks_again() -> None:
    parts = OptionalParts()
    asked: list[str] = []

    def list_all(workspace: str) -> list[Any]:
        asked.append(workspace)
        if workspace == "w1":
            raise ApiError("forbidden", status=403, code="DLF.6888")
        return []

    first = parts.lister(RESOURCES, list_all)
    assert first("w1") == [] and first.reason is not None
    second = parts.lister(RESOURCES, list_all)
    assert second("w2") == [] and second.reason is None and second.listed
    assert asked == ["w1", "w2"]
