"""The simulator's gatekeepers: API Gateway (AK/SK signatures, tokens) and IAM (tokens).

``SimulatedAuth.check`` is what the API Gateway in front of DataArts does with a request:

* ``Authorization: SDK-HMAC-SHA256 …`` is checked with :func:`backupd.dataarts.auth.verify`
  against the registered access keys, with the 15-minute ``X-Sdk-Date`` window measured on the
  simulator's own clock (``clock_offset`` skews it); temporary keys also need their
  ``X-Security-Token``;
* ``X-Auth-Token`` must be a token this IAM issued and that has not expired ("The token must
  be updated"), or the fixed ``static_token``;
* anything else is refused. Every refusal becomes a 401 ``APIGW.0301`` body in the simulator.

``SimulatedAuth.issue_token`` is IAM's ``POST /v3/auth/tokens`` with a password identity scoped
to the project: 201 with the token in ``X-Subject-Token`` and ``token.expires_at`` in the body,
or 401 with an IAM error body for a wrong user or password.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import re
import secrets
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from backupd.dataarts.auth import DATE_FORMAT, UNSIGNED_PAYLOAD, as_utc, mask_ak, sign
from backupd.secret import Secret

DEFAULT_TOKEN = "sim-token"  # noqa: S105 -- a public, fake token for the local simulator
DEFAULT_AK = "SIMULATORAK000000000"
DEFAULT_SK = "simulator-secret-key-00000000000000000000"  # public and fake, like the rest
DEFAULT_IAM_DOMAIN = "sim-account"
DEFAULT_IAM_USER = "sim-user"
DEFAULT_IAM_PASSWORD = "sim-password"  # noqa: S105 -- public and fake
DEFAULT_TOKEN_LIFETIME = timedelta(hours=24)  # what IAM issues
SIGNATURE_WINDOW = timedelta(minutes=15)  # X-Sdk-Date tolerance of the API Gateway

INVALID_AUTH = "Incorrect IAM authentication information"
TOKEN_EXPIRED = f"{INVALID_AUTH}: The token must be updated"

_ACCESS_RE = re.compile(r"Access=([^,\s]+)")

Json = dict[str, Any]


@dataclass(frozen=True)
class AuthRequest:
    """What an authenticator sees of a request."""

    method: str
    raw_path: str  # path + query exactly as received
    headers: dict[str, str]  # original case
    body: bytes

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == wanted), None)


@dataclass(frozen=True)
class AccessKey:
    """An AK/SK pair; with ``security_token`` it is temporary and requests must carry that."""

    ak: str
    sk: str
    security_token: str | None = None


@dataclass(frozen=True)
class IamUser:
    domain: str
    name: str
    password: str


@dataclass(frozen=True)
class TokenRequest:
    """One call to IAM's token endpoint, as answered."""

    domain: str | None
    user: str | None
    project_id: str | None
    status: int


@dataclass(frozen=True)
class AuthFailure:
    """One API call the gateway refused."""

    method: str
    path: str
    message: str


@dataclass(frozen=True)
class IamAnswer:
    status: int
    headers: dict[str, str]
    body: Json


@dataclass(frozen=True)
class _Issued:
    expires_at: datetime
    user: str


