"""`backupd install-units`: units that run the backupd of --prefix, credential drop-ins per
auth kind, per-instance templates, the files shipped in the wheel, and one schedule shared
by the timer and the config."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from backupd.config_doc import render_example
from backupd.service.cron import fire_times
from backupd.service.plan import DEFAULT_CRON, ScheduleSpec

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTED_PREFIX = "/opt/backupd"  # README: python3 -m venv /opt/backupd
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(
    SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed (not a systemd host)"
)
UNITS = [
    "backupd.service",
    "backupd-snapshot.service",
    "backupd-snapshot.timer",
    "backupd@.service",
    "backupd-snapshot@.service",
    "backupd-snapshot@.timer",
]
SERVICES = [unit for unit in UNITS if unit.endswith(".service")]


def backupd(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "backupd", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
        cwd=cwd,
    )


def settings(path: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if "=" in line and not line.startswith(("#", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_install_units_writes_units_running_the_prefix_and_credential_dropins(
    tmp_path: Path,
) -> None:
    result = backupd(
        "install-units",
        "--prefix",
        "/srv/tools/backupd",
        "--dest",
        str(tmp_path),
        "--auth",
        "password",
        "--push-key",
    )

    assert result.returncode == 0, result.stderr
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*") if p.is_file())
    expected = UNITS + [
        f"{s}.d/{d}" for s in SERVICES for d in ("credentials.conf", "push-key.conf")
    ]
    assert written == sorted(expected)
    for unit in SERVICES:
        (exec_start,) = settings(tmp_path / unit)["ExecStart"]
        assert exec_start.startswith("/srv/tools/backupd/bin/backupd "), exec_start
        assert DOCUMENTED_PREFIX not in (tmp_path / unit).read_text()
        instance = "@" in unit
        folder = "/etc/backupd/credentials" + ("/%i" if instance else "")
        dropins = tmp_path / f"{unit}.d"
        assert settings(dropins / "credentials.conf")["LoadCredential"] == [
            f"dlf-password:{folder}/dlf-password"
        ]
        assert settings(dropins / "push-key.conf")["LoadCredential"] == [
            f"push-key:{folder}/push-key"
        ]
        config = "%E/backupd/%i.yaml" if instance else "%E/backupd/config.yaml"
        assert exec_start.endswith(f"--config {config}")
    template = settings(tmp_path / "backupd@.service")
    assert template["StateDirectory"] == ["backupd/%i"] and template["User"] == ["backupd-%i"]
    assert settings(tmp_path / "backupd-snapshot@.service")["User"] == ["backupd-%i"]
    assert "/srv/tools/backupd/bin/backupd" in result.stdout  # says what the units run
    assert "daemon-reload" in result.stdout


def test_install_units_defaults_to_the_running_prefix_and_can_print(tmp_path: Path) -> None:
    result = backupd("install-units", "--print", "--dest", str(tmp_path / "never"))

    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "never").exists()
    headers = re.findall(r"^# ==> (\S+) <==$", result.stdout, flags=re.MULTILINE)
    assert headers == UNITS + [f"{s}.d/credentials.conf" for s in SERVICES]
    assert f"ExecStart={sys.prefix}/bin/backupd run --config" in result.stdout
    assert "LoadCredential=dlf-sk:/etc/backupd/credentials/dlf-sk" in result.stdout  # aksk


@pytest.mark.parametrize("prefix", ["relative/venv", "/opt/my venv", "/opt/100%"])
def test_install_units_refuses_a_prefix_systemd_would_misread(tmp_path: Path, prefix: str) -> None:
    result = backupd("install-units", "--prefix", prefix, "--dest", str(tmp_path))
    assert result.returncode == 2
    assert "--prefix" in result.stderr
    assert not any(tmp_path.iterdir())


def fake_root(tmp_path: Path) -> Path:
    """A file system root for `systemd-analyze verify --root`: the host's system units, a
    kill, and a stand-in executable at the documented venv path (not on this host's /opt)."""
    root = tmp_path / "root"
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "usr/bin").mkdir(parents=True)
    kill = shutil.which("kill") or "/usr/bin/kill"
    shutil.copy(kill, root / "usr/bin" / "kill")
    (root / "bin").symlink_to("usr/bin")
    binary = root / DOCUMENTED_PREFIX.lstrip("/") / "bin" / "backupd"
    binary.parent.mkdir(parents=True)
    binary.write_text("#!/bin/sh\nexit 0\n")
    binary.chmod(0o755)
    return root


