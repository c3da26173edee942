"""Broken config files, through the real `python -m backupd` process: exit 78 (what systemd's
RestartPreventExitStatus= stops on), one line on stderr, no traceback, nothing written.

The full corpus runs in-process in tests/unit/test_config_corpus.py; these prove the exit
code of the real process.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


def config_text(tmp_path: Path) -> str:
    return f"""\
repository:
  path: {tmp_path / "repo"}
sources:
  - name: prod
    region: cn-north-4
    project_id: 0123456789abcdef0123456789abcdef
    auth:
      type: token
      token: t0ken
    workspaces:
      - id: fedcba9876543210fedcba9876543210
"""


FILE = "CONFIG: "  # the config file's path, as given with -c
DUPLICATE = "duplicate key 'repository' at line 12 (first at line 1)"
UNCLOSED = "'${' at character 1 is not closed: write ${NAME}, or $${ for a literal ${"


@pytest.mark.parametrize(
    ("command", "mistake", "says"),
    [
        ("snapshot", "second-repository", FILE + DUPLICATE),
        ("run", "second-repository", FILE + DUPLICATE),
        (
            "run",
            "latin-1",
            FILE + "not UTF-8: byte 0xe9 at line 12, column 6 (save the file as UTF-8)",
        ),
        ("snapshot", "nul", FILE + "character U+0000 (NUL) is not allowed, at line 9, column 16"),
        ("run", "unclosed-reference", "sources[0].auth.token: " + UNCLOSED),
    ],
)
def test_a_broken_config_exits_78_with_one_line(
    tmp_path: Path, command: str, mistake: str, says: str
) -> None:
    good = config_text(tmp_path)
    content = {
        "second-repository": (good + f"repository:\n  path: {tmp_path / 'other'}\n").encode(),
        "latin-1": good.encode() + b"# caf\xe9\n",
        "nul": good.replace("t0ken", "t0\x00ken").encode(),
        "unclosed-reference": good.replace("t0ken", "${DLF_TOKEN").encode(),
    }[mistake]
    config = tmp_path / "config.yaml"
    config.write_bytes(content)

    result = subprocess.run(
        [sys.executable, "-m", "backupd", command, "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 78, result.stderr
    assert result.stderr.splitlines() == ["backupd: config: " + says.replace("CONFIG", str(config))]
    assert result.stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]
