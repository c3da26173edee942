"""Strict reading of a config file's YAML: every problem is one ConfigError with its line.

PyYAML's ``safe_load`` alone lets a file through that says something else than it seems to:
a second ``repository:`` silently wins over the first, and it fails in ways that are not
config errors (a ``UnicodeDecodeError``, a ``RecursionError`` on deep nesting, a
``ValueError`` for the date ``2020-13-45``). Here the file must be UTF-8 without control
characters, hold one document that is a mapping, use each key once per mapping, and stay
within limits of size, depth and expanded aliases, so that no file can hang the loader or
eat the memory ("billion laughs", exponential merge keys).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError
from yaml.error import Mark, MarkedYAMLError
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from backupd.errors import ConfigError

MAX_BYTES = 1024 * 1024  # a config of thousands of workspaces is a few hundred KB
MAX_DEPTH = 50  # a valid config nests 7 levels; PyYAML's composer recurses per level
MAX_NODES = 100_000  # values in the document, with every alias counted as what it stands for

_MERGE_TAG = "tag:yaml.org,2002:merge"
# What YAML (and PyYAML's reader) accepts: tab, line breaks and printable characters.
_DISALLOWED = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_LINE_BREAK = re.compile("\r\n|[\n\r\x85\u2028\u2029]")
_NAMES = {0: "NUL", 0x1B: "ESC", 0x7F: "DEL"}


class _Limit(MarkedYAMLError):
    """A document beyond MAX_DEPTH or MAX_NODES (raised while composing, so it stops early)."""

    def __init__(self, problem: str, mark: Mark | None) -> None:
        super().__init__(problem=problem, problem_mark=mark)


class _DuplicateKey(MarkedYAMLError):
    def __init__(self, key: Any, first: Mark, again: Mark) -> None:
        super().__init__(problem=f"duplicate key {_short(repr(key))}", problem_mark=again)
        self.first = first


class StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and documents nested or expanding too far.

    Duplicates are looked for as each mapping is composed from the parser's events, not in
    ``construct_mapping``: by then PyYAML's merge keys (``<<: *base``) have copied the merged
    keys into the mapping nodes, in place, and a key that overrides a merged one would look
    like a duplicate. Keys are compared as values, so ``"sources"`` and ``sources`` are the
    same key, as are ``yes`` and ``true``.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(AliasEvent):
            return super().compose_node(parent, index)
        mark: Mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise _Limit(f"more than {MAX_NODES} values", mark)
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Limit(f"nested more than {MAX_DEPTH} levels deep", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_mapping_node(self, anchor: Any) -> MappingNode:
        node = super().compose_mapping_node(anchor)
        seen: dict[Any, Mark] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, ScalarNode):
                continue  # a list or mapping as a key: construction refuses it (unhashable)
            key = "<<" if key_node.tag == _MERGE_TAG else self.construct_object(key_node)
            try:
                first = seen.get(key)
            except TypeError:  # unhashable; construction says so with its line
                continue
            if first is not None:
                raise _DuplicateKey(key, first, key_node.start_mark)
            seen[key] = key_node.start_mark
        return node

    def construct_object(self, node: Any, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep)
        except (ValueError, OverflowError) as error:
            # A scalar that resolves to a type its constructor then cannot build: the date
            # 2020-13-45, an integer beyond Python's 4300 digits, a time zone offset of 99 h.
            kind = str(node.tag).rpartition(":")[2]
            kind = {"int": "integer", "timestamp": "date", "float": "number"}.get(kind, kind)
            problem = "too many digits" if kind == "integer" else str(error)
            raise ConstructorError(
                None, None, f"cannot read this {kind}: {problem}", node.start_mark
            ) from None


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _line_and_column(text: str, index: int) -> tuple[int, int]:
    """1-based line and column of ``text[index]``, counting lines as YAML does."""
    line = 1
    start = 0
    for match in _LINE_BREAK.finditer(text, 0, index):
        line += 1
        start = match.end()
    return line, index - start + 1


def _read(path: Path) -> bytes:
    try:
        with path.open("rb") as file:
            data = file.read(MAX_BYTES + 1)
    except OSError as error:
        raise ConfigError("", f"cannot read {path}: {error.strerror or error}") from None
    if len(data) > MAX_BYTES:
        raise ConfigError("", f"{path}: larger than {MAX_BYTES // 2**20} MiB: not a config file")
    return data


def _decode(path: Path, data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        before = data[: error.start].decode("utf-8")  # valid up to the first bad byte
        line, column = _line_and_column(before, len(before))
        byte = data[error.start]
        raise ConfigError(
            "",
            f"{path}: not UTF-8: byte 0x{byte:02x} at line {line}, column {column} "
            "(save the file as UTF-8)",
        ) from None
    bad = _DISALLOWED.search(text)
    if bad is not None:
        line, column = _line_and_column(text, bad.start())
        code = ord(bad.group())
        name = f" ({_NAMES[code]})" if code in _NAMES else ""
        raise ConfigError(
            "",
            f"{path}: character U+{code:04X}{name} is not allowed, at line {line}, column {column}",
        )
    return text


def _yaml_problem(path: Path, error: yaml.YAMLError) -> ConfigError:
    if isinstance(error, _DuplicateKey):
        line = error.problem_mark.line + 1 if error.problem_mark else 0
        first = error.first.line + 1
        return ConfigError("", f"{path}: {error.problem} at line {line} (first at line {first})")
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(error, "problem", None) or "invalid YAML"
    if "'\\t'" in problem:
        problem += " (indent with spaces, not tabs)"
    context = getattr(error, "context", None)  # "while parsing a block mapping", ...
    if context:
        problem = f"{context}, {problem}"
    return ConfigError("", f"{path}: {' '.join(problem.split())}{where}")


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_expansion(path: Path, root: Node) -> None:
    """Refuse a document whose aliases stand for more than MAX_NODES values, or for a node
    holding the alias itself (a cycle): walking or merging either would never end.

    Each node is measured once (a dict of sizes by node), so a "billion laughs" document is
    measured in the time it takes to read it, not the time it would take to expand it.
    """
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()  # nodes whose children are still being measured: a path
    stack: list[tuple[Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if children_done:
            open_nodes.discard(id(node))
            size = 1 + sum(sizes[id(child)] for child in _children(node))
            if size > MAX_NODES:
                line = node.start_mark.line + 1
                raise ConfigError(
                    "",
                    f"{path}: the aliases in the value at line {line} stand for more than "
                    f"{MAX_NODES} values",
                )
            sizes[id(node)] = size
            continue
        if id(node) in sizes:
            continue
        open_nodes.add(id(node))
        stack.append((node, True))
        for child in _children(node):
            if id(child) in open_nodes:
                line = child.start_mark.line + 1
                raise ConfigError(
                    "", f"{path}: an alias refers to the value holding it (anchored at line {line})"
                )
            if id(child) not in sizes:
                stack.append((child, False))


def read_yaml(path: Path) -> dict[Any, Any]:
    """The mapping in the YAML file ``path``; every problem is a ConfigError naming the line."""
    text = _decode(path, _read(path))
    loader = StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            raise ConfigError("", f"{path}: the file is empty (it must hold a mapping)")
        if not isinstance(node, MappingNode):
            kind = "a list" if isinstance(node, SequenceNode) else "a single value"
            line = node.start_mark.line + 1
            problem = f"the top level must be a mapping (key: value), got {kind} at line {line}"
            raise ConfigError("", f"{path}: {problem}")
        _check_expansion(path, node)
        data = loader.construct_document(node)
    except yaml.YAMLError as error:
        raise _yaml_problem(path, error) from None
    except RecursionError:  # MAX_DEPTH stops this first; kept so that it can never escape
        raise ConfigError("", f"{path}: nested too deeply") from None
    finally:
        loader.dispose()
    if not isinstance(data, dict):  # a mapping node with a tag such as !!set
        raise ConfigError("", f"{path}: the top level must be a mapping (key: value)")
    return data
