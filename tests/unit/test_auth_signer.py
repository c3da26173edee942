"""AK/SK signing: dlf-api.md §6.2 test vectors, the real SDK signer as oracle, and verify()."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import httpx
import pytest

# The oracle is a test dependency: a missing SDK must fail the run, never skip the comparison.
from huaweicloudsdkcore import sdk_request
from huaweicloudsdkcore.signer import signer as sdk_signer

from backupd.dataarts.auth import (
    UNSIGNED_HEADERS,
    AkSkAuth,
    encode_query,
    is_clock_skew_message,
    sign,
)
from backupd.errors import CredentialError
from backupd.secret import Secret
from backupd.simulator.gateway import verify

AK = "TESTAK1234567890ABCD"
SK_TEXT = "TestSecretKey0123456789abcdefghijklmnopq"
SK = Secret(SK_TEXT)
HOST = "dayu-dlf.cn-north-4.myhuaweicloud.com"
P = "0123456789abcdef0123456789abcdef"
WS = "fedcba9876543210fedcba9876543210"
DATE = "20250101T000000Z"
T0 = datetime(2025, 1, 1, tzinfo=UTC)
VECTOR_HEADERS = {
    "Content-Type": "application/json",
    "workspace": WS,
    "X-Project-Id": P,
    "X-Sdk-Date": DATE,
    "Host": HOST,
}
EXPORT_BODY = b'{"jobList":["job_a","job_b"],"exportDepend":true}'
SIGNED = "content-type;host;workspace;x-project-id;x-sdk-date"


def _url(path: str, params: list[tuple[str, str]] | None = None, host: str = HOST) -> str:
    query = encode_query(params) if params else ""
    return f"https://{host}{path}" + (f"?{query}" if query else "")


# --------------------------------------------------------------------------- §6.2 vectors

VECTORS = [
    pytest.param(
        "GET",
        _url(f"/v1/{P}/jobs", [("jobType", "BATCH"), ("limit", "100"), ("offset", "0")]),
        b"",
        "b7ea251291a6c56189044a95764dbc104e79ff82ee816e4f3cfa13bee9f27992",
        id="V1-list-jobs",
    ),
    pytest.param(
        "POST",
        _url(f"/v1/{P}/jobs/batch-export"),
        EXPORT_BODY,
        "1d6226e83c8eda4cdf327e239bee8d080dfabd73e6af98210a7e56b34bd6ce15",
        id="V2-batch-export",
    ),
    pytest.param(
        "POST",
        _url(f"/v1/{P}/jobs/{quote('作业_1', safe='')}/export"),
        b"",
        "6b475c6e00fba47a121f40f7c1affe5c57ec9d87f76746738d464ce33b356cb4",
        id="V3-non-ascii-path",
    ),
    pytest.param(
        "GET",
        _url(f"/v1/{P}/jobs", [("jobName", "a b+c"), ("jobType", "BATCH")]),
        b"",
        "7fded6157c3bec26f80b3bc4a81004b2d9f29ed473ac97fe61b16857d0903caa",
        id="V4-query-encoding",
    ),
]


@pytest.mark.parametrize(("method", "url", "body", "signature"), VECTORS)
def test_sign_reproduces_the_documented_vectors(
    method: str, url: str, body: bytes, signature: str
) -> None:
    expected = f"SDK-HMAC-SHA256 Access={AK}, SignedHeaders={SIGNED}, Signature={signature}"
    assert sign(method, url, VECTOR_HEADERS, body, ak=AK, sk=SK) == expected
    assert sign(method, httpx.URL(url), VECTOR_HEADERS, body, ak=AK, sk=SK) == expected


def test_encode_query_gives_the_documented_wire_queries() -> None:
    assert encode_query([("offset", "0"), ("limit", "100"), ("jobType", "BATCH")]) == (
        "jobType=BATCH&limit=100&offset=0"
    )
    assert encode_query([("jobName", "a b+c"), ("jobType", "BATCH")]) == (
        "jobName=a%20b%2Bc&jobType=BATCH"
    )
    assert encode_query([("tags", "b"), ("tags", "a")]) == "tags=a&tags=b"
    assert encode_query([]) == ""


def test_sign_needs_host_and_date() -> None:
    headers = {k: v for k, v in VECTOR_HEADERS.items() if k != "Host"}
    with pytest.raises(ValueError, match="Host"):
        sign("GET", _url("/v1/x"), headers, b"", ak=AK, sk=SK)


# --------------------------------------------------------------------------- SDK oracle


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    path: str
    params: list[tuple[str, str]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    host: str = HOST
    scheme: str = "https"
    security_token: str | None = None


BASE = {"workspace": WS, "X-Project-Id": P}
CASES = [
    Case("V1", "GET", f"/v1/{P}/jobs", [("jobType", "BATCH"), ("limit", "100"), ("offset", "0")]),
    Case("V2", "POST", f"/v1/{P}/jobs/batch-export", body=EXPORT_BODY),
    Case("V3", "POST", f"/v1/{P}/jobs/{quote('作业_1', safe='')}/export"),
    Case("V4", "GET", f"/v1/{P}/jobs", [("jobName", "a b+c"), ("jobType", "BATCH")]),
    Case(
        "post-json",
        "POST",
        f"/v1/{P}/jobs/batch-export",
        headers={"Content-Type": "application/json;charset=UTF-8"},
        body='{"jobList": ["数据_1", "b"], "exportDepend": false}'.encode(),
    ),
    Case(
        "unicode-reserved-query",
        "GET",
        f"/v1/{P}/jobs",
        [("jobName", '"数据 a+b&c=d/é"'), ("limit", "10"), ("x~y", "~*'()!;:@,$")],
    ),
    Case("chinese-path", "GET", f"/v1/{P}/jobs/{quote('数据 作业+(1)', safe='')}"),
    # Sorted on the unencoded text like the SDK: ' ' < '~' < 'é', although '%C3%A9' < '~'.
    Case("sort-order", "GET", "/v1/x", [("k", "é"), ("k", "~"), ("k", " "), ("K", "1")]),
    Case("repeated-keys", "GET", f"/v1/{P}/jobs", [("tags", "b"), ("tags", "a"), ("a", "")]),
    Case(
        "host-port", "GET", f"/v1/{P}/jobs", [("limit", "1")], host="127.0.0.1:8080", scheme="http"
    ),
    Case(
        "security-token", "GET", f"/v1/{P}/jobs", security_token="gQpjbi1ub3J0aC00iYCBtoken/+==" * 4
    ),
    Case(
        "unsigned-payload",
        "POST",
        f"/v1/{P}/resources/upload",
        headers={"Content-Type": "application/zip"},
        body=b"PK\x03\x04 not really a zip",
    ),
    Case("unsigned-payload-empty-body", "POST", "/v1/x", headers={"Content-Type": "text/plain"}),
    Case("underscore-header", "GET", "/v1/x", headers={"X_Custom_Thing": "not signed"}),
    Case("root-path", "GET", "/"),
]


def _build(case: Case, client: httpx.Client) -> httpx.Request:
    url = f"{case.scheme}://{case.host}{case.path}"
    if case.params:
        url += "?" + encode_query(case.params)
    return client.build_request(
        case.method, url, headers={**BASE, **case.headers}, content=case.body or None
    )


def _signed(case: Case, request: httpx.Request) -> httpx.Request:
    token = Secret(case.security_token) if case.security_token else None
    auth = AkSkAuth(AK, SK, security_token=token, clock=lambda: T0)
    return next(auth.sync_auth_flow(request))


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_authorization_equals_the_sdk_signer(case: Case) -> None:
    with httpx.Client() as client:
        request = _build(case, client)
    # The URL as built is already canonical: nothing for AkSkAuth to rewrite.
    wire_before = request.url.raw_path
    assert request.url.query.decode() == encode_query(case.params)
    signed = _signed(case, request)
    assert signed.url.raw_path == wire_before

    resource_path = signed.url.raw_path.decode().partition("?")[0]
    header_params = {k: v for k, v in signed.headers.items() if k.lower() not in UNSIGNED_HEADERS}
    assert header_params["x-sdk-date"] == DATE  # httpx lower-cases names
    sdk_req = sdk_request.SdkRequest(
        case.method,
        case.scheme,
        case.host,
        resource_path,
        query_params=list(case.params),
        header_params=header_params,
        body=case.body,
    )

    class Credentials:
        ak = AK
        sk = SK_TEXT

    sdk_signer.Signer(Credentials()).sign(sdk_req)
    assert signed.headers["Authorization"] == sdk_req.header_params["Authorization"]
    # What httpx sends (path + query) is exactly what the SDK would send.
    assert signed.url.raw_path.decode() == sdk_req.uri


def test_params_built_by_httpx_are_rewritten_to_the_canonical_query() -> None:
    """httpx writes a space as '+'; AkSkAuth sends (and signs) the canonical %20 form instead."""
    params = [("jobName", "数据 a+b"), ("jobType", "BATCH")]
    with httpx.Client() as client:
        request = client.build_request("GET", _url(f"/v1/{P}/jobs"), params=params)
    assert b"+" in request.url.query
    signed = _signed(Case("x", "GET", ""), request)
    assert signed.url.query.decode() == encode_query(params)
    with httpx.Client() as client:
        canonical = client.build_request("GET", _url(f"/v1/{P}/jobs", params))
    expected = _signed(Case("x", "GET", ""), canonical)
    assert signed.headers["Authorization"] == expected.headers["Authorization"]


def test_auth_sets_the_sdk_headers_and_signs_only_those() -> None:
    with httpx.Client() as client:
        request = client.build_request("GET", _url(f"/v1/{P}/jobs", [("limit", "1")]), headers=BASE)
    signed = _signed(Case("x", "GET", "", security_token="tok"), request)
    assert signed.headers["X-Sdk-Date"] == DATE
    assert signed.headers["Host"] == HOST
    assert signed.headers["Content-Type"] == "application/json"
    assert signed.headers["X-Security-Token"] == "tok"
    assert "X-Sdk-Content-Sha256" not in signed.headers
    assert (
        "SignedHeaders=content-type;host;user-agent;workspace;x-project-id;x-sdk-date;"
        "x-security-token, " in signed.headers["Authorization"]
    )


def test_host_keeps_a_non_default_port() -> None:
    signed = _signed(Case("x", "GET", ""), httpx.Request("GET", "http://127.0.0.1:8080/v1/x"))
    assert signed.headers["Host"] == "127.0.0.1:8080"


def test_every_run_of_the_flow_re_signs_with_a_fresh_date() -> None:
    now = [T0]
    auth = AkSkAuth(AK, SK, clock=lambda: now[0])
    request = httpx.Request("POST", _url("/v1/x"), content=b"{}")
    first = next(auth.sync_auth_flow(request)).headers["Authorization"]
    now[0] = T0 + timedelta(minutes=20)
    second_request = next(auth.sync_auth_flow(request))
    assert second_request.headers["X-Sdk-Date"] == "20250101T002000Z"
    assert second_request.headers.get_list("X-Sdk-Date") == ["20250101T002000Z"]
    assert second_request.headers.get_list("Authorization") == [
        second_request.headers["Authorization"]
    ]
    assert second_request.headers["Authorization"] != first
    assert (
        verify("POST", str(request.url), request.headers, b"{}", lookup_sk={AK: SK}.get, now=now[0])
        is None
    )


def test_repr_shows_only_the_end_of_the_ak() -> None:
    auth = AkSkAuth(AK, SK, security_token=Secret("very-secret-token"))
    assert repr(auth) == "AkSkAuth(ak='…ABCD')"
    assert AK not in repr(auth)
    assert SK_TEXT not in repr(auth) and "very-secret-token" not in repr(auth)


@pytest.mark.parametrize("ak", ["", "AK WITH SPACE", "AK,1"])
def test_bad_credentials_are_refused_without_the_sk(ak: str) -> None:
    with pytest.raises(CredentialError) as info:
        AkSkAuth(ak, SK)
    assert SK_TEXT not in str(info.value)
    with pytest.raises(CredentialError):
        AkSkAuth(AK, Secret(""))


# --------------------------------------------------------------------------- verify()


def _signed_request(body: bytes = EXPORT_BODY, when: datetime = T0) -> httpx.Request:
    request = httpx.Request(
        "POST", _url(f"/v1/{P}/jobs/batch-export", [("a", "b c")]), headers=BASE, content=body
    )
    return next(AkSkAuth(AK, SK, clock=lambda: when).sync_auth_flow(request))


def _verify(request: httpx.Request, *, body: bytes | None = None, **kw: object) -> str | None:
    options: dict[str, object] = {"lookup_sk": {AK: SK}.get, "now": T0, **kw}
    return verify(
        request.method,
        str(request.url),
        request.headers,
        request.content if body is None else body,
        **options,  # type: ignore[arg-type]
    )


def test_verify_accepts_what_aksk_auth_produces() -> None:
    assert _verify(_signed_request()) is None
    assert _verify(_signed_request(body=b"")) is None
    assert _verify(_signed_request(), now=T0 + timedelta(minutes=14)) is None
    request = _signed_request()  # a server sees only path + query: that works too
    path_only = request.url.raw_path.decode()
    assert (
        verify("POST", path_only, request.headers, request.content, lookup_sk={AK: SK}.get, now=T0)
        is None
    )


def test_verify_rejects_a_changed_body() -> None:
    message = _verify(_signed_request(), body=EXPORT_BODY.replace(b"job_a", b"job_x"))
    assert message is not None and "signature" in message
    assert not is_clock_skew_message(message)


def test_verify_rejects_a_changed_signed_header() -> None:
    request = _signed_request()
    request.headers["workspace"] = "00000000000000000000000000000000"
    assert _verify(request) is not None


def test_verify_rejects_a_changed_query() -> None:
    request = _signed_request()
    request.url = request.url.copy_with(query=b"a=b%20d")
    assert _verify(request) is not None


def test_verify_rejects_a_missing_signed_header() -> None:
    request = _signed_request()
    del request.headers["workspace"]
    message = _verify(request)
    assert message is not None and "workspace" in message


def test_verify_rejects_a_wrong_sk_and_an_unknown_ak() -> None:
    wrong = Secret("another-secret-key-xxxxxxxxxxxxxxxxxxxxxx")
    message = _verify(_signed_request(), lookup_sk={AK: wrong}.get)
    assert message is not None
    assert SK_TEXT not in message and "another-secret" not in message
    message = _verify(_signed_request(), lookup_sk=lambda ak: None)
    assert message is not None and "unknown AK …ABCD" in message and AK not in message


def test_verify_rejects_a_missing_or_malformed_authorization() -> None:
    request = _signed_request()
    del request.headers["Authorization"]
    assert _verify(request) is not None
    request.headers["Authorization"] = "Bearer abc"
    assert _verify(request) is not None


@pytest.mark.parametrize("offset", [timedelta(minutes=16), -timedelta(minutes=16)])
def test_verify_rejects_a_skewed_date_with_a_recognisable_message(offset: timedelta) -> None:
    message = _verify(_signed_request(when=T0 + offset))
    assert message is not None
    assert "X-Sdk-Date" in message
    assert is_clock_skew_message(message)


def test_verify_rejects_a_malformed_date_without_calling_it_skew() -> None:
    request = _signed_request()
    request.headers["X-Sdk-Date"] = "2025-01-01T00:00:00Z"
    message = _verify(request)
    assert message is not None and not is_clock_skew_message(message)


@pytest.mark.parametrize(
    "text",
    [
        "Signature expired: X-Sdk-Date 20250101T000000Z is more than 15 minutes from server time",
        "Incorrect app authentication information: signature expired, signature "
        "time:20230527T000431Z,server time:20230527T020608Z",
        "Incorrect IAM authentication information: calc ak sk signature fail:signature expired",
        "Incorrect IAM authentication information: x-sdk-date is expired",
        "request rejected: clock skew too large",
    ],
)
def test_clock_skew_wording_is_recognised(text: str) -> None:
    assert is_clock_skew_message(text)


@pytest.mark.parametrize(
    "text",
    [
        "Incorrect IAM authentication information: verify aksk signature fail",
        "The token must be updated",
        "Incorrect IAM authentication information: decrypt token fail",
        "token expired",
        "X-Sdk-Date '2025' is not of the form YYYYMMDDTHHMMSSZ",
        "",
    ],
)
def test_other_auth_failures_are_not_clock_skew(text: str) -> None:
    assert not is_clock_skew_message(text)


def test_end_to_end_through_a_client_against_verify() -> None:
    """What the client really hands to the transport passes the server-side check."""
    seen: list[str | None] = []

    def gateway(request: httpx.Request) -> httpx.Response:
        result = verify(
            request.method,
            str(request.url),
            request.headers,
            request.content,
            lookup_sk={AK: SK}.get,
            now=T0 + timedelta(seconds=3),
        )
        seen.append(result)
        return httpx.Response(200 if result is None else 401, json={"error_msg": result})

    auth = AkSkAuth(AK, SK, clock=lambda: T0)
    with httpx.Client(transport=httpx.MockTransport(gateway), auth=auth, headers=BASE) as client:
        name = quote("数据 作业+1", safe="")
        assert client.get(_url(f"/v1/{P}/jobs/{name}", [("q", "a b+c/é")])).status_code == 200
        assert client.post(_url("/v1/x"), json={"jobList": ["作业"]}).status_code == 200
        assert client.get(_url("/v1/x"), params={"q": "a b"}).status_code == 200
    assert seen == [None, None, None]
