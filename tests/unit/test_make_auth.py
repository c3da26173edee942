"""runner.make_auth / tls_verify: config → httpx.Auth, secrets from files or systemd credentials."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import certifi
import pytest

from backupd.config import SourceConfig, parse_config
from backupd.dataarts.auth import AkSkAuth, IamTokenAuth, StaticTokenAuth
from backupd.errors import ConfigError, CredentialError
from backupd.secret import Secret
from backupd.wiring import AuthCache, load_cas_ahead, make_auth, tls_verify

AK = "DISTINCTAK1234567890"


def source(auth: dict[str, Any], **extra: Any) -> SourceConfig:
    data = {
        "repository": {"path": "/srv/repo"},
        "sources": [
            {
                "name": "prod",
                "region": "cn-north-4",
                "project_id": "0123456789abcdef0123456789abcdef",
                "auth": auth,
                "workspaces": [{"id": "fedcba9876543210fedcba9876543210"}],
                **extra,
            }
        ],
    }
    return parse_config(data, base_dir=Path("/"), environ={}).sources[0]


def test_aksk_from_systemd_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "dlf-sk").write_text("sk-from-credential\n")
    (tmp_path / "dlf-sts").write_text("sts-from-credential\n")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    auth = make_auth(
        source(
            {
                "type": "aksk",
                "ak": AK,
                "sk_credential": "dlf-sk",
                "security_token_credential": "dlf-sts",
            }
        )
    )
    assert isinstance(auth, AkSkAuth)
    assert auth.sk == Secret("sk-from-credential")
    assert auth.security_token == Secret("sts-from-credential")


def test_a_missing_credentials_directory_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(CredentialError, match=r"sources\[prod\]\.auth\.sk_credential"):
        make_auth(source({"type": "aksk", "ak": AK, "sk_credential": "dlf-sk"}))


def test_an_unreadable_secret_file_names_key_and_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(CredentialError) as info:
        make_auth(
            source({"type": "password", "user": "u", "domain": "d", "password_file": str(missing)})
        )
    assert "sources[prod].auth.password" in str(info.value) and str(missing) in str(info.value)


def test_password_auth_is_cached_per_source_until_the_password_changes(tmp_path: Path) -> None:
    password = tmp_path / "password"
    password.write_text("first")
    config = source(
        {"type": "password", "user": "u", "domain": "d", "password_file": str(password)}
    )
    cache = AuthCache()
    first = make_auth(config, cache=cache)
    assert isinstance(first, IamTokenAuth)
    assert make_auth(config, cache=cache) is first
    assert make_auth(config) is not first
    password.write_text("second")
    assert make_auth(config, cache=cache) is not first
    assert "iam.cn-north-4.myhuaweicloud.com" in repr(first)


def test_static_token(tmp_path: Path) -> None:
    auth = make_auth(source({"type": "token", "token": "t0k"}))
    assert isinstance(auth, StaticTokenAuth) and auth.token == Secret("t0k")


def test_tls_is_verified_by_default_and_a_ca_bundle_adds_to_it(tmp_path: Path) -> None:
    default = tls_verify(source({"type": "token", "token": "t"}))
    assert isinstance(default, ssl.SSLContext)
    assert default.verify_mode == ssl.CERT_REQUIRED and default.check_hostname
    assert default.cert_store_stats()["x509_ca"] > 0  # the public CAs
    assert tls_verify(source({"type": "token", "token": "u"})) is default  # loaded once
    bundle = tmp_path / "ca.pem"
    pem = Path(certifi.where()).read_text()
    end = "-----END CERTIFICATE-----"
    bundle.write_text(pem[: pem.index(end) + len(end)] + "\n")  # one CA
    context = tls_verify(source({"type": "token", "token": "t"}, ca_bundle=str(bundle)))
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert context.cert_store_stats()["x509_ca"] > 1  # the public CAs plus ours


def test_a_source_on_plain_http_loads_no_ca_and_would_refuse_any_tls() -> None:
    plain = tls_verify(
        source({"type": "token", "token": "t"}, endpoint="http://127.0.0.1:8080", region=None)
    )
    assert isinstance(plain, ssl.SSLContext)
    assert plain.verify_mode == ssl.CERT_REQUIRED and plain.check_hostname
    assert plain.cert_store_stats()["x509_ca"] == 0  # nothing trusted: TLS would fail closed
    # Password auth also talks to IAM: over https there, the public CAs are needed.
    iam = source(
        {
            "type": "password",
            "user": "u",
            "domain": "d",
            "password": "p",
            "iam_endpoint": "https://iam.example.com",
        },
        endpoint="http://127.0.0.1:8080",
        region=None,
    )
    public = tls_verify(iam)
    assert isinstance(public, ssl.SSLContext) and public.cert_store_stats()["x509_ca"] > 0


def test_the_cas_loaded_ahead_are_the_ones_a_client_gets() -> None:
    https = source({"type": "token", "token": "t"})
    load_cas_ahead([https])  # in a thread; a caller meanwhile waits for that load
    assert tls_verify(https) is tls_verify(https)


def test_a_broken_ca_bundle_is_a_config_error(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("not a certificate")
    with pytest.raises(ConfigError) as info:
        tls_verify(source({"type": "token", "token": "t"}, ca_bundle=str(bundle)))
    assert info.value.key == "sources[prod].ca_bundle"
