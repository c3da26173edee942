"""httpx authentication for the DataArts Studio API: AK/SK signing and IAM tokens.

``sign`` is a re-implementation of ``huaweicloudsdkcore/signer/signer.py`` (``SDK-HMAC-SHA256``,
dlf-api.md §6.2); the tests compare it with the real SDK. The SDK itself is never imported here.

URLs for signed requests: put path parameters in with ``quote(value, safe="")`` and build the
query with :func:`encode_query` (``f"{path}?{encode_query(params)}"``), never with httpx's
``params=``. Then the query httpx sends is byte-for-byte the canonical query that is signed, as
with the SDK. (``AkSkAuth`` also rewrites any other query into that form before signing, so a
stray ``params=`` still works, but ``+`` is then read the way httpx writes it: as a space.)
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import socket
import ssl
import threading
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import KW_ONLY, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote, unquote_plus

import httpx

from backupd.errors import (
    ApiError,
    CertificateError,
    CredentialError,
    CredentialsRejected,
    ServerError,
    ThrottledError,
    TransportError,
)
from backupd.secret import Secret

__all__ = [
    "DATE_FORMAT",
    "UNSIGNED_HEADERS",
    "UNSIGNED_PAYLOAD",
    "AkSkAuth",
    "IamTokenAuth",
    "StaticTokenAuth",
    "as_utc",
    "connection_error",
    "encode_query",
    "is_clock_skew_message",
    "mask_ak",
    "sign",
]

log = logging.getLogger(__name__)

ALGORITHM = "SDK-HMAC-SHA256"
DATE_FORMAT = "%Y%m%dT%H%M%SZ"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"

# Headers AkSkAuth leaves out of the signature: the ones httpx adds on its own that the SDK never
# signs (requests adds them after signing), and hop-by-hop headers a proxy may rewrite or drop.
# Signing one of those would make the gateway's check depend on what sat in between.
UNSIGNED_HEADERS = frozenset(
    {
        "accept",
        "accept-encoding",
        "authorization",
        "connection",
        "content-length",
        "expect",
        "keep-alive",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)


# Wording of our own verify() plus what APIG really answers, e.g. "Incorrect app authentication
# information: signature expired, signature time:…,server time:…" or "calc ak sk signature
# fail:signature expired". Token expiry ("The token must be updated") is deliberately not matched.
_CLOCK_SKEW_RE = re.compile(
    r"signature\s+(?:has\s+)?expired"
    r"|request\s+(?:has\s+)?expired"
    r"|clock[\s-]*skew"
    r"|signature\s+time.{0,60}server\s+time"
    r"|x-sdk-date.{0,120}?(?:expired|clock|skew|server\s+time|time\s+difference|too\s+(?:old|early|late))",
    re.IGNORECASE | re.DOTALL,
)


# httpcore logs raw response headers at DEBUG, and IAM's carry the new token (X-Subject-Token):
# whoever turns DEBUG on for everything must not get tokens in their logs.
_SECRET_HEADER_RE = re.compile(
    r"""(b['"](?:x-subject-token|x-auth-token|x-security-token|authorization)['"],\s*b)(['"]).*?\2""",
    re.IGNORECASE,
)


class _RedactSecretHeaders(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and "b'" in record.msg:
            record.msg = _SECRET_HEADER_RE.sub(r"\1\2***\2", record.msg)
        return True


_REDACT_SECRET_HEADERS = _RedactSecretHeaders()


def _redact_http_trace_logs() -> None:
    """Install the redaction on httpcore's logger (idempotent: the same filter object)."""
    logging.getLogger("httpcore.http11").addFilter(_REDACT_SECRET_HEADERS)


def _utc_now() -> datetime:
    return datetime.now(UTC)


def as_utc(moment: datetime) -> datetime:
    # A naive datetime from an injected clock is taken as UTC, never as local time.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def mask_ak(ak: str) -> str:
    """An AK as shown in messages and reprs: enough to tell keys apart, never the whole id."""
    return f"…{ak[-4:]}" if len(ak) >= 12 else "…"


def _quote(text: str) -> str:
    # RFC 3986 unreserved characters stay, everything else (UTF-8) is %XX; space is %20.
    return quote(text, safe="~")


# --------------------------------------------------------------------------- signing


def encode_query(params: Sequence[tuple[str, str]]) -> str:
    """The canonical query string, which is also the query to send (without ``?``).

    Pairs are sorted by key, then value (on the unencoded text, as the SDK does); keys and values
    are percent-encoded with only ``A-Z a-z 0-9 - _ . ~`` left as is. Repeated keys stay repeated.
    """
    return "&".join(f"{_quote(key)}={_quote(value)}" for key, value in sorted(params))


