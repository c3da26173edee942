"""The JobSource contract: one suite, every implementation, every field variant.

``source`` is each implementation of the protocol over the same simulated service: the
in-memory fake, and the real HTTP client talking to the simulator on loopback (small pages,
so that paging is exercised). ``variant`` is each way the real service is known to differ
(dlf-api.md §12), applied before the workspace is filled.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from backupd.dataarts.auth import StaticTokenAuth
from backupd.dataarts.client import ClientSettings, DataArtsClient
from backupd.dataarts.retry import RetryPolicy
from backupd.dataarts.source import JobSource
from backupd.secret import Secret
from backupd.simulator.fake import FakeJobSource
from backupd.simulator.server import DEFAULT_TOKEN, VARIANTS, Simulator

WORKSPACE = "c0" * 16
KINDS = ("fake", "http")
# Variants that change what a listing or an export holds (glitch variants test the client's
# paging, below the protocol: tests/integration/test_listing_glitches.py).
CONTRACT_VARIANTS = (
    "folders",
    "documented",
    "flat",
    "flat-gb18030",
    "unflagged-utf8",
    "extra-files",
    "hostile-names",
    "no-resources-api",
    "forbidden-resources-api",
    "page-offsets",
    "record-offsets",
    "clamped-100",
)


@dataclass
class World:
    simulator: Simulator
    source: JobSource
    kind: str
    variant: str

    @property
    def workspace(self) -> str:
        return WORKSPACE


def http_client(simulator: Simulator, page_size: int = 7) -> DataArtsClient:
    settings = ClientSettings(
        endpoint=simulator.url,
        project_id=simulator.project_id,
        management_endpoint=simulator.url,
        page_size=page_size,
        timeout=10,
        retry=RetryPolicy(attempts=2, base_delay=0.01),
        requests_per_second=1000,
        exports_per_second=1000,
    )
    return DataArtsClient(settings, StaticTokenAuth(Secret(DEFAULT_TOKEN)))


@pytest.fixture(scope="module", params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module", params=CONTRACT_VARIANTS)
def variant(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def world(kind: str, variant: str) -> Iterator[World]:
    """One simulated service per implementation and variant; tests leave it as they found
    it (a test that changes it undoes the change)."""
    simulator = Simulator(seed=3)
    VARIANTS[variant].apply(simulator)
    simulator.add_workspace(WORKSPACE, "contract")
    simulator.populate(WORKSPACE, 24, realtime_fraction=0.25, resources=4)
    if kind == "fake":
        yield World(simulator, FakeJobSource(simulator), kind, variant)
        return
    with simulator, http_client(simulator) as client:
        yield World(simulator, client, kind, variant)
