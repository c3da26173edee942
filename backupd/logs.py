"""Logging: one line per event with key=value context.

``log(logger, "snapshot.done", source="prod", jobs=120)`` renders as
``12:00:03 INFO snapshot.done source=prod jobs=120`` — on a terminal, through a pipe, into a
file — and as one JSON object per line only when asked (``--log-format json``,
``$BACKUPD_LOG_FORMAT``). When stderr is the journal (systemd's ``JOURNAL_STREAM`` names its
device and inode, see sd-daemon(3)), each line starts with its syslog priority (``<3>``
error, ``<4>`` warning, ``<6>`` info, ``<7>`` debug) so that ``journalctl -p warning`` finds
backupd's warnings, and carries no time of its own: the journal stamps every line.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

LogFormat = Literal["text", "json"]
LOG_FORMATS: tuple[LogFormat, ...] = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")

_FIELDS = "backupd_fields"


def log(logger: logging.Logger, event: str, *, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event; ``fields`` become key=value pairs (or JSON keys)."""
    logger.log(level, event, extra={_FIELDS: fields})


def _quote(value: Any) -> str:
    text = str(value)
    # Quoted (JSON string syntax) when it would not read back as one value, and when it holds
    # control characters: a name from DataArts must not move a terminal's cursor.
    if not text or any(c in text for c in ' "=') or not text.isprintable():
        return json.dumps(text, ensure_ascii=False)
    return text


def syslog_priority(levelno: int) -> int:
    """The sd-daemon(3) / syslog priority of a logging level."""
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


class TextFormatter(logging.Formatter):
    """``[HH:MM:SS ]LEVEL event key=value …``; under journald ``<N>LEVEL event …`` instead."""

    def __init__(self, *, timestamps: bool, priorities: bool = False) -> None:
        super().__init__()
        self.timestamps = timestamps
        self.priorities = priorities

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = getattr(record, _FIELDS, {})
        parts = [record.levelname, record.getMessage()]
        parts += [f"{key}={_quote(value)}" for key, value in fields.items()]
        if self.timestamps:
            parts.insert(0, datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S"))
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if self.priorities:
            # The journal reads a prefix per line: a traceback's lines keep the record's
            # priority instead of falling back to info.
            prefix = f"<{syslog_priority(record.levelno)}>"
            line = "\n".join(prefix + part for part in line.split("\n"))
        return line


class JsonFormatter(logging.Formatter):
    def __init__(self, *, priorities: bool = False) -> None:
        super().__init__()
        self.priorities = priorities

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = getattr(record, _FIELDS, {})
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "event": record.getMessage(),
            "logger": record.name,
        }
        payload.update({key: _jsonable(value) for key, value in fields.items()})
        if record.exc_info:
            payload["traceback"] = self.formatException(record.exc_info)
        line = json.dumps(payload, ensure_ascii=False)
        # The journal strips the prefix: what it stores is the JSON object alone.
        return f"<{syslog_priority(record.levelno)}>{line}" if self.priorities else line


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return str(value)


def under_journald(stream: TextIO) -> bool:
    """Is ``stream`` connected to the journal? systemd sets ``JOURNAL_STREAM=<device>:<inode>``
    of the stream it connected to stdout/stderr; a stream redirected elsewhere (a pipe, a
    file) no longer matches, even in a child that inherited the variable."""
    expected = os.environ.get("JOURNAL_STREAM", "")
    if not expected:
        return False
    try:
        stat = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return expected == f"{stat.st_dev}:{stat.st_ino}"


def problem(text: str, *, level: int = logging.ERROR, stream: TextIO | None = None) -> None:
    """Print ``backupd: text`` on stderr: the one-line outcome a command ends with, which is
    not a log event. Under journald it carries its priority too, so that ``journalctl -p err``
    shows why a run failed."""
    stream = sys.stderr if stream is None else stream
    prefix = f"<{syslog_priority(level)}>" if under_journald(stream) else ""
    print(f"{prefix}backupd: {text}", file=stream)


def setup_logging(
    level: str = "info", log_format: LogFormat = "text", *, stream: TextIO | None = None
) -> None:
    """Configure the root logger once, at the CLI edge: text unless JSON is asked for, with
    priority prefixes and no time under journald. ``stream``: stderr unless given."""
    stream = sys.stderr if stream is None else stream
    journald = under_journald(stream)
    handler = logging.StreamHandler(stream)
    if log_format == "json":
        handler.setFormatter(JsonFormatter(priorities=journald))
    else:
        handler.setFormatter(TextFormatter(timestamps=not journald, priorities=journald))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Libraries log request URLs and headers at DEBUG; keep them at WARNING.
    for noisy in ("httpx", "httpcore", "git", "apscheduler", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
