"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from backupd.dataarts.simulator import Simulator


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    """A DataArts simulator serving real HTTP on loopback."""
    with Simulator() as running:
        yield running
