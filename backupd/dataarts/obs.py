"""OBS object upload (PutObject) over httpx, signed with OBS's own header signature.

The DataArts import API reads the zip from OBS only, so a restore has to put it there first.
One call is needed, so rather than the OBS SDK (esdk-obs-python: ~15k lines, its own HTTP
stack, pycryptodome/requests/crcmod) this is the documented signature ("Authentication of
Signature in a Header", ``Authorization: OBS <AK>:<signature>``) in a few pure lines. Test
vectors computed with esdk-obs-python 3.26.6 (``obs.auth.Authentication``) lock it.

    StringToSign = VERB \\n Content-MD5 \\n Content-Type \\n Date \\n
                   (x-obs-* headers, lower-cased, sorted, "name:value\\n" each)
                   /<bucket>/<object key, percent-encoded except "/" and "~">
    signature    = base64(HMAC-SHA1(SK, UTF-8(StringToSign)))

Addressing: virtual-hosted (``https://<bucket>.obs.<region>.myhuaweicloud.com/<key>``) for
OBS's own host names, path-style (``<endpoint>/<bucket>/<key>``) when the endpoint is an IP
address, ``localhost`` or has a path (proxies, the simulator). The signature is the same.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from backupd.dataarts.auth import connection_error
from backupd.dataarts.retry import RetryPolicy, call_with_retries
from backupd.errors import (
    ApiError,
    AuthError,
    ClockSkewError,
    ServerError,
    ThrottledError,
)
from backupd.secret import Secret

_HEADER_PREFIX = "x-obs-"


@dataclass(frozen=True, repr=False)
class ObsCredentials:
    """AK/SK (and, for temporary credentials, the security token) for OBS."""

    ak: str
    sk: Secret
    security_token: Secret | None = None

    def __repr__(self) -> str:
        return f"ObsCredentials(ak={self.ak!r})"


def encode_key(key: str) -> str:
    """An object key as it goes into the URL and the signature (as the OBS SDK encodes it)."""
    return quote(key, safe="/~")


def string_to_sign(method: str, bucket: str, key: str, headers: Mapping[str, str]) -> str:
    """The OBS StringToSign of a request on ``/<bucket>/<key>``. Pure."""
    lowered = {name.lower(): value for name, value in headers.items()}
    obs_headers = sorted(
        (name, value.strip()) for name, value in lowered.items() if name.startswith(_HEADER_PREFIX)
    )
    # With x-obs-date the Date line is empty: the signed date is the x-obs- header.
    date = "" if f"{_HEADER_PREFIX}date" in lowered else lowered.get("date", "")
    lines = [method.upper(), lowered.get("content-md5", ""), lowered.get("content-type", ""), date]
    lines += [f"{name}:{value}" for name, value in obs_headers]
    lines.append(f"/{bucket}/{encode_key(key)}")
    return "\n".join(lines)


def signature(text: str, sk: Secret) -> str:
    digest = hmac.new(sk.reveal().encode("utf-8"), text.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def authorization(
    method: str, bucket: str, key: str, headers: Mapping[str, str], credentials: ObsCredentials
) -> str:
    text = string_to_sign(method, bucket, key, headers)
    return f"OBS {credentials.ak}:{signature(text, credentials.sk)}"


def object_url(endpoint: str, bucket: str, key: str) -> str:
    """Where to PUT ``key`` of ``bucket`` given the OBS endpoint (see module docstring)."""
    parts = urlsplit(endpoint.rstrip("/"))
    host = parts.hostname or ""
    if parts.path or _is_ip_or_localhost(host):
        return f"{parts.scheme}://{parts.netloc}{parts.path}/{bucket}/{encode_key(key)}"
    return f"{parts.scheme}://{bucket}.{parts.netloc}/{encode_key(key)}"


def _is_ip_or_localhost(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _content_md5(data: bytes) -> str:
    # MD5 is what OBS checks a body against (RFC 1864): integrity, not security.
    return base64.b64encode(hashlib.md5(data).digest()).decode("ascii")  # noqa: S324


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ObsClient:
    """Uploads objects to OBS. One pooled HTTP client; close it (or use ``with``)."""

    def __init__(
        self,
        endpoint: str,
        credentials: ObsCredentials,
        *,
        timeout: float = 120.0,
        retry: RetryPolicy = RetryPolicy(),
        clock: Callable[[], datetime] = _utc_now,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.endpoint = endpoint.rstrip("/")
        self._credentials = credentials
        self._retry = retry
        self._clock = clock
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)),
            transport=transport,
            follow_redirects=False,
            headers={"User-Agent": "backupd"},
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ObsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ObsClient(endpoint={self.endpoint!r})"

    def put_object(
        self, bucket: str, key: str, data: bytes, *, content_type: str = "application/zip"
    ) -> str:
        """Upload ``data`` as ``key``; returns its ``obs://bucket/key`` path.

        Content-MD5 makes OBS reject a body damaged on the way. Each attempt is signed anew
        (OBS accepts a Date at most 15 minutes off).
        """
        url = object_url(self.endpoint, bucket, key)
        what = f"OBS upload to {bucket}"

        def attempt() -> None:
            headers = {
                "Content-Type": content_type,
                "Content-MD5": _content_md5(data),
                "Date": format_datetime(self._clock().astimezone(UTC), usegmt=True),
            }
            if self._credentials.security_token is not None:
                headers["x-obs-security-token"] = self._credentials.security_token.reveal()
            headers["Authorization"] = authorization("PUT", bucket, key, headers, self._credentials)
            try:
                response = self._http.put(url, content=data, headers=headers)
            except httpx.TransportError as error:
                raise connection_error(error, what, url=url) from None
            if response.status_code >= 300:
                raise obs_error(response, what)

        call_with_retries(attempt, policy=self._retry, what=what)
        return f"obs://{bucket}/{key}"


def _xml_field(body: str, name: str) -> str | None:
    # OBS error bodies are a flat <Error> document; a regex avoids parsing untrusted XML.
    match = re.search(rf"<{name}>([^<]*)</{name}>", body)
    return match[1].strip() if match else None


def obs_error(response: httpx.Response, what: str) -> ApiError:
    """The exception for an OBS error response (XML ``<Error><Code>…``)."""
    body = response.content.decode("utf-8", "replace")
    code = _xml_field(body, "Code")
    message = _xml_field(body, "Message") or response.reason_phrase or "no error message"
    details: dict[str, Any] = {
        "status": response.status_code,
        "code": code,
        "request_id": response.headers.get("x-obs-request-id") or _xml_field(body, "RequestId"),
        "operation": what,
    }
    if code == "RequestTimeTooSkewed":
        return ClockSkewError(
            f"{message} — the local clock is more than 15 minutes off; synchronise it (NTP)",
            **details,
        )
    if code == "NoSuchBucket":
        return ApiError(
            f"{message} — create the bucket, or fix restore.obs_bucket/obs_endpoint (the "
            "bucket must be in the region of the DataArts workspace)",
            **details,
        )
    if response.status_code in (401, 403):
        return AuthError(message, **details)
    if response.status_code == 429 or code == "SlowDown":
        return ThrottledError(message, **details)
    if response.status_code >= 500:
        return ServerError(message, **details)
    return ApiError(message, **details)
