"""The shipped systemd units: valid for systemd, sandboxed, and calling real commands."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

UNITS = Path(__file__).resolve().parents[2] / "systemd"
SHIPPED_BINARY = "/opt/backupd/bin/backupd"  # the README's venv
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")

needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed (not a systemd host)"
)


def settings(unit: str) -> dict[str, list[str]]:
    """Key → values of a unit file (keys may repeat)."""
    found: dict[str, list[str]] = {}
    for line in (UNITS / unit).read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_daemon_unit_declares_the_lifecycle_backupd_implements() -> None:
    unit = settings("backupd.service")
    expected = {
        "Type": "notify",
        "NotifyAccess": "main",
        "Restart": "on-failure",
        "RestartPreventExitStatus": "78",  # EXIT_CONFIG
        "DynamicUser": "yes",
        "StateDirectory": "backupd",
        "ConfigurationDirectory": "backupd",
        "KillMode": "mixed",
    }
    for key, value in expected.items():
        assert unit[key] == [value], key
    assert unit["WatchdogSec"]
    # Credentials come from a drop-in per auth kind (backupd install-units --auth).
    assert "LoadCredential" not in unit
    assert unit["ExecStart"] == [f"{SHIPPED_BINARY} run --config %E/backupd/config.yaml"]
    assert settings("backupd-snapshot.service")["ExecStart"] == [
        f"{SHIPPED_BINARY} snapshot --config %E/backupd/config.yaml"
    ]
    assert settings("backupd-snapshot.timer")["Persistent"] == ["true"]


def test_unit_commands_exist_in_the_cli() -> None:
    for command in ("run", "snapshot"):
        result = subprocess.run(
            [sys.executable, "-m", "backupd", command, "--help"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert result.returncode == 0 and "--config" in result.stdout


@pytest.fixture
def units_here(tmp_path: Path) -> Path:
    """Copies of the units whose ExecStart= names an executable that exists on this machine.

    `systemd-analyze verify` fails when an Exec*= binary is missing, and the shipped path
    (/opt/backupd/bin/backupd) need not exist where the tests run. Only that path is
    rewritten, so every other line is verified exactly as shipped.
    """
    installed = Path(sys.executable).with_name("backupd")
    binary = installed if installed.exists() else Path(sys.executable)
    for unit in UNITS.iterdir():
        if not unit.is_file():
            continue  # dropins/: verified with the installed units (test_install_units.py)
        text = unit.read_text()
        (tmp_path / unit.name).write_text(text.replace(SHIPPED_BINARY, str(binary)))
    return tmp_path


@needs_systemd_analyze
def test_units_pass_systemd_analyze_verify(units_here: Path) -> None:
    names = sorted(path.name for path in units_here.iterdir())
    assert names == [
        "backupd-snapshot.service",
        "backupd-snapshot.timer",
        "backupd-snapshot@.service",
        "backupd-snapshot@.timer",
        "backupd.service",
        "backupd@.service",
    ]
    result = subprocess.run(
        [str(SYSTEMD_ANALYZE), "verify", *(str(units_here / name) for name in names)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # verify exits 0 on unknown keys and unparsable values ("…, ignoring"): any line naming
    # one of our files is a defect too. (Lines about the host's own units are not ours.)
    assert "backupd" not in result.stderr, result.stderr


@needs_systemd_analyze
@pytest.mark.parametrize("unit", ["backupd.service", "backupd-snapshot.service"])
def test_units_are_sandboxed_to_exposure_at_most_1_5(units_here: Path, unit: str) -> None:
    result = subprocess.run(
        [str(SYSTEMD_ANALYZE), "security", "--offline=yes", str(units_here / unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    print(f"{unit}: exposure {match[1]}")
    assert float(match[1]) <= 1.5, result.stdout
