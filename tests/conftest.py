"""Shared fixtures."""

from __future__ import annotations

import compileall
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import backupd
from backupd.simulator.server import Simulator

Mount = Callable[[str, str], Path | None]

TIERS = ("unit", "contract", "integration", "e2e")


# Where the tests' files go when the machine has a RAM file system with room for them.
MEMORY_FS = Path("/dev/shm")
MEMORY_FS_ROOM = 2 << 30  # bytes free it must have (a whole run writes ~250 MB)
_MEMORY_FOLDER = pytest.StashKey[Path]()  # the run's folder there, removed at its end


@pytest.hookimpl(tryfirst=True)  # before pytest's tmp_path factory reads --basetemp
def pytest_configure(config: pytest.Config) -> None:
    """Before the workers start (in the controller, or a run without workers):

    - compile backupd once: the tests start it as a real process hundreds of times, and
      where PYTHONDONTWRITEBYTECODE is set (CI, containers) each of them would compile
      every module it imports again (0.1 s of CPU apiece);
    - with workers, rewrite the asserts of the test modules once, here, for all of them
      (``_rewrite_test_modules_once``);
    - put the tests' folders (tmp_path, and TMPDIR for what they start) on a RAM file system
      when there is one: the suite creates ~100,000 files, and on a disk file system that
      is a fifth of its CPU (inode allocation in the kernel). Nothing here depends on the
      disk; a test that needs a small file system mounts its own. ``--basetemp`` given:
      left as it is. Removed at the end (``pytest_unconfigure``).
    """
    if hasattr(config, "workerinput"):
        return
    compileall.compile_dir(Path(backupd.__file__).parent, quiet=1)
    if getattr(config.option, "numprocesses", None):
        _rewrite_test_modules_once(config)
    if config.option.basetemp is None and _memory_fs_has_room():
        folder = Path(tempfile.mkdtemp(prefix="backupd-tests-", dir=MEMORY_FS))
        (folder / "tmp").mkdir()
        config.option.basetemp = str(folder / "pytest")
        os.environ["TMPDIR"] = str(folder / "tmp")  # workers and their children inherit it
        tempfile.tempdir = None  # this process asks again
        config.stash[_MEMORY_FOLDER] = folder


def _rewrite_test_modules_once(config: pytest.Config) -> None:
    """Collect the run's test files once, in two processes side by side, so that pytest's
    assert rewriting caches each module's rewritten code (a ``*-pytest-*.pyc`` beside it)
    for the workers to read. Where PYTHONDONTWRITEBYTECODE is set nothing caches it, and
    each worker rewrote every module again: ~4.5 s of CPU a worker. Whatever fails here is
    left to the workers, which report it as they would."""
    files: list[str] = []
    for arg in config.args:
        path = Path(arg.split("::", 1)[0])
        files += map(str, sorted(path.rglob("test_*.py"))) if path.is_dir() else [str(path)]
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    collect = [sys.executable, "-m", "pytest", "--collect-only", "-q", "-n", "0"]
    collectors = [
        subprocess.Popen(
            [*collect, "-p", "no:cacheprovider", *half],
            cwd=config.invocation_params.dir,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for half in (files[0::2], files[1::2])
        if half
    ]
    for collector in collectors:
        try:
            collector.wait(timeout=300)
        except subprocess.TimeoutExpired:
            collector.kill()
            collector.wait()


def pytest_unconfigure(config: pytest.Config) -> None:
    folder = config.stash.get(_MEMORY_FOLDER, None)
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)


def _memory_fs_has_room() -> bool:
    try:
        return os.access(MEMORY_FS, os.W_OK) and shutil.disk_usage(MEMORY_FS).free >= MEMORY_FS_ROOM
    except OSError:
        return False


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """Two workers a core for ``-n auto``: a test spends much of its time waiting on a
    child process, a socket or git, and one worker a core leaves the cores idle then."""
    return 2 * len(os.sched_getaffinity(0))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test with its tier, from its folder: `pytest -m unit` runs the fast ones,
    `-m "not e2e"` everything but the real processes."""
    for item in items:
        parts = Path(str(item.path)).parts
        tier = next((part for part in parts if part in TIERS), None)
        if tier is not None:
            item.add_marker(getattr(pytest.mark, tier))


@pytest.fixture
def simulator() -> Iterator[Simulator]:
    """A DataArts simulator serving real HTTP on loopback."""
    with Simulator() as running:
        yield running


@pytest.fixture
def mount_tmpfs(tmp_path: Path) -> Iterator[Mount]:
    """Mount a real tmpfs of a given size (``mount("name", "1m")``); None where not permitted.

    A small file system is the honest way to run out of disk space; a large one keeps
    file-heavy tests fast on slow disks.
    """
    mounted: list[Path] = []

    def mount(name: str, size: str) -> Path | None:
        target = tmp_path / name
        target.mkdir()
        command = ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(target)]
        try:
            result = subprocess.run(command, capture_output=True, check=False, timeout=10)
        except OSError:
            return None
        if result.returncode != 0:
            return None
        mounted.append(target)
        return target

    yield mount
    for target in reversed(mounted):
        subprocess.run(["umount", "-l", str(target)], capture_output=True, check=False)


@pytest.fixture
def fast_dir(tmp_path: Path, mount_tmpfs: Mount) -> Path:
    """A folder on a tmpfs when one can be mounted (fast), else under tmp_path (slower)."""
    return mount_tmpfs("fast", "1g") or tmp_path