def _decode_query(raw_query: str) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for part in raw_query.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        # '+' means space here because that is how httpx's params= writes a space; encode_query
        # never emits a bare '+', so its output decodes to exactly what was encoded.
        pairs.append((unquote_plus(key, errors="strict"), unquote_plus(value, errors="strict")))
    return pairs


def _canonical_query(raw_query: str) -> str:
    return encode_query(_decode_query(raw_query))


def _canonical_uri(raw_path: str) -> str:
    # Decode, then re-encode segment by segment: an encoded '/' (%2F) therefore splits the
    # segment, exactly like the SDK. The trailing '/' is only in the signature, not on the wire.
    uri = "/".join(_quote(segment) for segment in unquote(raw_path).split("/"))
    return uri if uri.endswith("/") else uri + "/"


def _split_url(url: httpx.URL | str) -> tuple[str, str]:
    url = httpx.URL(url) if isinstance(url, str) else url
    raw_path, _, raw_query = url.raw_path.decode("ascii").partition("?")
    return raw_path or "/", raw_query


def _payload_hash(body: bytes, content_sha256: str | None) -> str:
    # Same order as the SDK: an empty body always hashes as empty, even with UNSIGNED-PAYLOAD.
    if not body:
        return EMPTY_SHA256
    if content_sha256:
        return content_sha256
    return hashlib.sha256(body).hexdigest()


def sign(
    method: str,
    url: httpx.URL | str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    ak: str,
    sk: Secret,
) -> str:
    """The ``Authorization`` value (SDK-HMAC-SHA256) for a request.

    Pure. ``headers`` must already hold ``X-Sdk-Date`` and ``Host``; every header whose name has
    no ``_`` is signed. ``url`` is the URL as sent: its path and query are canonicalised here.
    An ``X-Sdk-Content-Sha256`` header, when present and the body non-empty, replaces the body
    hash (that is how ``UNSIGNED-PAYLOAD`` works).
    """
    if not ak or not sk:
        raise ValueError("sign: AK and SK must not be empty")
    lowered: dict[str, str] = {name.lower(): str(value).strip() for name, value in headers.items()}
    if "host" not in lowered or "x-sdk-date" not in lowered:
        raise ValueError("sign: headers must include Host and X-Sdk-Date")
    # The SDK parses and re-formats the date; a malformed one fails here as it does there.
    date = datetime.strptime(lowered["x-sdk-date"], DATE_FORMAT).strftime(DATE_FORMAT)  # noqa: DTZ007

    signed_headers = sorted(name for name in lowered if "_" not in name)
    canonical_headers = "".join(f"{name}:{lowered[name]}\n" for name in signed_headers)
    raw_path, raw_query = _split_url(url)
    canonical_request = "\n".join(
        [
            method.upper(),
            _canonical_uri(raw_path),
            _canonical_query(raw_query),
            canonical_headers,
            ";".join(signed_headers),
            _payload_hash(body, lowered.get("x-sdk-content-sha256")),
        ]
    )
    digest = hashlib.sha256(canonical_request.encode("utf-8")).hexdigest()
    string_to_sign = f"{ALGORITHM}\n{date}\n{digest}"
    signature = hmac.new(
        sk.reveal().encode("utf-8"), string_to_sign.encode("utf-8"), hashlib.sha256
    ).hexdigest()
    return (
        f"{ALGORITHM} Access={ak}, SignedHeaders={';'.join(signed_headers)}, Signature={signature}"
    )


def is_clock_skew_message(text: str) -> bool:
    """True when an error text says the signature date was rejected (local clock off)."""
    return bool(_CLOCK_SKEW_RE.search(text))


