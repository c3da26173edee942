"""The importer's polls of a DataArts import task, without waiting between them."""

from __future__ import annotations

import functools

import pytest

from backupd.restore import importer


def instant_import_polls(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Make ``backupd restore --import`` (in this process) record each delay before a poll of
    the import task instead of sleeping it; returns that list.

    The simulator ends a task after a number of polls, not of seconds, so the import reads
    the same task states as with real waits; only the waiting is gone.
    """
    delays: list[float] = []
    # The command imports import_plan when it runs: the patched one is what it finds.
    patched = functools.partial(importer.import_plan, sleep=delays.append)
    monkeypatch.setattr(importer, "import_plan", patched)
    return delays
