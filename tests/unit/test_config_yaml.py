"""The strict YAML reader of config files: what it refuses, with which line, and what it
still accepts (merge keys, moderate aliases, a BOM, CRLF line ends)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import backupd.config_yaml
from backupd.config_yaml import read_yaml
from backupd.errors import ConfigError


def read(tmp_path: Path, content: str | bytes) -> dict[object, object]:
    path = tmp_path / "config.yaml"
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return read_yaml(path)


def refused(tmp_path: Path, content: str | bytes) -> str:
    with pytest.raises(ConfigError) as caught:
        read(tmp_path, content)
    message = str(caught.value)
    assert "\n" not in message
    return message.removeprefix(f"config: {tmp_path / 'config.yaml'}: ")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("a: 1\nb: 2\na: 3\n", "duplicate key 'a' at line 3 (first at line 1)"),
        ("a:\n  b: 1\n  c: 2\n  b: 3\n", "duplicate key 'b' at line 4 (first at line 2)"),
        ("a:\n  - b:\n      c: 1\n      c: 1\n", "duplicate key 'c' at line 4 (first at line 3)"),
        ("a: {x: 1, y: 2, x: 3}\n", "duplicate key 'x' at line 1 (first at line 1)"),
        ('"a": 1\na: 2\n', "duplicate key 'a' at line 2 (first at line 1)"),
        ("x:\n  yes: 1\n  true: 2\n", "duplicate key True at line 3 (first at line 2)"),
        ("x:\n  0x10: 1\n  16: 2\n", "duplicate key 16 at line 3 (first at line 2)"),
        ("x:\n  &k a: 1\n  b: 2\n  *k : 3\n", "duplicate key 'a' at line 2 (first at line 2)"),
        (
            "b: &b {k: 1}\nx:\n  <<: *b\n  <<: *b\n",
            "duplicate key '<<' at line 4 (first at line 3)",
        ),
    ],
)
def test_a_key_given_twice_is_named_with_both_lines(
    tmp_path: Path, content: str, message: str
) -> None:
    assert refused(tmp_path, content) == message


def test_keys_that_only_look_alike_are_different_keys(tmp_path: Path) -> None:
    assert read(tmp_path, "x:\n  1: a\n  '1': b\n  A: c\n  a: d\n")["x"] == {
        1: "a",
        "1": "b",
        "A": "c",
        "a": "d",
    }


def test_a_key_overriding_a_merged_one_is_not_a_duplicate(tmp_path: Path) -> None:
    # PyYAML copies merged keys into the mapping's node in place; a check in
    # construct_mapping would see 'k' twice in y once b has been merged.
    content = "base: &base {k: 0, j: 0}\nx:\n  y: &y\n    <<: *base\n    k: 1\n"
    content += "b:\n  <<: *y\n  j: 2\n"
    assert read(tmp_path, content) == yaml.safe_load(content)  # whatever PyYAML makes of it


def test_an_anchored_block_can_be_shared(tmp_path: Path) -> None:
    content = (
        "auth: &auth {type: aksk, ak: AK, sk_file: /etc/backupd/sk}\n"
        "sources:\n  - {name: a, auth: *auth}\n  - {name: b, auth: *auth}\n"
    )
    sources = read(tmp_path, content)["sources"]
    assert isinstance(sources, list)
    assert [s["auth"]["ak"] for s in sources] == ["AK", "AK"]


def test_a_bom_and_crlf_line_ends_are_fine_and_lines_still_count_right(tmp_path: Path) -> None:
    assert read(tmp_path, "\ufeffa: 1\r\nb: 2\r\n") == {"a": 1, "b": 2}
    assert refused(tmp_path, "a: 1\r\nb: 2\r\na: 3\r\n").startswith("duplicate key 'a' at line 3")
    assert refused(tmp_path, "a: 1\r\nb: 2\r\nc: x\x00\r\n").endswith("at line 3, column 5")
    assert refused(tmp_path, b"a: 1\rb: 2\rc: \xe9\r").startswith("not UTF-8: byte 0xe9 at line 3,")
    assert refused(tmp_path, "a: 1\rb: 2\ra: 3\r").startswith("duplicate key 'a' at line 3")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"a: 1\nb: caf\xe9\n", "not UTF-8: byte 0xe9 at line 2, column 7"),
        (b"# \xc3\xa9t\xc3\xa9\nb: \xc3\xa9\xff\n", "not UTF-8: byte 0xff at line 2, column 5"),
        ("a: 1\nb: 2".encode("utf-16"), "not UTF-8: byte 0xff at line 1, column 1"),
        (b"a: 1\nb: x\x00y\n", "character U+0000 (NUL) is not allowed, at line 2, column 5"),
        (b"a: \x1b[31m\n", "character U+001B (ESC) is not allowed, at line 1, column 4"),
        (b"a: 1\x7f\n", "character U+007F (DEL) is not allowed, at line 1, column 5"),
        (b"a: 1\n\x0c\n", "character U+000C is not allowed, at line 2, column 1"),
        ("a: \u0080\n".encode(), "character U+0080 is not allowed, at line 1, column 4"),
        ("a: \uffff\n".encode(), "character U+FFFF is not allowed, at line 1, column 4"),
    ],
)
def test_bytes_that_are_not_utf8_text_are_located(
    tmp_path: Path, content: bytes, message: str
) -> None:
    assert refused(tmp_path, content).startswith(message)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "the file is empty (it must hold a mapping)"),
        ("# only a comment\n", "the file is empty (it must hold a mapping)"),
        ("- a\n- b\n", "the top level must be a mapping (key: value), got a list at line 1"),
        ("\n\njust text\n", "the top level must be a mapping (key: value), got a single value at"),
        ("!!set {a, b}\n", "the top level must be a mapping (key: value)"),
        ("a: 1\n---\nb: 2\n", "expected a single document in the stream, but found another"),
        ("a:\n\tb: 1\n", "while scanning for the next token, found character '\\t' that"),
        ("a: [1, 2\n", "while parsing a flow sequence, expected ',' or ']', but got"),
        ("a: *nowhere\n", "found undefined alias 'nowhere' at line 1, column 4"),
        ("a: !!python/name:os.system\n", "could not determine a constructor for the tag"),
        ("a: !vault abc\n", "could not determine a constructor for the tag '!vault'"),
        ("? [1]\n: 2\n", "while constructing a mapping, found unhashable key at line 1"),
        ("a: 2026-13-45\n", "cannot read this date: month must be in 1..12 at line 1, column 4"),
        ("a: " + "9" * 5000 + "\n", "cannot read this integer: too many digits at line 1"),
        ("a: !!binary 'a'\n", "failed to decode base64 data"),
    ],
)
def test_documents_that_are_not_one_mapping_are_refused_with_their_line(
    tmp_path: Path, content: str, message: str
) -> None:
    assert refused(tmp_path, content).startswith(message)


def test_a_huge_file_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    limit = backupd.config_yaml.MAX_BYTES
    assert refused(tmp_path, b"a: " + b"x" * (3 * limit)) == "larger than 1 MiB: not a config file"
    assert read(tmp_path, b"a: " + b"x" * (limit - 4) + b"\n")["a"] == "x" * (limit - 4)


@pytest.mark.parametrize(("start", "opening"), [("a: ", "["), ("a: ", "{a: "), ("a:\n", "- ")])
def test_deep_nesting_stops_at_the_depth_limit_not_in_a_recursion_error(
    tmp_path: Path, start: str, opening: str
) -> None:
    message = refused(tmp_path, start + opening * 100_000)
    assert message.startswith("nested more than 50 levels deep at line")


def test_nesting_up_to_the_limit_is_fine(tmp_path: Path) -> None:
    lists = backupd.config_yaml.MAX_DEPTH - 1  # the top-level mapping is the first level
    node = read(tmp_path, "a: " + "[" * lists + "]" * lists + "\n")["a"]
    levels = 0
    while isinstance(node, list):
        levels += 1
        node = node[0] if node else None
    assert levels == lists
    deeper = "a: " + "[" * (lists + 1) + "]" * (lists + 1) + "\n"
    assert refused(tmp_path, deeper).startswith("nested more than 50 levels deep at line 1")


def test_billion_laughs_is_refused_while_counting_not_expanding(tmp_path: Path) -> None:
    # PyYAML itself shares the aliased lists, but every walk of the result (validation)
    # expands them: 9 ** 9 values.
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    message = refused(tmp_path, "\n".join(lines) + "\n")
    assert message == "the aliases in the value at line 6 stand for more than 100000 values"


def test_merge_key_bombs_are_refused_before_pyyaml_merges_them(tmp_path: Path) -> None:
    # PyYAML's flatten_mapping really copies: 2 ** 40 keys would never finish.
    lines = ["m0: &m0 {a: 1}"]
    lines += [f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}]}}" for i in range(1, 41)]
    assert "stand for more than 100000 values" in refused(tmp_path, "\n".join(lines))


def test_an_alias_inside_its_own_anchor_is_refused(tmp_path: Path) -> None:
    message = refused(tmp_path, "a: 1\nb: &loop\n  c: [*loop]\n")
    assert message == "an alias refers to the value holding it (anchored at line 2)"


def test_too_many_values_stop_composing_early(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(backupd.config_yaml, "MAX_NODES", 50)
    assert read(tmp_path, "a: [" + ", ".join(["1"] * 40) + "]\n")
    message = refused(tmp_path, "a: [" + ", ".join(["1"] * 60) + "]\n")
    assert message.startswith("more than 50 values at line 1")


def test_unreadable_paths_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read .*: No such file"):
        read_yaml(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match=r"cannot read .*: Is a directory"):
        read_yaml(tmp_path)
