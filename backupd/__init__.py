"""backupd: backup and versioning daemon for Huawei Cloud DataArts Studio."""

from __future__ import annotations

import functools


@functools.cache
def version() -> str:
    """The installed version ("0.0.0" in a checkout that was not installed).

    Read when first asked, not at import: importing importlib.metadata takes ~40 ms, which
    every command paid before its first API call.
    """
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("backupd")
    except PackageNotFoundError:
        return "0.0.0"


def __getattr__(name: str) -> str:
    if name == "__version__":  # `backupd.__version__`, as packages give it
        return version()
    raise AttributeError(f"module 'backupd' has no attribute {name!r}")
