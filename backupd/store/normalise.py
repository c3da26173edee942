"""Pure transformations from exported bytes to what the repository stores.

DataArts definitions (.job, .script, .resource) are re-emitted canonically: sorted keys,
2-space indent, UTF-8, trailing newline, and one spelling per number (an integral value is
written as an integer: ``1.0`` and ``1e0`` become ``1``; other numbers keep their shortest
exact form). That keeps every value (the file is still a real export, restorable as is)
while making diffs independent of the server's key order, whitespace and number formatting.
Other files an export carries (CDM job definitions, …) are kept byte for byte.
Script bodies also get a plain-text *view* beside their .script file so reviewers read SQL,
not an escaped JSON string; views are derived and never restored.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from json.encoder import encode_basestring as _string  # json's own (C) string encoder
from typing import Any

JSON_SUFFIXES = (".job", ".script", ".resource", ".json")
# DataArts definitions: stored as canonical JSON. Any other file an export carries (a CDM
# job definition, …; its format is not documented) is stored and restored byte for byte.
DEFINITION_SUFFIXES = (".job", ".script", ".resource")

# Script type (as in the 'type' field of a .script) → extension of its readable view.
_VIEW_EXTENSIONS = {
    "shell": ".sh",
    "python": ".py",
    "spark python": ".py",
    "pyspark": ".py",
}
VIEW_SUFFIXES = frozenset({".sql", ".sh", ".py"})


# Integral floats below this are written as integers: 1, 1.0 and 1e0 are one JSON number, and
# servers differ in how they spell it. Beyond 2**53 a float no longer holds every integer.
_EXACT_FLOAT_LIMIT = 2.0**53


def canonical_json(data: Any) -> bytes:
    """Sorted keys, 2-space indent, UTF-8, trailing newline, one spelling per number.

    The bytes of ``json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False)`` (integral
    floats as integers), made without its pure-Python indenting encoder: a first snapshot
    writes every job and script through here, and that encoder took four times as long.
    """
    out: list[str] = []
    try:
        _emit(data, out.append, "\n")
    except TypeError:  # keys that are not strings: json's own rules (or its own error)
        text = json.dumps(_canonical_numbers(data), sort_keys=True, indent=2, ensure_ascii=False)
        return (text + "\n").encode("utf-8")
    out.append("\n")
    return "".join(out).encode("utf-8")


_int_repr = int.__repr__
_float_repr = float.__repr__


def _number(value: float) -> str:
    if math.isnan(value):  # as json.dumps spells them
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    if value.is_integer() and abs(value) < _EXACT_FLOAT_LIMIT:
        return _int_repr(int(value))
    return _float_repr(value)


def _canonical_numbers(value: Any) -> Any:
    if isinstance(value, float):
        if value.is_integer() and abs(value) < _EXACT_FLOAT_LIMIT:
            return int(value)
        return value
    if isinstance(value, dict):
        return {key: _canonical_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_canonical_numbers(item) for item in value]
    return value


def _emit(value: Any, put: Callable[[str], None], newline: str) -> None:
    """Append the canonical text of ``value`` whose first line is indented as ``newline``.

    The common types are tested by identity in the loops, the rest (subclasses, tuples)
    as json.dumps tests them.
    """
    kind = type(value)
    if kind is str:
        put(_string(value))
    elif kind is dict or isinstance(value, dict):
        if not value:
            put("{}")
            return
        inner = newline + "  "
        separator, following = "{" + inner, "," + inner
        for key in sorted(value):
            item = value[key]
            put(separator)
            separator = following
            put(_string(key))
            put(": ")
            if type(item) is str:
                put(_string(item))
            elif type(item) is int:
                put(_int_repr(item))
            else:
                _emit(item, put, inner)
        put(newline + "}")
    elif kind is list or isinstance(value, list | tuple):
        if not value:
            put("[]")
            return
        inner = newline + "  "
        separator, following = "[" + inner, "," + inner
        for item in value:
            put(separator)
            separator = following
            if type(item) is str:
                put(_string(item))
            elif type(item) is int:
                put(_int_repr(item))
            else:
                _emit(item, put, inner)
        put(newline + "]")
    elif value is None:
        put("null")
    elif value is True:
        put("true")
    elif value is False:
        put("false")
    elif isinstance(value, int):
        put(_int_repr(value))
    elif isinstance(value, float):
        put(_number(value))
    elif isinstance(value, str):
        put(_string(value))
    else:
        raise TypeError(f"Object of type {kind.__name__} is not JSON serializable")


def parse_json(content: bytes) -> Any:
    """Parse exported JSON (UTF-8, with or without BOM); raises ValueError when it is not."""
    text = content.decode("utf-8-sig")
    return json.loads(text)


def is_json_file(path: str) -> bool:
    return path.endswith(JSON_SUFFIXES)


def is_definition_file(path: str) -> bool:
    return path.endswith(DEFINITION_SUFFIXES)


def normalise_file(path: str, content: bytes) -> bytes:
    """The bytes to store for an exported file: a definition (.job, .script, .resource) as
    canonical JSON; anything else, and a definition that does not parse, as it is."""
    return normalise_parsed(path, content)[0]


def normalise_parsed(path: str, content: bytes) -> tuple[bytes, Any]:
    """``normalise_file``, and the parsed JSON it wrote (None: not a definition, or not
    parsable): a caller that needs the JSON too need not parse it again."""
    if not is_definition_file(path):
        return content, None
    try:
        data = parse_json(content)
        return canonical_json(data), data
    except ValueError:
        return content, None


def normalise_script(content: bytes) -> tuple[bytes, tuple[str, bytes] | None]:
    """``normalise_file`` for a .script, and its readable view (``script_view``).

    A script is exported again with every job that uses it (three times each, in a
    workspace of the simulator's making): the same bytes are worked out once, from a
    cache of the last ``_SCRIPT_CACHE_SIZE`` (about 3 kB each).
    """
    key = hashlib.sha1(content, usedforsecurity=False).digest()
    with _script_lock:
        known = _script_cache.get(key)
        if known is not None:
            _script_cache.move_to_end(key)
            return known
    stored, parsed = normalise_parsed(".script", content)
    result = (stored, script_view(parsed) if parsed is not None else None)
    with _script_lock:
        _script_cache[key] = result
        if len(_script_cache) > _SCRIPT_CACHE_SIZE:
            _script_cache.popitem(last=False)
    return result


_SCRIPT_CACHE_SIZE = 1024
_script_cache: OrderedDict[bytes, tuple[bytes, tuple[str, bytes] | None]] = OrderedDict()
_script_lock = threading.Lock()


def view_extension(script_type: str) -> str:
    return _VIEW_EXTENSIONS.get(script_type.strip().lower(), ".sql")


def script_view(script: Any) -> tuple[str, bytes] | None:
    """(extension, text) of the readable view of a parsed .script, or None if it has no body."""
    if not isinstance(script, dict):
        return None
    content = script.get("content")
    if not isinstance(content, str) or not content:
        return None
    script_type = script.get("type")
    extension = view_extension(script_type if isinstance(script_type, str) else "")
    if not content.endswith("\n"):
        content += "\n"
    return extension, content.encode("utf-8")
