"""The name, stem and suffix of a POSIX path string, as pathlib computes them, without pathlib.

Python 3.11's pathlib interns every component of every path it parses, and the table of
interned strings never shrinks: one pass over the ~40,000 paths of a large workspace left it
2 MB bigger for the rest of the process. Snapshots look at every changed path, so they use
these string functions instead. Paths here are canonical: no empty, ``.`` or ``..`` parts.
"""

from __future__ import annotations


def name_of(path: str) -> str:
    return path.rpartition("/")[2]


def _dot(name: str) -> int:
    """Where the suffix of ``name`` starts, or -1 (a leading or trailing dot starts none)."""
    dot = name.rfind(".")
    return dot if 0 < dot < len(name) - 1 else -1


def suffix_of(path: str) -> str:
    name = name_of(path)
    dot = _dot(name)
    return name[dot:] if dot >= 0 else ""


def stem_of(path: str) -> str:
    name = name_of(path)
    dot = _dot(name)
    return name[:dot] if dot >= 0 else name


def with_suffix(path: str, suffix: str) -> str:
    """``path`` with the suffix of its name replaced by ``suffix`` (added when it has none)."""
    dot = _dot(name_of(path))
    end = len(path) - len(name_of(path)) + dot if dot >= 0 else len(path)
    return path[:end] + suffix
