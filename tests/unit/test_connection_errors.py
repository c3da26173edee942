"""Every error for a call that got no answer names the endpoint it tried, and nothing more."""

from __future__ import annotations

import socket
import ssl

import httpx
import pytest

from backupd.dataarts.auth import StaticTokenAuth, connection_error
from backupd.dataarts.client import ClientSettings, DataArtsClient
from backupd.dataarts.retry import RetryPolicy
from backupd.errors import CertificateError, TransportError
from backupd.secret import Secret

URL = "https://dayu-dlf.cn-north-4.myhuaweicloud.com/v1/0123/jobs?jobType=BATCH&limit=100"
ENDPOINT = "https://dayu-dlf.cn-north-4.myhuaweicloud.com:443"


def raised(error_type: type[httpx.TransportError], cause: BaseException | None = None) -> str:
    request = httpx.Request("GET", URL, headers={"X-Auth-Token": "secret-token"})
    error = error_type(str(cause) if cause else "it failed", request=request)
    error.__cause__ = cause
    return str(connection_error(error, "list jobs"))


@pytest.mark.parametrize(
    ("error_type", "cause", "expected"),
    [
        (
            httpx.ConnectError,
            ConnectionRefusedError(111, "Connection refused"),
            f"list jobs: cannot connect to {ENDPOINT}: connection refused",
        ),
        (
            httpx.ConnectError,
            socket.gaierror(-2, "Name or service not known"),
            f"list jobs: cannot connect to {ENDPOINT}: host name not resolved "
            "(Name or service not known)",
        ),
        (httpx.ConnectTimeout, None, f"list jobs: cannot connect to {ENDPOINT}: timed out"),
        (httpx.ReadTimeout, None, f"list jobs: no answer from {ENDPOINT}: timed out"),
        (httpx.WriteTimeout, None, f"list jobs: cannot send to {ENDPOINT}: timed out"),
        (httpx.PoolTimeout, None, f"list jobs: no free connection to {ENDPOINT}: timed out"),
        (
            httpx.ReadError,
            ConnectionResetError(104, "Connection reset by peer"),
            f"list jobs: connection to {ENDPOINT} broken: connection reset by peer",
        ),
        (
            httpx.RemoteProtocolError,
            None,
            f"list jobs: connection to {ENDPOINT} broken: it failed",
        ),
        (
            httpx.ProxyError,
            None,
            f"list jobs: cannot connect to {ENDPOINT} through the proxy: it failed",
        ),
    ],
)
def test_each_kind_of_failure_names_the_endpoint(
    error_type: type[httpx.TransportError], cause: BaseException | None, expected: str
) -> None:
    text = raised(error_type, cause)
    assert text == expected
    assert "secret-token" not in text and "/v1/" not in text and "limit=" not in text


def test_an_untrusted_certificate_names_the_endpoint_and_is_not_retryable() -> None:
    request = httpx.Request("GET", URL)
    cause = ssl.SSLCertVerificationError(1, "certificate verify failed")
    cause.verify_message = "self-signed certificate"
    error = httpx.ConnectError("certificate verify failed", request=request)
    error.__cause__ = cause
    made = connection_error(error, "list jobs")
    assert isinstance(made, CertificateError)
    assert str(made).startswith(
        f"list jobs: TLS certificate of {ENDPOINT} not trusted (self-signed certificate)"
    )


@pytest.mark.parametrize(
    ("url", "endpoint"),
    [
        ("http://127.0.0.1:8080/x", "http://127.0.0.1:8080"),
        ("http://example.com/x", "http://example.com:80"),
        ("https://user:pass@example.com:8443/x?sig=abc", "https://example.com:8443"),
        ("http://[::1]:9000/x", "http://[::1]:9000"),
    ],
)
def test_only_scheme_host_and_port_are_shown(url: str, endpoint: str) -> None:
    error = httpx.ConnectError("refused")  # no request attached: the URL is passed
    text = str(connection_error(error, "export jobs", url=url))
    assert text == f"export jobs: cannot connect to {endpoint}: refused"
    assert "pass" not in text and "sig" not in text


def test_the_client_names_the_endpoint_it_could_not_reach() -> None:
    with socket.socket() as probe:  # a port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = ClientSettings(
        endpoint=f"http://127.0.0.1:{port}",
        project_id="0123456789abcdef0123456789abcdef",
        timeout=5,
        retry=RetryPolicy(attempts=1),
    )
    with (
        DataArtsClient(settings, StaticTokenAuth(Secret("t0ken"))) as client,
        pytest.raises(TransportError) as caught,
    ):
        client.list_scripts("0" * 32)
    assert str(caught.value) == (
        f"list scripts: cannot connect to http://127.0.0.1:{port}: connection refused"
    )
