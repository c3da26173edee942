"""The OBS header signature, locked by vectors from the official OBS SDK.

Expected values were computed with esdk-obs-python 3.26.6,
``obs.auth.Authentication(ak, sk, False, obs.convertor.Adapter('obs'),
'obs.cn-north-4.myhuaweicloud.com', False).doAuth('PUT', bucket, key, {}, headers)``;
the SDK is not a dependency, so the vectors are written down here.
"""

from __future__ import annotations

import base64
import hashlib

import pytest

from backupd.dataarts.obs import (
    ObsCredentials,
    authorization,
    object_url,
    string_to_sign,
)
from backupd.secret import Secret

AK = "TESTAK1234567890ABCD"
SK = Secret("TestSecretKey0123456789abcdefghijklmnopq")
DATE = "Thu, 01 Jan 2026 00:00:00 GMT"
MD5 = base64.b64encode(hashlib.md5(b"PK-demo").digest()).decode()  # noqa: S324

VECTORS = [
    (
        "backupd/prod/销售-20260101T000000Z.zip",
        {"Content-MD5": MD5, "Content-Type": "application/zip", "Date": DATE},
        "PUT\nBhFesxEwSpSeOQJX6XWn6Q==\napplication/zip\nThu, 01 Jan 2026 00:00:00 GMT\n"
        "/restore-bucket/backupd/prod/%E9%94%80%E5%94%AE-20260101T000000Z.zip",
        "NE8g5BsRNeFbqbV5Pv2bADRW1gI=",
    ),
    (
        "a b~c+d.zip",
        {"Content-Type": "application/zip", "Date": DATE, "x-obs-security-token": "TOKEN/abc+="},
        "PUT\n\napplication/zip\nThu, 01 Jan 2026 00:00:00 GMT\n"
        "x-obs-security-token:TOKEN/abc+=\n/restore-bucket/a%20b~c%2Bd.zip",
        "Mb4WvpTHI4SSeciSHoyu7b8MS1s=",
    ),
    (
        "x.zip",
        {
            "Date": DATE,
            "x-obs-date": "Thu, 01 Jan 2026 00:05:00 GMT",
            "X-Obs-Meta-Who": " backupd ",
        },
        "PUT\n\n\n\nx-obs-date:Thu, 01 Jan 2026 00:05:00 GMT\nx-obs-meta-who:backupd\n"
        "/restore-bucket/x.zip",
        "CPIyjONjpJPJaxkc3It5cSaq+QU=",
    ),
]


@pytest.mark.parametrize(("key", "headers", "canonical", "expected"), VECTORS)
def test_signature_matches_the_obs_sdk(
    key: str, headers: dict[str, str], canonical: str, expected: str
) -> None:
    assert string_to_sign("PUT", "restore-bucket", key, headers) == canonical
    credentials = ObsCredentials(AK, SK)
    assert authorization("PUT", "restore-bucket", key, headers, credentials) == (
        f"OBS {AK}:{expected}"
    )


def test_addressing_virtual_hosted_for_obs_names_path_style_otherwise() -> None:
    assert (
        object_url("https://obs.cn-north-4.myhuaweicloud.com", "b1", "p/销.zip")
        == "https://b1.obs.cn-north-4.myhuaweicloud.com/p/%E9%94%80.zip"
    )
    assert object_url("http://127.0.0.1:9000/", "b1", "k.zip") == "http://127.0.0.1:9000/b1/k.zip"
    assert object_url("http://localhost:9/obs", "b1", "k.zip") == "http://localhost:9/obs/b1/k.zip"


def test_credentials_never_show_the_secret() -> None:
    credentials = ObsCredentials(AK, SK, Secret("token-value"))
    assert "TestSecretKey" not in repr(credentials) and "token-value" not in repr(credentials)
