"""`backupd install-units`: the shipped systemd units and credential drop-ins, made to run
the backupd that is installed here.

The units ship inside the package (``backupd/data/systemd/`` in the wheel, ``systemd/`` in a
checkout) and name the documented venv, ``/opt/backupd/bin/backupd``; this command rewrites
that path for ``--prefix`` and adds the drop-ins that load the chosen credentials, so that no
unit needs editing by hand. It writes plain files only: ``systemctl daemon-reload`` and
enabling a unit stay with the operator.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

from backupd.errors import EXIT_OK, UsageError, UserError

SHIPPED_BINARY = "/opt/backupd/bin/backupd"
UNITS = (
    "backupd.service",
    "backupd-snapshot.service",
    "backupd-snapshot.timer",
    "backupd@.service",
    "backupd-snapshot@.service",
    "backupd-snapshot@.timer",
)
SERVICES = tuple(unit for unit in UNITS if unit.endswith(".service"))
AUTH_KINDS = ("aksk", "password", "token")


@dataclass(frozen=True)
class UnitFile:
    path: str  # relative to the unit folder, e.g. "backupd.service.d/credentials.conf"
    text: str


def shipped_units() -> Path:
    """The folder holding the shipped units: in the wheel, or in a source checkout."""
    package = Path(__file__).resolve().parents[1]
    for folder in (package / "data" / "systemd", package.parent / "systemd"):
        if (folder / "backupd.service").is_file():
            return folder
    raise UserError("the systemd units are missing from this installation: reinstall backupd")


def executable(prefix: Path) -> str:
    """``prefix``/bin/backupd as ExecStart= may name it (absolute, nothing to quote)."""
    if not prefix.is_absolute():
        raise UsageError(f"--prefix must be an absolute path, got {prefix}")
    binary = str(prefix / "bin" / "backupd")
    if any(character.isspace() or character in "%\\\"'$;" for character in binary):
        raise UsageError(f"--prefix {prefix}: choose a path without spaces, quotes, % or $")
    return binary


def render_units(prefix: Path, auth: str = "aksk", push_key: bool = False) -> list[UnitFile]:
    """The units running ``prefix``/bin/backupd, and for every service a credentials
    drop-in for ``auth`` (plus one for the push key)."""
    if auth not in AUTH_KINDS:
        raise UsageError(f"--auth must be one of {', '.join(AUTH_KINDS)}, got {auth!r}")
    binary = executable(prefix)
    folder = shipped_units()
    files = [
        UnitFile(unit, (folder / unit).read_text().replace(SHIPPED_BINARY, binary))
        for unit in UNITS
    ]
    for service in SERVICES:
        dropins = folder / "dropins" / ("backupd@" if "@" in service else "backupd")
        files.append(
            UnitFile(f"{service}.d/credentials.conf", (dropins / f"{auth}.conf").read_text())
        )
        if push_key:
            files.append(
                UnitFile(f"{service}.d/push-key.conf", (dropins / "push-key.conf").read_text())
            )
    return files


def install(files: list[UnitFile], destination: Path) -> list[Path]:
    """Write ``files`` under ``destination`` (mode 0644); the paths written."""
    written = []
    for unit in files:
        path = destination / unit.path
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        path.write_text(unit.text)
        path.chmod(0o644)
        written.append(path)
    return written


def cmd_install_units(args: argparse.Namespace) -> int:
    files = render_units(args.prefix, args.auth, args.push_key)
    if args.print_units:
        for unit in files:
            sys.stdout.write(f"# ==> {unit.path} <==\n{unit.text}\n")
        return EXIT_OK
    binary = executable(args.prefix)
    try:
        written = install(files, args.dest)
    except OSError as error:
        raise UserError(
            f"cannot write the units in {args.dest}: {error.strerror or error} (run as root, "
            "or --print them)"
        ) from None
    for path in written:
        print(f"wrote {path}")  # noqa: T201
    notes = [
        f"the units run {binary}",
        "next: systemctl daemon-reload, then enable ONE of (per config):",
        "  systemctl enable --now backupd-snapshot.timer      # /etc/backupd/config.yaml, hourly",
        "  systemctl enable --now backupd.service             # /etc/backupd/config.yaml, daemon",
        "  systemctl enable --now backupd-snapshot@NAME.timer # /etc/backupd/NAME.yaml",
        "  systemctl enable --now backupd@NAME.service        # /etc/backupd/NAME.yaml",
    ]
    if not Path(binary).is_file():
        notes.insert(1, f"warning: {binary} does not exist (yet)")
    if args.prefix.is_relative_to("/home") or args.prefix.is_relative_to("/root"):
        notes.insert(1, f"warning: the units cannot see {args.prefix} (ProtectHome=yes)")
    for note in notes:
        print(note)  # noqa: T201
    return EXIT_OK
