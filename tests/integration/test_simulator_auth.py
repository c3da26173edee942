"""The simulator's API Gateway and IAM over real HTTP: what backupd's auth is tested against."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from backupd.dataarts.auth import AkSkAuth, is_clock_skew_message
from backupd.secret import Secret
from backupd.simulator.gateway import TOKEN_EXPIRED
from backupd.simulator.server import (
    DEFAULT_AK,
    DEFAULT_IAM_DOMAIN,
    DEFAULT_IAM_PASSWORD,
    DEFAULT_IAM_USER,
    DEFAULT_PROJECT_ID,
    DEFAULT_SK,
    Simulator,
)

WS = "a1" * 16
JOBS = f"/v1/{DEFAULT_PROJECT_ID}/jobs"


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(token=None) as simulator:
        simulator.add_workspace(WS, "sales")
        simulator.populate(WS, 5)
        yield simulator


def _login(
    http: httpx.Client,
    *,
    password: str = DEFAULT_IAM_PASSWORD,
    project: str = DEFAULT_PROJECT_ID,
) -> httpx.Response:
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {
                        "name": DEFAULT_IAM_USER,
                        "password": password,
                        "domain": {"name": DEFAULT_IAM_DOMAIN},
                    }
                },
            },
            "scope": {"project": {"id": project}},
        }
    }
    return http.post("/v3/auth/tokens?nocatalog=true", json=body)


def test_iam_issues_a_project_token_that_the_api_accepts(sim: Simulator) -> None:
    with httpx.Client(base_url=sim.url) as http:
        before = datetime.now(UTC)
        response = _login(http)
        assert response.status_code == 201
        token = response.headers["X-Subject-Token"]
        expires_at = datetime.fromisoformat(response.json()["token"]["expires_at"])
        assert (
            timedelta(hours=23, minutes=59) < expires_at - before <= timedelta(hours=24, seconds=5)
        )
        listed = http.get(JOBS, headers={"X-Auth-Token": token, "workspace": WS})
    assert listed.status_code == 200 and listed.json()["total"] == 5
    assert [(r.user, r.project_id, r.status) for r in sim.auth.token_requests] == [
        (DEFAULT_IAM_USER, DEFAULT_PROJECT_ID, 201)
    ]


@pytest.mark.parametrize(
    ("kwargs", "status", "message"),
    [
        ({"password": "wrong"}, 401, "The username or password is wrong."),
        ({"project": "f" * 32}, 401, "The request you have made requires authentication."),
    ],
)
def test_iam_refusals_have_an_iam_body(
    sim: Simulator, kwargs: dict[str, str], status: int, message: str
) -> None:
    with httpx.Client(base_url=sim.url) as http:
        response = _login(http, **kwargs)
    assert response.status_code == status
    assert "X-Subject-Token" not in response.headers
    assert response.json() == {
        "error": {"code": status, "title": "Unauthorized", "message": message}
    }


def test_iam_rejects_a_malformed_body(sim: Simulator) -> None:
    with httpx.Client(base_url=sim.url) as http:
        response = http.post("/v3/auth/tokens", json={"auth": {"identity": {}}})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == 400


def test_an_expired_token_must_be_updated(sim: Simulator) -> None:
    sim.auth.token_lifetime = timedelta(hours=1)
    with httpx.Client(base_url=sim.url, headers={"workspace": WS}) as http:
        token = _login(http).headers["X-Subject-Token"]
        assert http.get(JOBS, headers={"X-Auth-Token": token}).status_code == 200
        sim.auth.clock_offset = timedelta(hours=1, seconds=1)
        response = http.get(JOBS, headers={"X-Auth-Token": token})
    assert response.status_code == 401
    assert response.json() == {"error_code": "APIGW.0301", "error_msg": TOKEN_EXPIRED}
    assert not is_clock_skew_message(TOKEN_EXPIRED)


@pytest.mark.parametrize("header", [{}, {"X-Auth-Token": "forged"}, {"Authorization": "Basic x"}])
def test_anything_else_gets_an_apig_401(sim: Simulator, header: dict[str, str]) -> None:
    with httpx.Client(base_url=sim.url, headers={"workspace": WS, **header}) as http:
        response = http.get(JOBS)
    assert response.status_code == 401
    body = response.json()
    assert body["error_code"] == "APIGW.0301"
    assert body["error_msg"].startswith("Incorrect IAM authentication information")
    assert sim.calls == [] and len(sim.auth.failures) == 1


@pytest.mark.parametrize(
    ("offset", "ok"),
    [(timedelta(0), True), (timedelta(minutes=14), True), (timedelta(minutes=16), False)],
)
def test_signatures_are_checked_against_the_simulator_clock(
    sim: Simulator, offset: timedelta, ok: bool
) -> None:
    sim.auth.clock_offset = -offset
    auth = AkSkAuth(DEFAULT_AK, Secret(DEFAULT_SK))
    with httpx.Client(base_url=sim.url, auth=auth, headers={"workspace": WS}) as http:
        response = http.get(JOBS, params={"jobType": "REAL_TIME", "limit": "5"})
    assert (response.status_code == 200) is ok
    if not ok:
        assert is_clock_skew_message(response.json()["error_msg"])


def test_a_wrong_sk_is_refused(sim: Simulator) -> None:
    auth = AkSkAuth(DEFAULT_AK, Secret("not-the-sk"))
    with httpx.Client(base_url=sim.url, auth=auth, headers={"workspace": WS}) as http:
        response = http.get(JOBS)
    assert response.status_code == 401
    assert "verify aksk signature fail" in response.json()["error_msg"]


def test_control_api_moves_the_clock_and_expires_tokens(sim: Simulator) -> None:
    with httpx.Client(base_url=sim.url) as http:
        token = _login(http).headers["X-Subject-Token"]
        changed = http.post(
            "/_sim/auth", json={"clock_offset_seconds": -1200, "token_lifetime_seconds": 60}
        )
        assert changed.status_code == 200
        assert changed.json()["clock_offset_seconds"] == -1200
        assert sim.auth.token_lifetime == timedelta(seconds=60)
        assert http.post("/_sim/auth", json={"expire_tokens": True}).status_code == 200
        refused = http.get(JOBS, headers={"X-Auth-Token": token, "workspace": WS})
        assert refused.json()["error_msg"] == TOKEN_EXPIRED
        state = http.get("/_sim/auth").json()
        assert [r["status"] for r in state["token_requests"]] == [201]
        assert state["failures"][0]["message"] == TOKEN_EXPIRED
        assert http.post("/_sim/auth", json={"colour": 1}).status_code == 400


def test_forbidden_workspaces_get_403_after_authentication(sim: Simulator) -> None:
    sim.faults.forbidden_workspaces = [WS]
    auth = AkSkAuth(DEFAULT_AK, Secret(DEFAULT_SK))
    with httpx.Client(base_url=sim.url, auth=auth, headers={"workspace": WS}) as http:
        response = http.get(JOBS)
    assert response.status_code == 403
    assert response.json()["error_code"] == "DLF.6888"
