"""The per-source restore section: OBS settings, and where the OBS AK/SK come from."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from backupd.config import SourceConfig, parse_config
from backupd.errors import ConfigError, CredentialError
from backupd.restore.importer import obs_credentials
from backupd.secret import Secret


def source(restore: dict[str, Any] | None = None, **extra: Any) -> SourceConfig:
    data = {
        "repository": {"path": "repo"},
        "sources": [
            {
                "name": "prod",
                "region": "cn-north-4",
                "project_id": "0123456789abcdef0123456789abcdef",
                "auth": {"type": "token", "token": "t0ken"},
                "workspaces": [{"id": "fedcba9876543210fedcba9876543210", "name": "sales"}],
                **({"restore": restore} if restore is not None else {}),
                **extra,
            }
        ],
    }
    return parse_config(data, base_dir=Path("/etc/backupd"), environ={}).sources[0]


def test_defaults_build_the_obs_endpoint_from_the_region() -> None:
    configured = source({"obs_bucket": "dr-bucket"})
    assert configured.restore.obs_prefix == "backupd-restore/"
    assert configured.restore.max_import_bytes == 10 * 1024**2
    assert configured.obs_endpoint == "https://obs.cn-north-4.myhuaweicloud.com"


@pytest.mark.parametrize(
    ("restore", "extra", "key"),
    [
        ({"obs_bucket": "Bad_Bucket"}, {}, "sources[0].restore.obs_bucket"),
        ({"obs_ak": "AK"}, {}, "sources[0].restore"),
        ({"obs_sk_file": "sk"}, {}, "sources[0].restore.obs_ak"),
        ({"obs_prefix": "/abs/"}, {}, "sources[0].restore.obs_prefix"),
        ({"max_import_bytes": 11 * 1024**2}, {}, "sources[0].restore.max_import_bytes"),
        (
            {"obs_bucket": "dr-bucket"},
            {"region": None, "endpoint": "https://dlf.example.com"},
            "sources[0].restore.obs_endpoint",
        ),
    ],
)
def test_mistakes_are_named_by_key(
    restore: dict[str, Any], extra: dict[str, Any], key: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        source(restore, **extra)
    assert caught.value.key == key


def test_obs_credentials_come_from_restore_section(tmp_path: Path) -> None:
    sk_file = tmp_path / "sk"
    sk_file.write_text("obs-secret\n")
    credentials = obs_credentials(source({"obs_ak": "OBSAK", "obs_sk_file": str(sk_file)}))
    assert credentials.ak == "OBSAK" and credentials.sk == Secret("obs-secret")


def test_obs_credentials_fall_back_to_the_sources_aksk_auth() -> None:
    # Any auth section of type 'aksk' with ak and sk/sk_file/sk_credential is enough.
    aksk = SimpleNamespace(
        type="aksk", ak="AK1", sk=Secret("SK1"), sk_file=None, sk_credential=None
    )
    credentials = obs_credentials(dataclasses.replace(source(), auth=aksk))  # type: ignore[arg-type]
    assert credentials.ak == "AK1" and credentials.sk == Secret("SK1")


def test_token_auth_without_obs_keys_is_a_credential_error() -> None:
    with pytest.raises(CredentialError, match="needs an AK/SK"):
        obs_credentials(source())