def connection_error(
    error: httpx.TransportError,
    operation: str,
    where: str = "",
    *,
    url: httpx.URL | str | None = None,
) -> ApiError:
    """The error for a call that got no answer, naming the endpoint it tried
    (``list jobs: cannot connect to https://dlf.example.com:443: connection refused``);
    an untrusted certificate is not worth retrying. ``url``: the request's, when the error
    does not carry it. Only scheme, host and port are shown: never a path or query."""
    endpoint = _endpoint(url if url is not None else _request_url(error))
    cause: BaseException | None = error
    for _ in range(8):  # httpx → httpcore → ssl: the chain is short; never loop on a cycle
        if cause is None or isinstance(cause, ssl.SSLCertVerificationError):
            break
        cause = cause.__cause__ or cause.__context__
    if isinstance(cause, ssl.SSLCertVerificationError):
        reason = cause.verify_message or str(cause)
        return CertificateError(
            f"{where}TLS certificate of {endpoint} not trusted ({reason}); for a private CA or "
            "an inspecting proxy, set the source's ca_bundle",
            operation=operation,
        )
    if isinstance(error, httpx.ConnectTimeout):
        text = f"cannot connect to {endpoint}: timed out"
    elif isinstance(error, httpx.ReadTimeout):
        text = f"no answer from {endpoint}: timed out"
    elif isinstance(error, httpx.WriteTimeout):
        text = f"cannot send to {endpoint}: timed out"
    elif isinstance(error, httpx.PoolTimeout):
        text = f"no free connection to {endpoint}: timed out"
    elif isinstance(error, httpx.ProxyError):
        text = f"cannot connect to {endpoint} through the proxy: {_reason(error)}"
    elif isinstance(error, httpx.ConnectError):
        text = f"cannot connect to {endpoint}: {_reason(error)}"
    elif isinstance(error, httpx.NetworkError | httpx.RemoteProtocolError):
        text = f"connection to {endpoint} broken: {_reason(error)}"
    else:
        text = f"{endpoint}: {type(error).__name__}: {error}"
    return TransportError(where + text, operation=operation)


def _request_url(error: httpx.TransportError) -> httpx.URL | None:
    try:
        return error.request.url
    except RuntimeError:  # raised without a request (a transport used on its own)
        return None


def _endpoint(url: httpx.URL | str | None) -> str:
    """``scheme://host:port`` of a URL (the default port spelled out), or a stand-in."""
    if url is None:
        return "the service"
    url = httpx.URL(url)
    host = f"[{url.host}]" if ":" in url.host else url.host
    port = url.port or {"https": 443, "http": 80}.get(url.scheme)
    return f"{url.scheme}://{host}:{port}" if port else f"{url.scheme}://{host}"


def _reason(error: BaseException) -> str:
    """Why a connection failed, in a few lowercase words: the system's reason when the cause
    is an OSError (``connection refused``), else the error's own text."""
    cause: BaseException | None = error
    for _ in range(8):
        if cause is None:
            break
        if isinstance(cause, socket.gaierror):
            return f"host name not resolved ({cause.strerror or cause})"
        if isinstance(cause, OSError) and cause.strerror:
            return cause.strerror[:1].lower() + cause.strerror[1:]
        cause = cause.__cause__ or cause.__context__
    text = str(error) or type(error).__name__
    return text[:1].lower() + text[1:]


# --------------------------------------------------------------------------- httpx.Auth


_AK_RE = re.compile(r"[\x21-\x7e]+")


@dataclass(frozen=True, eq=False, repr=False)
class AkSkAuth(httpx.Auth):
    """Signs every request with AK/SK; re-signs (fresh X-Sdk-Date) each time the flow runs."""

    ak: str
    sk: Secret
    _: KW_ONLY
    security_token: Secret | None = None
    clock: Callable[[], datetime] = _utc_now

    # The body must be in memory: it is hashed into the signature.
    requires_request_body = True

    def __post_init__(self) -> None:
        # A comma or space in the AK would break the Authorization header's syntax.
        if not _AK_RE.fullmatch(self.ak) or "," in self.ak:
            raise CredentialError("AK/SK auth: the AK is empty or contains invalid characters")
        if not self.sk:
            raise CredentialError(f"AK/SK auth: the SK for AK {mask_ak(self.ak)} is empty")

    def __repr__(self) -> str:
        return f"AkSkAuth(ak={mask_ak(self.ak)!r})"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        self.apply(request)
        yield request

    def apply(self, request: httpx.Request) -> None:
        """Add the signing headers to ``request`` in place (overwriting any earlier ones)."""
        headers = request.headers
        headers["X-Sdk-Date"] = as_utc(self.clock()).strftime(DATE_FORMAT)
        headers["Host"] = request.url.netloc.decode("ascii")
        if self.security_token is not None:
            headers["X-Security-Token"] = self.security_token.reveal()
        if "Content-Type" not in headers:
            headers["Content-Type"] = "application/json"  # the SDK sends it even on GET
        if not headers["Content-Type"].startswith(("application/json", "application/bson")):
            headers["X-Sdk-Content-Sha256"] = UNSIGNED_PAYLOAD
        # Send exactly the query we sign (a no-op for URLs built with encode_query()).
        raw_query = request.url.query.decode("ascii")
        canonical = _canonical_query(raw_query)
        if canonical != raw_query:
            request.url = request.url.copy_with(query=canonical.encode("ascii") or None)
        signed = {k: v for k, v in headers.items() if k.lower() not in UNSIGNED_HEADERS}
        headers["Authorization"] = sign(
            request.method, request.url, signed, request.content, ak=self.ak, sk=self.sk
        )


