"""--log-level, --log-format, -v and -q before or after any sub-command; the one given wins."""

from __future__ import annotations

import argparse

import pytest

from backupd.cli import COMMANDS, build_parser

# The smallest valid command line of each sub-command.
COMMAND_LINES = {
    "show": ["show", "JOB"],
    "config": ["config", "validate"],
}
EVERY_COMMAND = [COMMAND_LINES.get(name, [name]) for name in COMMANDS] + [["config", "generate"]]


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(argv)


@pytest.fixture(autouse=True)
def no_environment_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BACKUPD_LOG_LEVEL", raising=False)
    monkeypatch.delenv("BACKUPD_LOG_FORMAT", raising=False)


@pytest.mark.parametrize("command", EVERY_COMMAND, ids=" ".join)
def test_every_sub_command_takes_the_output_options_after_its_name(command: list[str]) -> None:
    assert (parse(*command).log_level, parse(*command).log_format) == ("info", "text")
    assert parse(*command, "-v").log_level == "debug"
    assert parse(*command, "--verbose").log_level == "debug"
    assert parse(*command, "-q").log_level == "warning"
    assert parse(*command, "--quiet").log_level == "warning"
    assert parse(*command, "--log-level", "error").log_level == "error"
    assert parse(*command, "--log-format", "json").log_format == "json"


@pytest.mark.parametrize(
    ("argv", "level", "log_format"),
    [
        (["-v", "snapshot"], "debug", "text"),
        (["-q", "snapshot"], "warning", "text"),
        (["--log-level", "error", "--log-format", "json", "snapshot"], "error", "json"),
        (["--log-level", "error", "snapshot", "-v"], "debug", "text"),
        (["-q", "snapshot", "--log-level", "info"], "info", "text"),
        (["--log-format", "json", "snapshot", "--log-format", "text"], "info", "text"),
        (["-v", "snapshot", "--log-format", "json"], "debug", "json"),
        (["snapshot", "-v", "-q"], "warning", "text"),
    ],
)
def test_before_or_after_and_the_last_one_wins(
    argv: list[str], level: str, log_format: str
) -> None:
    args = parse(*argv)
    assert (args.log_level, args.log_format) == (level, log_format)


def test_the_environment_gives_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BACKUPD_LOG_LEVEL", "warning")
    monkeypatch.setenv("BACKUPD_LOG_FORMAT", "json")
    args = parse("status")
    assert (args.log_level, args.log_format) == ("warning", "json")
    assert parse("status", "-v").log_level == "debug"


def test_an_unknown_level_is_still_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse("snapshot", "--log-level", "loud")
    assert exited.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
