"""Which errors are retried: only those a later attempt can fix."""

from __future__ import annotations

import pytest

from backupd.dataarts.retry import RetryPolicy, call_with_retries
from backupd.errors import (
    ApiError,
    AuthError,
    CertificateError,
    ClockSkewError,
    CredentialsRejected,
    ServerError,
    ThrottledError,
    TransportError,
)


def _calls_until_given_up(error: Exception) -> int:
    calls: list[int] = []

    def operation() -> None:
        calls.append(1)
        raise error

    with pytest.raises(type(error)):
        call_with_retries(
            operation, policy=RetryPolicy(attempts=4), what="test", sleep=lambda _: None
        )
    return len(calls)


@pytest.mark.parametrize(
    "error",
    [
        AuthError("forbidden", status=403),
        CredentialsRejected("bad signature", status=401),
        ClockSkewError("signature expired", status=401),
        CertificateError("not trusted"),
        ApiError("bad request", status=400),
    ],
    ids=lambda e: type(e).__name__,
)
def test_credential_clock_and_certificate_errors_are_not_retried(error: Exception) -> None:
    assert _calls_until_given_up(error) == 1


@pytest.mark.parametrize(
    "error",
    [ThrottledError("slow down", status=429), ServerError("oops", status=503), TransportError("x")],
    ids=lambda e: type(e).__name__,
)
def test_transient_errors_are_retried(error: Exception) -> None:
    assert _calls_until_given_up(error) == 4