@needs_systemd_analyze
@pytest.mark.parametrize("auth", ["aksk", "password", "token"])
def test_installed_units_and_templates_pass_verify_with_the_documented_venv(
    tmp_path: Path, auth: str
) -> None:
    root = fake_root(tmp_path)
    units = root / "etc/systemd/system"
    result = backupd(
        "install-units",
        "--prefix",
        DOCUMENTED_PREFIX,
        "--dest",
        str(units),
        "--auth",
        auth,
        "--push-key",
    )
    assert result.returncode == 0, result.stderr
    # The shipped units as they are: ExecStart= still the documented path.
    assert settings(units / "backupd@.service")["ExecStart"][0].startswith(
        f"{DOCUMENTED_PREFIX}/bin/backupd run"
    )
    # Templates are verified through an instance, so that %i is expanded (User=backupd-%i).
    names = [unit.replace("@.", "@prod-cn.") for unit in UNITS]
    verify = subprocess.run(
        [str(SYSTEMD_ANALYZE), "verify", f"--root={root}", *names],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert verify.returncode == 0, verify.stderr
    assert "backupd" not in verify.stderr, verify.stderr  # "…, ignoring" lines are defects


@needs_systemd_analyze
@pytest.mark.parametrize("unit", ["backupd@prod-cn.service", "backupd-snapshot@prod-cn.service"])
def test_template_units_are_sandboxed_like_the_plain_ones(tmp_path: Path, unit: str) -> None:
    assert backupd("install-units", "--dest", str(tmp_path)).returncode == 0
    result = subprocess.run(
        [str(SYSTEMD_ANALYZE), "security", "--offline=yes", str(tmp_path / unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", result.stdout)
    assert match, result.stdout + result.stderr
    assert float(match[1]) <= 1.5, result.stdout


def test_the_wheel_ships_the_units_dropins_and_sample_config(tmp_path: Path) -> None:
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if build.returncode != 0:
        pytest.skip(f"cannot build a wheel here (no build backend?): {build.stderr[-300:]}")
    (wheel,) = tmp_path.glob("backupd-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        shipped_config = archive.read("backupd/data/config.example.yaml").decode()
        archive.extractall(tmp_path / "site")
    for unit in UNITS:
        assert f"backupd/data/systemd/{unit}" in names
    for auth in ("aksk", "password", "token", "push-key"):
        assert f"backupd/data/systemd/dropins/backupd/{auth}.conf" in names
        assert f"backupd/data/systemd/dropins/backupd@/{auth}.conf" in names
    assert shipped_config == render_example()
    # install-units works from the installed package alone (no checkout beside it; run from
    # another folder, so that the checkout is not the first thing on sys.path).
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    result = backupd("install-units", "--print", "--prefix", "/opt/x", env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "ExecStart=/opt/x/bin/backupd snapshot" in result.stdout
    where = subprocess.run(
        [sys.executable, "-c", "import backupd; print(backupd.__file__)"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        env=env,
        cwd=tmp_path,
    )
    assert where.stdout.strip().startswith(str(tmp_path / "site"))


# --- one schedule: the shipped timers and the config's default --------------------------------


def on_calendar(timer: str) -> list[str]:
    return settings(ROOT / "systemd" / timer)["OnCalendar"]


def test_timers_and_the_generated_config_share_the_hourly_default_schedule() -> None:
    generated = yaml.safe_load(render_example())
    assert generated["schedule"]["cron"] == DEFAULT_CRON == "0 * * * *"
    for timer in ("backupd-snapshot.timer", "backupd-snapshot@.timer"):
        assert on_calendar(timer) == ["*-*-* *:00:00"], timer  # hourly, on the hour


@needs_systemd_analyze
def test_systemd_fires_the_timer_exactly_when_the_default_cron_fires() -> None:
    """Judged by systemd itself: the next 30 elapses of the timer's OnCalendar= are the
    next 30 fire times of the config's default cron (which `backupd status` judges by)."""
    result = subprocess.run(
        [
            str(SYSTEMD_ANALYZE),
            "calendar",
            "--iterations=30",
            *on_calendar("backupd-snapshot.timer"),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, "TZ": "UTC", "LC_ALL": "C"},
    )
    assert result.returncode == 0, result.stderr
    stamps = re.findall(r"(?:Next elapse|Iter\. #\d+): \w+ (\S+ \S+) UTC", result.stdout)
    elapses = [datetime.fromisoformat(stamp).replace(tzinfo=UTC) for stamp in stamps]
    assert len(elapses) == 30, result.stdout
    after = elapses[0] - timedelta(seconds=1)
    cron = fire_times(ScheduleSpec(cron=DEFAULT_CRON), after, until=elapses[-1], limit=30)
    assert cron == elapses