class SimulatedAuth:
    """Access keys, IAM users and issued tokens of a simulated account. Thread-safe."""

    def __init__(
        self,
        *,
        project_id: str,
        static_token: str | None = DEFAULT_TOKEN,
        access_keys: Sequence[AccessKey] = (AccessKey(DEFAULT_AK, DEFAULT_SK),),
        iam_users: Sequence[IamUser] = (
            IamUser(DEFAULT_IAM_DOMAIN, DEFAULT_IAM_USER, DEFAULT_IAM_PASSWORD),
        ),
        token_lifetime: timedelta = DEFAULT_TOKEN_LIFETIME,
        clock_offset: timedelta = timedelta(0),
    ) -> None:
        self.project_id = project_id
        self.static_token = static_token
        # Plain attributes on purpose: tests move the clock and shorten lifetimes at will.
        self.token_lifetime = token_lifetime
        self.clock_offset = clock_offset
        self._lock = threading.Lock()
        self._keys = {key.ak: key for key in access_keys}
        self._users = {(user.domain, user.name): user for user in iam_users}
        self._issued: dict[str, _Issued] = {}
        self._token_requests: list[TokenRequest] = []
        self._failures: list[AuthFailure] = []

    # ---- state -------------------------------------------------------------------------------

    def now(self) -> datetime:
        """The gateway's and IAM's clock: real UTC time plus ``clock_offset``."""
        return datetime.now(UTC) + self.clock_offset

    def add_access_key(self, ak: str, sk: str, *, security_token: str | None = None) -> None:
        with self._lock:
            self._keys[ak] = AccessKey(ak, sk, security_token)

    def add_iam_user(self, domain: str, name: str, password: str) -> None:
        with self._lock:
            self._users[(domain, name)] = IamUser(domain, name, password)

    def expire_tokens(self) -> int:
        """Expire every token issued so far (as a revocation would); returns how many."""
        with self._lock:
            past = self.now() - timedelta(seconds=1)
            for token, issued in self._issued.items():
                self._issued[token] = dataclasses.replace(issued, expires_at=past)
            return len(self._issued)

    @property
    def token_requests(self) -> list[TokenRequest]:
        with self._lock:
            return list(self._token_requests)

    @property
    def issued_tokens(self) -> list[str]:
        with self._lock:
            return list(self._issued)

    @property
    def failures(self) -> list[AuthFailure]:
        with self._lock:
            return list(self._failures)

    def record_failure(self, request: AuthRequest, message: str) -> None:
        path = request.raw_path.partition("?")[0]
        with self._lock:
            self._failures.append(AuthFailure(request.method, path, message))

    def settings(self) -> Json:
        """The knobs and logs, as the control API shows them."""
        return {
            "clock_offset_seconds": self.clock_offset.total_seconds(),
            "token_lifetime_seconds": self.token_lifetime.total_seconds(),
            "token_requests": [dataclasses.asdict(r) for r in self.token_requests],
            "failures": [dataclasses.asdict(f) for f in self.failures],
        }

    # ---- the API Gateway -----------------------------------------------------------------------

    def check(self, request: AuthRequest) -> str | None:
        """``None`` if the gateway lets ``request`` through, else its error message."""
        authorization = request.header("Authorization")
        if authorization is not None and authorization.lstrip().startswith("SDK-HMAC-SHA256"):
            return self._check_signature(request, authorization)
        token = request.header("X-Auth-Token")
        if token is not None:
            return self._check_token(token)
        return f"{INVALID_AUTH}: x-auth-token not found"

    def _check_signature(self, request: AuthRequest, authorization: str) -> str | None:
        with self._lock:
            keys = dict(self._keys)
        message = verify(
            request.method,
            request.raw_path,
            request.headers,
            request.body,
            lookup_sk=lambda ak: Secret(keys[ak].sk) if ak in keys else None,
            now=self.now(),
            max_skew=SIGNATURE_WINDOW,
        )
        if message is not None:
            return message
        match = _ACCESS_RE.search(authorization)
        key = keys[match.group(1)] if match else None
        if key is not None and key.security_token is not None:
            sent = request.header("X-Security-Token") or ""
            if not hmac.compare_digest(sent.encode(), key.security_token.encode()):
                return f"{INVALID_AUTH}: security token missing or invalid for AK {mask_ak(key.ak)}"
        return None

    def _check_token(self, token: str) -> str | None:
        if self.static_token is not None and hmac.compare_digest(
            token.encode(), self.static_token.encode()
        ):
            return None
        with self._lock:
            issued = self._issued.get(token)
        if issued is None:
            return f"{INVALID_AUTH}: decrypt token fail"
        if self.now() >= issued.expires_at:
            return TOKEN_EXPIRED
        return None

    # ---- IAM -----------------------------------------------------------------------------------

    def issue_token(self, body: bytes) -> IamAnswer:
        """IAM ``POST /v3/auth/tokens`` (password method, project scope)."""
        identity = _password_identity(body)
        if identity is None:
            self._log_token_request(None, None, None, 400)
            return _iam_error(400, "Bad Request", "The request body is invalid.")
        domain, name, password, project_id = identity
        with self._lock:
            user = self._users.get((domain, name))
        if user is None or not hmac.compare_digest(password.encode(), user.password.encode()):
            self._log_token_request(domain, name, project_id, 401)
            return _iam_error(401, "Unauthorized", "The username or password is wrong.")
        if project_id != self.project_id:
            self._log_token_request(domain, name, project_id, 401)
            return _iam_error(
                401, "Unauthorized", "The request you have made requires authentication."
            )
        now = self.now()
        expires_at = now + self.token_lifetime
        token = "MIIsim" + secrets.token_urlsafe(48)
        with self._lock:
            self._issued[token] = _Issued(expires_at, name)
        self._log_token_request(domain, name, project_id, 201)
        body_out = {
            "token": {
                "methods": ["password"],
                "expires_at": _iam_time(expires_at),
                "issued_at": _iam_time(now),
                "user": {"name": name, "domain": {"name": domain}},
                "project": {"id": project_id, "name": "sim-region"},
            }
        }
        return IamAnswer(201, {"X-Subject-Token": token}, body_out)

    def _log_token_request(
        self, domain: str | None, user: str | None, project_id: str | None, status: int
    ) -> None:
        with self._lock:
            self._token_requests.append(TokenRequest(domain, user, project_id, status))

    def update(self, changes: Mapping[str, Any]) -> None:
        """Apply control-API changes: clock_offset_seconds, token_lifetime_seconds,
        expire_tokens (true)."""
        known = {"clock_offset_seconds", "token_lifetime_seconds", "expire_tokens"}
        if not set(changes) <= known:
            raise ValueError(f"fields must be among {sorted(known)}")
        if "clock_offset_seconds" in changes:
            self.clock_offset = timedelta(seconds=float(changes["clock_offset_seconds"]))
        if "token_lifetime_seconds" in changes:
            self.token_lifetime = timedelta(seconds=float(changes["token_lifetime_seconds"]))
        if changes.get("expire_tokens"):
            self.expire_tokens()


