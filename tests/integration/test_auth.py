"""Authentication end to end: backupd's AK/SK, IAM token and TLS settings against the simulator.

Real HTTP on loopback, real git; the simulator checks signatures and tokens like the gateway.
"""

from __future__ import annotations

import logging
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from backupd.commands.snapshot import run_snapshots
from backupd.config import load_config
from backupd.errors import (
    AuthError,
    CertificateError,
    ClockSkewError,
    CredentialsRejected,
)
from backupd.model import SnapshotResult
from backupd.simulator.gateway import TOKEN_EXPIRED, AuthRequest, SimulatedAuth
from backupd.simulator.server import DEFAULT_PROJECT_ID, Simulator
from backupd.wiring import AuthCache
from tests.helpers import auth_config, commit_count, make_config, secret_file, workspace_id

WORKSPACES = {"sales": workspace_id(1), "finance": workspace_id(2), "ops": workspace_id(3)}


@pytest.fixture
def populated(simulator: Simulator) -> Simulator:
    for name, wid in WORKSPACES.items():
        simulator.add_workspace(wid, name)
        simulator.populate(wid, 12)
    return simulator


def _run(config_path: Path, **kwargs: Any) -> list[SnapshotResult]:
    return run_snapshots(load_config(config_path), **kwargs)


def _all_ok(results: list[SnapshotResult]) -> None:
    assert [r.ok for r in results] == [True] * len(results), [r.error for r in results]


# ---- AK/SK -----------------------------------------------------------------------------------


def test_snapshots_are_signed_with_aksk_and_verified(tmp_path: Path) -> None:
    """The default test config signs every request; a server that only knows AK/SK accepts it."""
    gate = SimulatedAuth(project_id=DEFAULT_PROJECT_ID, static_token=None)
    schemes: list[str] = []

    def authenticate(request: AuthRequest) -> str | None:
        schemes.append((request.header("Authorization") or "none").split(" ", 1)[0])
        return gate.check(request)

    with Simulator(authenticate=authenticate) as simulator:
        simulator.add_workspace(WORKSPACES["sales"], "sales")
        simulator.populate(WORKSPACES["sales"], 30)
        _all_ok(_run(make_config(tmp_path, simulator, {"sales": WORKSPACES["sales"]})))
    assert len(schemes) >= 4  # two job listings, scripts, one export
    assert set(schemes) == {"SDK-HMAC-SHA256"}
    assert gate.failures == []


def test_a_wrong_sk_fails_once_clearly_without_retries(
    tmp_path: Path, populated: Simulator
) -> None:
    auth = auth_config(tmp_path, populated) | {
        "sk_file": str(secret_file(tmp_path / "wrong-sk", "not-the-secret-key-0000000000"))
    }
    results = _run(make_config(tmp_path, populated, WORKSPACES, auth=auth))

    assert [r.ok for r in results] == [False, False, False]
    assert {r.error_type for r in results} == {CredentialsRejected}
    # One signed request reached the gateway; the other workspaces were not even tried.
    assert len(populated.auth.failures) == 1
    assert "verify aksk signature fail" in populated.auth.failures[0].message
    assert populated.calls == []
    assert "credentials were rejected" in (results[0].error or "")
    assert not (tmp_path / "repo" / "prod").exists()


def test_temporary_credentials_need_their_security_token(
    tmp_path: Path, populated: Simulator
) -> None:
    populated.auth.add_access_key("TEMPAK00000000000001", "temp-sk", security_token="sts-token")
    base = {"type": "aksk", "ak": "TEMPAK00000000000001", "sk": "temp-sk"}
    config_path = make_config(tmp_path, populated, {"sales": WORKSPACES["sales"]}, auth=base)
    results = _run(config_path)
    assert results[0].error_type is CredentialsRejected
    assert "security token" in (results[0].error or "")

    token_file = secret_file(tmp_path / "security-token", "sts-token")
    with_token = base | {"security_token_file": str(token_file)}
    _all_ok(_run(make_config(tmp_path, populated, {"sales": WORKSPACES["sales"]}, auth=with_token)))


@pytest.mark.parametrize("offset", [timedelta(minutes=20), -timedelta(minutes=20)])
def test_a_skewed_clock_is_reported_as_a_clock_problem(
    tmp_path: Path, populated: Simulator, offset: timedelta
) -> None:
    populated.auth.clock_offset = offset
    results = _run(make_config(tmp_path, populated, WORKSPACES))

    assert {r.error_type for r in results} == {ClockSkewError}
    assert len(populated.auth.failures) == 1  # not retried, other workspaces not tried
    assert "synchronise it (NTP)" in (results[0].error or "")


def test_a_clock_within_the_window_is_fine(tmp_path: Path, populated: Simulator) -> None:
    populated.auth.clock_offset = timedelta(minutes=14)
    _all_ok(_run(make_config(tmp_path, populated, {"sales": WORKSPACES["sales"]})))


def test_a_403_on_one_workspace_does_not_stop_the_others(
    tmp_path: Path, populated: Simulator
) -> None:
    """A missing workspace role is not a credential problem: the other workspaces still run."""
    populated.faults.forbidden_workspaces = [WORKSPACES["finance"]]
    results = _run(make_config(tmp_path, populated, WORKSPACES))
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error_type is AuthError
    assert "DLF.6888" in (results[1].error or "")