@dataclass(frozen=True, eq=False, repr=False)
class StaticTokenAuth(httpx.Auth):
    """Sends a fixed IAM token (obtained elsewhere) as ``X-Auth-Token``."""

    token: Secret

    def __repr__(self) -> str:
        return "StaticTokenAuth(token=***)"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["X-Auth-Token"] = self.token.reveal()
        yield request


@dataclass(frozen=True)
class _Token:
    value: Secret = field(repr=False)
    expires_at: datetime
    refresh_at: datetime


class IamTokenAuth(httpx.Auth):
    """IAM password → project-scoped token, cached and refreshed before it expires (§6.1).

    Thread-safe: one lock guards the cached token and is held while fetching, so concurrent
    requests wait for a single IAM call instead of each making one. Sync clients only: under an
    async client the IAM call would block the event loop. Each token request uses a short-lived
    HTTP client (tokens are fetched about once a day), so there is nothing to close.
    """

    # The request is resent once after a 401, so its body must be replayable.
    requires_request_body = True
    # A 401 forces a new token at most this often: a user without access would otherwise make
    # every API call cost an IAM call too.
    FORCED_REFRESH_INTERVAL = timedelta(minutes=1)
    # When IAM is unreachable while the old token is still valid, keep it and try again later.
    FAILED_REFRESH_DELAY = timedelta(minutes=1)

    def __init__(
        self,
        *,
        iam_url: str,
        user: str,
        domain: str,
        password: Secret,
        project_id: str,
        timeout: float = 30.0,
        verify: bool | str | ssl.SSLContext = True,
        clock: Callable[[], datetime] = _utc_now,
        refresh_before: timedelta = timedelta(hours=1),
        transport: httpx.BaseTransport | None = None,  # tests only; closed after each request
    ) -> None:
        if not password:
            raise CredentialError(f"IAM auth: the password for user {user} is empty")
        _redact_http_trace_logs()
        self._iam_url = iam_url.rstrip("/")
        self._user = user
        self._domain = domain
        self._password = password
        self._project_id = project_id
        self._clock = clock
        self._refresh_before = refresh_before
        # httpx 0.28 deprecates verify=<path>; a CA bundle path becomes an SSLContext here.
        self._verify: bool | ssl.SSLContext = (
            ssl.create_default_context(cafile=verify) if isinstance(verify, str) else verify
        )
        self._timeout = timeout
        self._transport = transport
        self._lock = threading.Lock()
        self._token: _Token | None = None
        self._last_forced_refresh: datetime | None = None
        self.token_fetches: int = 0

    def __repr__(self) -> str:
        return (
            f"IamTokenAuth(iam_url={self._iam_url!r}, user={self._user!r}, "
            f"domain={self._domain!r}, project_id={self._project_id!r})"
        )

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self._valid_token()
        request.headers["X-Auth-Token"] = token.value.reveal()
        response = yield request
        if response.status_code != 401:
            return
        # Token revoked early (password change, permission change …): one new token, one retry.
        fresh = self._token_after_rejection(token)
        if fresh is None:
            return
        request.headers["X-Auth-Token"] = fresh.value.reveal()
        yield request

    # -- token cache

    def _valid_token(self) -> _Token:
        with self._lock:
            now = as_utc(self._clock())
            current = self._token
            if current is not None and now < current.refresh_at:
                return current
            try:
                self._token = self._fetch(now)
            except (TransportError, ServerError, ThrottledError) as exc:
                if current is None or now >= current.expires_at:
                    raise
                log.warning("IAM token refresh failed, using the current token a while: %s", exc)
                self._token = replace(current, refresh_at=now + self.FAILED_REFRESH_DELAY)
            return self._token

    def _token_after_rejection(self, rejected: _Token) -> _Token | None:
        with self._lock:
            if self._token is not None and self._token is not rejected:
                return self._token  # another thread already replaced it
            now = as_utc(self._clock())
            last = self._last_forced_refresh
            if last is not None and now - last < self.FORCED_REFRESH_INTERVAL:
                log.debug("API answered 401; a new IAM token was fetched less than a minute ago")
                return None
            self._last_forced_refresh = now
            log.info("API answered 401 to the IAM token; fetching a new token")
            self._token = self._fetch(now)
            return self._token

    # -- IAM

    def _fetch(self, now: datetime) -> _Token:
        self.token_fetches += 1
        who = f"user {self._user} in domain {self._domain}"
        body = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {
                            "name": self._user,
                            "password": self._password.reveal(),
                            "domain": {"name": self._domain},
                        }
                    },
                },
                "scope": {"project": {"id": self._project_id}},
            }
        }
        operation = "IAM token"
        try:
            with httpx.Client(
                timeout=self._timeout, verify=self._verify, transport=self._transport
            ) as client:
                response = client.post(
                    f"{self._iam_url}/v3/auth/tokens?nocatalog=true",
                    content=json.dumps(body).encode("utf-8"),
                    headers={"Content-Type": "application/json;charset=utf8"},
                )
        except httpx.TransportError as exc:
            # from None: the cause holds the request, whose body holds the password.
            raise connection_error(exc, operation) from None
        except httpx.HTTPError as exc:
            raise TransportError(
                f"cannot reach IAM at {self._iam_url}: {type(exc).__name__}: {exc}",
                operation=operation,
            ) from None

        status = response.status_code
        request_id = response.headers.get("X-Request-Id")
        if status >= 300:
            raise self._iam_error(response, who, operation)

        value = response.headers.get("X-Subject-Token", "")
        if not value:
            raise ApiError(
                "IAM answered without an X-Subject-Token header",
                status=status,
                request_id=request_id,
                operation=operation,
            )
        expires_at = _expires_at(response)
        if expires_at is None or expires_at <= now:
            raise ApiError(
                "IAM answered without a usable token.expires_at",
                status=status,
                request_id=request_id,
                operation=operation,
            )
        # Refresh `refresh_before` ahead of expiry, but never sooner than half-way through the
        # token's life: a short-lived token must not turn into one IAM call per request.
        margin = min(self._refresh_before, (expires_at - now) / 2)
        log.info("obtained an IAM token for %s, valid until %s", who, expires_at.isoformat())
        return _Token(value=Secret(value), expires_at=expires_at, refresh_at=expires_at - margin)

    def _iam_error(self, response: httpx.Response, who: str, operation: str) -> ApiError:
        status = response.status_code
        request_id = response.headers.get("X-Request-Id")
        code, message = self._error_of(response)
        suffix = f" ({message})" if message else ""
        # Every IAM refusal is about the credentials themselves: no workspace can succeed.
        if status in (400, 401):
            return CredentialsRejected(
                f"IAM rejected the password for {who}{suffix}",
                status=status,
                code=code,
                request_id=request_id,
                operation=operation,
            )
        if status == 403:
            return CredentialsRejected(
                f"IAM refused a token for {who} (user disabled or locked, or no programmatic "
                f"access?){suffix}",
                status=status,
                code=code,
                request_id=request_id,
                operation=operation,
            )
        if status == 429:
            return ThrottledError(
                f"IAM throttled the token request{suffix}",
                retry_after=_retry_after(response),
                status=status,
                code=code,
                request_id=request_id,
                operation=operation,
            )
        cls = ServerError if status >= 500 else ApiError
        return cls(
            f"IAM answered HTTP {status}{suffix}",
            status=status,
            code=code,
            request_id=request_id,
            operation=operation,
        )

    def _error_of(self, response: httpx.Response) -> tuple[str | None, str]:
        """IAM's error code and message (both shapes of §7.3), with the password scrubbed."""
        try:
            data: Any = response.json()
        except ValueError:
            data = None
        code: object = None
        message: object = ""
        if isinstance(data, dict):
            inner = data.get("error")
            if isinstance(inner, dict):
                code, message = inner.get("code"), inner.get("message") or inner.get("title")
            else:
                code = data.get("error_code") or data.get("errorCode")
                message = data.get("error_msg") or data.get("errorMsg") or ""
        text = str(message or "")[:300]
        password = self._password.reveal()
        if password and password in text:
            text = text.replace(password, "***")
        if code is None or str(code) == str(response.status_code):
            return None, text  # Keystone-style bodies repeat the status as their "code"
        return str(code), text


def _expires_at(response: httpx.Response) -> datetime | None:
    try:
        raw = response.json()["token"]["expires_at"]
        return as_utc(datetime.fromisoformat(raw))
    except (ValueError, KeyError, TypeError):
        return None


def _retry_after(response: httpx.Response) -> float | None:
    try:
        return float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None