def _password_identity(body: bytes) -> tuple[str, str, str, str] | None:
    """(domain, user, password, project id) of a password token request, or None."""
    try:
        auth = json.loads(body)["auth"]
        identity = auth["identity"]
        user = identity["password"]["user"]
        values = (user["domain"]["name"], user["name"], user["password"])
        project_id = auth["scope"]["project"]["id"]
        if "password" not in identity["methods"]:
            return None
    except (ValueError, KeyError, TypeError):
        return None
    if not all(isinstance(value, str) for value in (*values, project_id)):
        return None
    return (*values, project_id)


def _iam_error(status: int, title: str, message: str) -> IamAnswer:
    return IamAnswer(status, {}, {"error": {"code": status, "title": title, "message": message}})


def _iam_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_AUTHORIZATION_RE = re.compile(
    r"SDK-HMAC-SHA256\s+Access=([^,\s]+),\s*SignedHeaders=([^,\s]+),\s*Signature=([0-9a-fA-F]+)"
)


def verify(
    method: str,
    url: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    lookup_sk: Callable[[str], Secret | None],
    now: datetime,
    max_skew: timedelta = timedelta(minutes=15),
) -> str | None:
    """Check a signed request the way APIG does: ``None`` if valid, else the error message.

    ``url`` may be absolute or just the raw path + query as received. Only the headers named
    in ``SignedHeaders`` are checked, as on the gateway. Messages never
    contain the SK, the signature input, or any header value other than the date.
    """
    prefix = "Incorrect IAM authentication information"
    lowered = {name.lower(): value for name, value in headers.items()}
    match = _AUTHORIZATION_RE.fullmatch(lowered.get("authorization", "").strip())
    if match is None:
        return f"{prefix}: missing or malformed SDK-HMAC-SHA256 Authorization header"
    ak, signed_list, signature = match.groups()
    names = signed_list.split(";")
    for required in ("host", "x-sdk-date"):
        if required not in names:
            return f"{prefix}: {required} is not a signed header"
    missing = [name for name in names if name not in lowered]
    if missing:
        return f"{prefix}: signed header(s) not in request: {', '.join(missing)}"

    raw_date = lowered["x-sdk-date"].strip()
    try:
        signed_at = datetime.strptime(raw_date, DATE_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return f"{prefix}: X-Sdk-Date {raw_date!r} is not of the form YYYYMMDDTHHMMSSZ"
    server_now = as_utc(now)
    if abs(server_now - signed_at) > max_skew:
        minutes = max_skew.total_seconds() / 60
        return (
            f"{prefix}: Signature expired: X-Sdk-Date {raw_date} is more than {minutes:g} minutes "
            f"from server time {server_now.strftime(DATE_FORMAT)} (check the client clock)"
        )

    sk = lookup_sk(ak)
    if sk is None:
        return f"{prefix}: unknown AK {mask_ak(ak)}"
    content_sha = lowered.get("x-sdk-content-sha256", "").strip()
    if (
        "x-sdk-content-sha256" in names
        and body
        and content_sha != UNSIGNED_PAYLOAD
        and content_sha != hashlib.sha256(body).hexdigest()
    ):
        return f"{prefix}: X-Sdk-Content-Sha256 does not match the body"
    expected = sign(method, url, {n: lowered[n] for n in names}, body, ak=ak, sk=sk)
    expected_signature = expected.rsplit("Signature=", 1)[1]
    if not hmac.compare_digest(expected_signature, signature.lower()):
        return f"{prefix}: verify aksk signature fail"
    return None
