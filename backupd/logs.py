"""Logging: one line per event with key=value context.

``log(logger, "snapshot.done", source="prod", jobs=120)`` renders as
``INFO snapshot.done source=prod jobs=120`` on a terminal or under journald, and as one JSON
object per line elsewhere (or with ``--log-format json``).
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["auto", "text", "json"]

_FIELDS = "backupd_fields"


def log(logger: logging.Logger, event: str, *, level: int = logging.INFO, **fields: Any) -> None:
    """Log one event; ``fields`` become key=value pairs (or JSON keys)."""
    logger.log(level, event, extra={_FIELDS: fields})


def _quote(value: Any) -> str:
    text = str(value)
    if not text or any(c in text for c in ' "=\n\t'):
        return json.dumps(text, ensure_ascii=False)
    return text


class TextFormatter(logging.Formatter):
    def __init__(self, *, timestamps: bool) -> None:
        super().__init__()
        self.timestamps = timestamps

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = getattr(record, _FIELDS, {})
        parts = [record.levelname, record.getMessage()]
        parts += [f"{key}={_quote(value)}" for key, value in fields.items()]
        if self.timestamps:
            parts.insert(0, datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S"))
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
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
        return json.dumps(payload, ensure_ascii=False)


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return str(value)


def _under_journald(stream: Any) -> bool:
    # systemd sets JOURNAL_STREAM=<device>:<inode> of the stream it connected to stderr.
    expected = os.environ.get("JOURNAL_STREAM", "")
    try:
        stat = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return False
    return expected == f"{stat.st_dev}:{stat.st_ino}"


def setup_logging(level: str = "info", log_format: LogFormat = "auto") -> None:
    """Configure the root logger once, at the CLI edge."""
    stream = sys.stderr
    handler = logging.StreamHandler(stream)
    if log_format == "auto":
        journald = _under_journald(stream)
        log_format = "text" if journald or stream.isatty() else "json"
        timestamps = not journald
    else:
        timestamps = True
    if log_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter(timestamps=timestamps))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Libraries log request URLs and headers at DEBUG; keep them at WARNING.
    for noisy in ("httpx", "httpcore", "git", "apscheduler", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
