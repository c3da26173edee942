"""Resolve secrets from where the config says they live: inline, a file, or a systemd credential."""

from __future__ import annotations

import os
from pathlib import Path

from backupd.errors import CredentialError
from backupd.secret import Secret


def read_secret(
    *,
    key: str,
    value: Secret | None = None,
    file: Path | None = None,
    credential: str | None = None,
) -> Secret:
    """Return the secret named by exactly one of value/file/credential.

    ``key`` is the config path shown in errors; the secret itself never is.
    """
    if value is not None:
        return value
    if credential is not None:
        directory = os.environ.get("CREDENTIALS_DIRECTORY")
        if not directory:
            raise CredentialError(
                f"{key}_credential: $CREDENTIALS_DIRECTORY is not set "
                "(systemd sets it for units with LoadCredential=)"
            )
        file = Path(directory) / credential
    if file is None:
        raise CredentialError(f"{key}: no secret configured")
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as error:
        raise CredentialError(f"{key}: cannot read {file}: {error.strerror or error}") from None
    secret = text.strip()
    if not secret:
        raise CredentialError(f"{key}: {file} is empty")
    return Secret(secret)
