"""IAM token auth: caching, refresh, the one retry after a 401, and secrets kept out of sight.

IAM is a MockTransport here (the real IAM cannot run in tests); so is the API.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from backupd.dataarts.auth import IamTokenAuth, StaticTokenAuth
from backupd.errors import ApiError, AuthError, CredentialsRejected, ServerError, TransportError
from backupd.secret import Secret

IAM_URL = "https://iam.cn-north-4.myhuaweicloud.com"
API = "https://dayu-dlf.cn-north-4.myhuaweicloud.com/v1/p/jobs"
PASSWORD = "Pa55-w0rd-SECRET-xyz"
PROJECT = "0123456789abcdef0123456789abcdef"
T0 = datetime(2025, 1, 1, tzinfo=UTC)
TOKEN_MARK = "MIIQ-SECRET-TOKEN-"


@dataclass
class Clock:
    now: datetime = T0

    def __call__(self) -> datetime:
        return self.now


@dataclass
class FakeIam:
    """Issues tokens valid for `lifetime`; rejects any other password."""

    clock: Clock
    lifetime: timedelta = timedelta(hours=24)
    status: int | None = None  # force an error status
    requests: list[httpx.Request] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if self.status is not None:
            return httpx.Response(self.status, json={"error_msg": "busy"})
        user = json.loads(request.content)["auth"]["identity"]["password"]["user"]
        if user["password"] != PASSWORD:
            return httpx.Response(
                401,
                headers={"X-Request-Id": "req-1"},
                json={
                    "error": {
                        "code": 401,
                        "message": "The username or password is wrong.",
                        "title": "Unauthorized",
                    }
                },
            )
        token = f"{TOKEN_MARK}{len(self.issued)}"
        self.issued.append(token)
        expires = (self.clock.now + self.lifetime).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return httpx.Response(
            201,
            headers={"X-Subject-Token": token},
            json={"token": {"expires_at": expires, "methods": ["password"]}},
        )


@dataclass
class FakeApi:
    """Accepts tokens in `valid` (all issued ones by default) and answers 401 otherwise."""

    iam: FakeIam
    revoked: set[str] = field(default_factory=set)
    always_401: bool = False
    requests: list[httpx.Request] = field(default_factory=list)
    # (token, body) per call: the retry re-sends the same Request object with a new header.
    seen: list[tuple[str | None, bytes]] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        token = request.headers.get("X-Auth-Token")
        self.seen.append((token, request.content))
        if self.always_401 or token not in self.iam.issued or token in self.revoked:
            return httpx.Response(
                401, json={"error_code": "APIGW.0301", "error_msg": "The token must be updated"}
            )
        return httpx.Response(200, json={"jobs": [], "total": 0})


@dataclass
class Setup:
    clock: Clock
    iam: FakeIam
    api: FakeApi
    auth: IamTokenAuth
    client: httpx.Client


@pytest.fixture
def setup() -> Setup:
    clock = Clock()
    iam = FakeIam(clock)
    api = FakeApi(iam)
    auth = _auth(clock, iam)
    client = httpx.Client(transport=httpx.MockTransport(api), auth=auth)
    yield Setup(clock, iam, api, auth, client)  # type: ignore[misc]
    client.close()


def _auth(clock: Clock, iam: FakeIam, password: str = PASSWORD) -> IamTokenAuth:
    return IamTokenAuth(
        iam_url=IAM_URL + "/",
        user="alice",
        domain="acme",
        password=Secret(password),
        project_id=PROJECT,
        clock=clock,
        transport=httpx.MockTransport(iam),
    )


def test_one_token_request_for_fifty_calls(setup: Setup) -> None:
    for _ in range(50):
        assert setup.client.get(API).status_code == 200
    assert setup.auth.token_fetches == 1
    assert len(setup.iam.requests) == 1
    assert {token for token, _ in setup.api.seen} == {f"{TOKEN_MARK}0"}


def test_the_iam_request_is_a_project_scoped_password_login(setup: Setup) -> None:
    setup.client.get(API)
    request = setup.iam.requests[0]
    assert request.method == "POST"
    assert str(request.url) == f"{IAM_URL}/v3/auth/tokens?nocatalog=true"
    assert request.headers["Content-Type"].startswith("application/json")
    assert json.loads(request.content) == {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": "alice", "password": PASSWORD, "domain": {"name": "acme"}}
                },
            },
            "scope": {"project": {"id": PROJECT}},
        }
    }


def test_the_token_is_refreshed_once_an_hour_before_expiry(setup: Setup) -> None:
    setup.client.get(API)
    setup.clock.now = T0 + timedelta(hours=22, minutes=59)
    setup.client.get(API)
    assert setup.auth.token_fetches == 1
    setup.clock.now = T0 + timedelta(hours=23)
    for _ in range(5):
        assert setup.client.get(API).status_code == 200
    assert setup.auth.token_fetches == 2
    assert setup.api.seen[-1][0] == f"{TOKEN_MARK}1"


def test_a_short_lived_token_is_not_fetched_per_request(setup: Setup) -> None:
    setup.iam.lifetime = timedelta(minutes=30)  # shorter than refresh_before (1 h)
    for _ in range(10):
        setup.client.get(API)
    assert setup.auth.token_fetches == 1
    setup.clock.now = T0 + timedelta(minutes=15)  # half-way: refresh
    setup.client.get(API)
    assert setup.auth.token_fetches == 2


def test_a_401_refreshes_once_and_retries_once(setup: Setup) -> None:
    setup.client.get(API)
    setup.api.revoked.add(f"{TOKEN_MARK}0")
    response = setup.client.post(API, json={"jobList": ["a"]})
    assert response.status_code == 200
    assert setup.auth.token_fetches == 2
    body = b'{"jobList":["a"]}'
    assert setup.api.seen[-2:] == [(f"{TOKEN_MARK}0", body), (f"{TOKEN_MARK}1", body)]


def test_a_second_401_is_returned_not_looped(setup: Setup) -> None:
    setup.api.always_401 = True
    response = setup.client.get(API)
    assert response.status_code == 401
    assert response.json()["error_msg"] == "The token must be updated"
    assert len(setup.api.requests) == 2
    assert setup.auth.token_fetches == 2
    # A user the API keeps refusing must not cost an IAM call per API call.
    assert setup.client.get(API).status_code == 401
    assert len(setup.api.requests) == 3
    assert setup.auth.token_fetches == 2
    setup.clock.now += timedelta(minutes=2)
    assert setup.client.get(API).status_code == 401
    assert setup.auth.token_fetches == 3


def test_a_wrong_password_fails_after_one_iam_request() -> None:
    clock = Clock()
    iam = FakeIam(clock)
    api = FakeApi(iam)
    auth = _auth(clock, iam, password="wrong-Pa55-SECRET")
    with (
        httpx.Client(transport=httpx.MockTransport(api), auth=auth) as client,
        pytest.raises(CredentialsRejected) as info,
    ):
        client.get(API)
    assert len(iam.requests) == 1
    assert auth.token_fetches == 1
    assert api.requests == []
    error = info.value
    assert "IAM rejected the password for user alice in domain acme" in str(error)
    assert "The username or password is wrong." in str(error)
    assert error.status == 401 and error.request_id == "req-1"
    assert "wrong-Pa55-SECRET" not in str(error) and "wrong-Pa55-SECRET" not in repr(error)


@pytest.mark.parametrize(
    ("status", "error"), [(403, AuthError), (500, ServerError), (404, ApiError)]
)
def test_other_iam_failures(setup: Setup, status: int, error: type[Exception]) -> None:
    setup.iam.status = status
    with pytest.raises(error) as info:
        setup.client.get(API)
    assert PASSWORD not in str(info.value)
    assert setup.api.requests == []


def test_iam_unreachable_is_a_transport_error(setup: Setup) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    auth = IamTokenAuth(
        iam_url=IAM_URL,
        user="alice",
        domain="acme",
        password=Secret(PASSWORD),
        project_id=PROJECT,
        transport=httpx.MockTransport(refuse),
    )
    with pytest.raises(TransportError) as info:
        setup.client.get(API, auth=auth)
    assert IAM_URL in str(info.value) and PASSWORD not in str(info.value)


def test_iam_down_during_the_refresh_window_keeps_the_valid_token(setup: Setup) -> None:
    setup.client.get(API)
    setup.iam.status = 503
    setup.clock.now = T0 + timedelta(hours=23, minutes=30)
    assert setup.client.get(API).status_code == 200
    assert setup.client.get(API).status_code == 200  # no new attempt within a minute
    assert setup.auth.token_fetches == 2
    setup.iam.status = None
    setup.clock.now += timedelta(minutes=1)
    setup.client.get(API)
    assert setup.auth.token_fetches == 3
    setup.iam.status = 503
    setup.clock.now = T0 + timedelta(hours=48)  # the current token has expired: fail
    with pytest.raises(ServerError):
        setup.client.get(API)


def test_concurrent_requests_share_one_token_fetch(setup: Setup) -> None:
    statuses: list[int] = []

    def work() -> None:
        for _ in range(10):
            statuses.append(setup.client.get(API).status_code)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 80
    assert setup.auth.token_fetches == 1


def test_no_secret_in_repr_errors_or_logs(setup: Setup, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    setup.client.get(API)
    setup.clock.now = T0 + timedelta(hours=23, minutes=1)
    setup.client.get(API)
    setup.api.always_401 = True
    setup.client.get(API)
    bad = _auth(setup.clock, setup.iam, password="other-SECRET-pw")
    with pytest.raises(AuthError) as info:
        setup.client.get(API, auth=bad)

    secrets = [PASSWORD, "other-SECRET-pw", *setup.iam.issued]
    assert len(setup.iam.issued) >= 3
    texts = [repr(setup.auth), repr(bad), str(info.value), repr(info.value), caplog.text]
    texts += [record.getMessage() for record in caplog.records]
    texts += [repr(record.args) for record in caplog.records]
    for text in texts:
        for secret in secrets:
            assert secret not in text
    assert "SECRET" not in repr(setup.auth)
    assert repr(setup.auth) == (
        f"IamTokenAuth(iam_url={IAM_URL!r}, user='alice', domain='acme', project_id={PROJECT!r})"
    )


def test_static_token_auth() -> None:
    auth = StaticTokenAuth(Secret("static-SECRET"))
    request = next(auth.sync_auth_flow(httpx.Request("GET", API)))
    assert request.headers["X-Auth-Token"] == "static-SECRET"
    assert "static-SECRET" not in repr(auth)
