"""An alert command gets none of backupd's secrets: not in its environment, not on its
command line."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from backupd.config import AlertsConfig
from backupd.secret import Secret
from backupd.service.alerts import AlertEvent, send_alert
from backupd.service.status import WorkspaceStatus

SECRET = "alert-env-secret-4d2c8e1f"
NOW = datetime(2026, 11, 29, 6, 15, tzinfo=UTC)
# Writes its environment and its arguments to the file named by its first argument.
DUMP = "import os, sys; open(sys.argv[1], 'w').write(repr((dict(os.environ), sys.argv)))"


def event() -> AlertEvent:
    record = WorkspaceStatus("prod/sales", last_attempt=NOW, failures=1, last_error="HTTP 403")
    return AlertEvent("failure", "prod/sales", NOW, record)


def test_the_command_runs_without_our_secrets_in_its_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = Secret(SECRET)  # as the config read it from ${DLF_SK}
    monkeypatch.setenv("DLF_SK", secret.reveal())
    monkeypatch.setenv("BACKUPD_TEST_PLAIN", "plain")
    dump = tmp_path / "dump"
    config = AlertsConfig(command=(sys.executable, "-c", DUMP, str(dump)), timeout=30)

    assert send_alert(config, event())

    environment, _ = eval(dump.read_text())  # noqa: S307 - our own repr
    assert "DLF_SK" not in environment and SECRET not in dump.read_text()
    assert environment["BACKUPD_TEST_PLAIN"] == "plain"
    assert environment["BACKUPD_ALERT"] == "failure"


def test_a_command_line_holding_our_secret_is_not_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    secret = Secret(SECRET)
    dump = tmp_path / "dump"
    command = (sys.executable, "-c", DUMP, str(dump), "--token", secret.reveal())

    with caplog.at_level(logging.ERROR):
        assert not send_alert(AlertsConfig(command=command, timeout=30), event())

    assert not dump.exists()
    [record] = [r for r in caplog.records if r.getMessage() == "alert.failed"]
    fields = repr(record.__dict__)
    assert "alerts.command holds a secret" in fields
    assert SECRET not in fields
