"""logs.py: text lines by default, JSON on request, sd-daemon priorities under journald."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import pytest

from backupd.logs import (
    JsonFormatter,
    TextFormatter,
    log,
    problem,
    setup_logging,
    syslog_priority,
)


def record(level: int, event: str, **fields: object) -> logging.LogRecord:
    logger = logging.getLogger("test.logs")
    made: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            made.append(record)

    handler = Keep()
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    try:
        log(logger, event, level=level, **fields)
    finally:
        logger.removeHandler(handler)
    return made[0]


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def journal_of(stream: TextIO) -> str:
    stat = os.fstat(stream.fileno())
    return f"{stat.st_dev}:{stat.st_ino}"


@pytest.mark.parametrize(
    ("level", "priority"),
    [
        (logging.CRITICAL, 2),
        (logging.ERROR, 3),
        (logging.WARNING, 4),
        (logging.INFO, 6),
        (logging.DEBUG, 7),
    ],
)
def test_syslog_priority_of_each_level(level: int, priority: int) -> None:
    assert syslog_priority(level) == priority


def test_text_line_is_level_event_and_fields() -> None:
    line = TextFormatter(timestamps=False).format(
        record(logging.INFO, "snapshot.done", workspace="prod/sales", jobs=3, note="two words")
    )
    assert line == 'INFO snapshot.done workspace=prod/sales jobs=3 note="two words"'


def test_text_line_with_a_timestamp_off_the_journal() -> None:
    line = TextFormatter(timestamps=True).format(record(logging.WARNING, "x.y", a=1))
    assert re.fullmatch(r"\d\d:\d\d:\d\d WARNING x\.y a=1", line)


def test_control_characters_in_values_are_quoted_not_sent_to_the_terminal() -> None:
    line = TextFormatter(timestamps=False).format(record(logging.INFO, "e", job="a\x1b[2Jb"))
    assert "\x1b" not in line and line == 'INFO e job="a\\u001b[2Jb"'


def test_journal_lines_carry_the_priority_on_every_line() -> None:
    formatter = TextFormatter(timestamps=False, priorities=True)
    assert formatter.format(record(logging.WARNING, "w")) == "<4>WARNING w"
    assert formatter.format(record(logging.ERROR, "e")) == "<3>ERROR e"
    assert formatter.format(record(logging.INFO, "i")) == "<6>INFO i"
    assert formatter.format(record(logging.DEBUG, "d")) == "<7>DEBUG d"
    try:
        raise ValueError("boom")
    except ValueError:
        failing = logging.LogRecord("t", logging.ERROR, __file__, 1, "crash", None, None)
        failing.exc_info = sys.exc_info()
    lines = formatter.format(failing).split("\n")
    assert len(lines) > 2 and all(line.startswith("<3>") for line in lines)


def test_json_on_request_and_prefixed_only_under_the_journal() -> None:
    event = record(logging.WARNING, "config.inline_secret", key="auth.token")
    plain = json.loads(JsonFormatter().format(event))
    assert plain["level"] == "warning" and plain["event"] == "config.inline_secret"
    assert plain["key"] == "auth.token"
    prefixed = JsonFormatter(priorities=True).format(event)
    assert prefixed.startswith("<4>{") and json.loads(prefixed[3:]) == plain


def test_setup_logging_text_by_default_on_any_stream(
    tmp_path: Path, restore_root: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    with open(tmp_path / "log", "w+") as stream:
        setup_logging("info", stream=stream)
        log(logging.getLogger("backupd.test"), "hello", who="me")
        log(logging.getLogger("backupd.test"), "hidden", level=logging.DEBUG)
        stream.seek(0)
        lines = stream.read().splitlines()
    assert len(lines) == 1 and re.fullmatch(r"\d\d:\d\d:\d\d INFO hello who=me", lines[0])


def test_setup_logging_under_the_journal(
    tmp_path: Path, restore_root: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open(tmp_path / "log", "w+") as stream:
        monkeypatch.setenv("JOURNAL_STREAM", journal_of(stream))
        setup_logging("debug", stream=stream)
        logger = logging.getLogger("backupd.test")
        log(logger, "careful", level=logging.WARNING)
        log(logger, "detail", level=logging.DEBUG)
        setup_logging("info", "json", stream=stream)
        log(logger, "structured", level=logging.ERROR)
        stream.seek(0)
        lines = stream.read().splitlines()
    assert lines[:2] == ["<4>WARNING careful", "<7>DEBUG detail"]
    assert lines[2].startswith("<3>{") and json.loads(lines[2][3:])["event"] == "structured"


def test_a_journal_stream_of_another_file_is_not_the_journal(
    tmp_path: Path, restore_root: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open(tmp_path / "other", "w") as other, open(tmp_path / "log", "w+") as stream:
        monkeypatch.setenv("JOURNAL_STREAM", journal_of(other))
        setup_logging("info", stream=stream)
        log(logging.getLogger("backupd.test"), "hello")
        problem("it failed", stream=stream)
        stream.seek(0)
        text = stream.read()
    assert "<" not in text and "INFO hello" in text and "backupd: it failed" in text


def test_problem_lines_carry_their_priority_under_the_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open(tmp_path / "log", "w+") as stream:
        monkeypatch.setenv("JOURNAL_STREAM", journal_of(stream))
        problem("snapshot failed for prod/a", stream=stream)
        problem("push failed (will retry on the next run)", level=logging.WARNING, stream=stream)
        stream.seek(0)
        lines = stream.read().splitlines()
    assert lines == [
        "<3>backupd: snapshot failed for prod/a",
        "<4>backupd: push failed (will retry on the next run)",
    ]
    plain = io.StringIO()  # no file descriptor: never the journal
    problem("x", stream=plain)
    assert plain.getvalue() == "backupd: x\n"
