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

import json
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
    """Sorted keys, 2-space indent, UTF-8, trailing newline, one spelling per number."""
    text = json.dumps(_canonical_numbers(data), sort_keys=True, indent=2, ensure_ascii=False)
    return (text + "\n").encode("utf-8")


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
    if not is_definition_file(path):
        return content
    try:
        return canonical_json(parse_json(content))
    except ValueError:
        return content


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
