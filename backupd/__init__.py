"""backupd: backup and versioning daemon for Huawei Cloud DataArts Studio."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("backupd")
except PackageNotFoundError:  # running from a checkout without install
    __version__ = "0.0.0"
