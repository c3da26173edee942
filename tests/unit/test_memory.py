"""The allocator tuning finds glibc's functions among the symbols the process has loaded."""

from __future__ import annotations

import platform

import pytest

from backupd.snapshot import memory


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_glibc_is_found_and_tuned() -> None:
    assert memory._libc() is not None
    memory.configure_malloc()
    memory.release_free_memory()