# ---- IAM tokens ------------------------------------------------------------------------------


def test_one_token_request_for_a_whole_snapshot(tmp_path: Path, populated: Simulator) -> None:
    results = _run(make_config(tmp_path, populated, WORKSPACES, auth="password"))

    _all_ok(results)
    assert [(r.user, r.status) for r in populated.auth.token_requests] == [("sim-user", 201)]
    assert len(populated.calls) >= 3 * 4  # per workspace: 2 job listings, scripts, export
    assert populated.auth.failures == []


def test_a_token_is_reused_across_runs_with_an_auth_cache(
    tmp_path: Path, populated: Simulator
) -> None:
    config_path = make_config(tmp_path, populated, WORKSPACES, auth="password")
    cache = AuthCache()
    _all_ok(_run(config_path, auth_cache=cache))
    _all_ok(_run(config_path, auth_cache=cache))
    assert len(populated.auth.token_requests) == 1
    _all_ok(_run(config_path))  # without a cache each run logs in once
    assert len(populated.auth.token_requests) == 2


def test_a_rotated_password_file_builds_a_new_session(tmp_path: Path, populated: Simulator) -> None:
    config_path = make_config(tmp_path, populated, WORKSPACES, auth="password")
    cache = AuthCache()
    _all_ok(_run(config_path, auth_cache=cache))
    populated.auth.add_iam_user("sim-account", "sim-user", "rotated-password")
    secret_file(tmp_path / "password", "rotated-password")
    _all_ok(_run(config_path, auth_cache=cache))
    assert [r.status for r in populated.auth.token_requests] == [201, 201]


def test_a_forced_expiry_triggers_exactly_one_refresh(tmp_path: Path, populated: Simulator) -> None:
    config_path = make_config(tmp_path, populated, WORKSPACES, auth="password")
    cache = AuthCache()
    _all_ok(_run(config_path, auth_cache=cache))
    populated.modify_job(WORKSPACES["ops"], sorted(populated.jobs(WORKSPACES["ops"]))[0])

    assert populated.auth.expire_tokens() == 1
    results = _run(config_path, auth_cache=cache)

    _all_ok(results)
    assert [r.commit is not None for r in results] == [False, False, True]
    assert len(populated.auth.token_requests) == 2
    assert [f.message for f in populated.auth.failures] == [TOKEN_EXPIRED]


def test_a_wrong_password_gives_one_error_and_one_iam_request(
    tmp_path: Path, populated: Simulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    auth = auth_config(tmp_path, populated, "password")
    auth["password_file"] = str(secret_file(tmp_path / "wrong-password", "wrong-Pa55word"))
    results = _run(make_config(tmp_path, populated, WORKSPACES, auth=auth))

    assert [r.status for r in populated.auth.token_requests] == [401]
    assert populated.calls == [] and populated.auth.failures == []
    assert {r.error_type for r in results} == {CredentialsRejected}
    assert (results[0].error or "").startswith(
        "IAM token: HTTP 401: IAM rejected the password for user sim-user in domain sim-account "
        "(The username or password is wrong.) (request id "
    )
    failures = [r for r in caplog.records if r.getMessage() == "snapshot.failed"]
    assert len(failures) == 1
    assert "api.retry" not in caplog.text
    assert "wrong-Pa55word" not in caplog.text


# ---- TLS -------------------------------------------------------------------------------------


@pytest.fixture
def tls_simulator(tmp_path: Path) -> Iterator[tuple[Simulator, Path]]:
    """The simulator over HTTPS with a self-signed certificate (its own CA)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "ca.pem", tmp_path / "ca-key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=backupd-test",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    simulator = Simulator()
    simulator.start(tls=context)
    simulator.add_workspace(WORKSPACES["sales"], "sales")
    simulator.populate(WORKSPACES["sales"], 10)
    try:
        yield simulator, cert
    finally:
        simulator.stop()


@pytest.mark.parametrize("kind", ["aksk", "password"])
def test_an_untrusted_certificate_is_refused_once(
    tmp_path: Path, tls_simulator: tuple[Simulator, Path], kind: str
) -> None:
    simulator, _ = tls_simulator
    assert simulator.url.startswith("https://")
    results = _run(make_config(tmp_path, simulator, {"sales": WORKSPACES["sales"]}, auth=kind))
    assert results[0].error_type is CertificateError
    assert "ca_bundle" in (results[0].error or "")
    assert simulator.calls == [] and simulator.auth.token_requests == []


@pytest.mark.parametrize("kind", ["aksk", "password"])
def test_ca_bundle_trusts_a_private_ca_for_the_api_and_iam(
    tmp_path: Path, tls_simulator: tuple[Simulator, Path], kind: str
) -> None:
    simulator, cert = tls_simulator
    config_path = make_config(
        tmp_path,
        simulator,
        {"sales": WORKSPACES["sales"]},
        auth=kind,
        extra_source={"ca_bundle": str(cert)},
    )
    _all_ok(_run(config_path))
    assert commit_count(tmp_path / "repo") == 2
    assert len(simulator.auth.token_requests) == (1 if kind == "password" else 0)
