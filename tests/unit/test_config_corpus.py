"""A corpus of broken config files: `backupd snapshot` and `backupd run` each stop at exit 78
with exactly one line on stderr naming the key or the line, and start nothing.

78 is what systemd's RestartPreventExitStatus= knows as "bad configuration": the service
stops instead of being restarted every 30 s. The CLI runs in-process here (fast); the real
process and its exit code are in tests/e2e/test_cli_strict_config.py.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import backupd.commands.snapshot
import backupd.service.daemon
from backupd.cli import main
from backupd.errors import EXIT_CONFIG

# 12 lines; the expected line numbers below count on them.
GOOD = """\
repository:
  path: repo
sources:
  - name: prod
    region: cn-north-4
    project_id: 0123456789abcdef0123456789abcdef
    auth:
      type: token
      token: t0ken
    workspaces:
      - id: fedcba9876543210fedcba9876543210
        name: sales
"""


def swap(old: str, new: str) -> str:
    assert GOOD.count(old) == 1, old
    return GOOD.replace(old, new)


def laughs() -> str:
    lines = ["l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 10)]
    return "\n".join(lines) + "\n"


def merge_bomb() -> str:
    lines = ["m0: &m0 {a: 1}"]
    lines += [f"m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}]}}" for i in range(1, 64)]
    return "\n".join(lines) + "\n"


# (id, file content, what the one line must say)
CORPUS: list[tuple[str, str | bytes, str]] = [
    # --- a key given twice, at every depth ----------------------------------------------------
    (
        "second-repository",
        GOOD + "repository:\n  path: /srv/elsewhere\n",
        "duplicate key 'repository' at line 13 (first at line 1)",
    ),
    (
        "second-sources",
        GOOD + "sources: []\n",
        "duplicate key 'sources' at line 13 (first at line 3)",
    ),
    (
        "quoted-and-plain-key",
        GOOD + '"repository": {path: x}\n',
        "duplicate key 'repository' at line 13 (first at line 1)",
    ),
    (
        "depth-2",
        swap("  path: repo\n", "  path: repo\n  path: /srv/elsewhere\n"),
        "duplicate key 'path' at line 3 (first at line 2)",
    ),
    (
        "depth-3",
        swap("    region: cn-north-4\n", "    region: cn-north-4\n    region: eu-west-0\n"),
        "duplicate key 'region' at line 6 (first at line 5)",
    ),
    (
        "two-workspaces-lists",
        swap(
            "    workspaces:\n",
            "    workspaces:\n      - id: 11111111111111111111111111111111\n    workspaces:\n",
        ),
        "duplicate key 'workspaces' at line 12 (first at line 10)",
    ),
    (
        "depth-4",
        swap("      token: t0ken\n", "      token: t0ken\n      token: other\n"),
        "duplicate key 'token' at line 10 (first at line 9)",
    ),
    (
        "depth-5",
        GOOD + "        name: again\n",
        "duplicate key 'name' at line 13 (first at line 12)",
    ),
    (
        "flow-mapping",
        GOOD + 'schedule: {cron: "0 * * * *", cron: "5 * * * *"}\n',
        "duplicate key 'cron' at line 13 (first at line 13)",
    ),
    (
        "authors-table",
        GOOD + "history:\n  authors:\n    li.wei: {name: Li}\n    li.wei: {name: Wei}\n",
        "duplicate key 'li.wei' at line 16 (first at line 15)",
    ),
    # --- bytes and characters -------------------------------------------------------------
    (
        "latin-1-value",
        swap("name: sales", "name: sal\udce9s").encode("utf-8", "surrogateescape"),
        "not UTF-8: byte 0xe9 at line 12, column 18",
    ),
    (
        "latin-1-comment",
        ("# caf\udce9\n" + GOOD).encode("utf-8", "surrogateescape"),
        "not UTF-8: byte 0xe9 at line 1, column 6",
    ),
    ("utf-16", GOOD.encode("utf-16"), "not UTF-8: byte 0xff at line 1, column 1"),
    (
        "nul-in-value",
        swap("t0ken", "t0\x00ken"),
        "character U+0000 (NUL) is not allowed, at line 9, column 16",
    ),
    ("nul-at-end", GOOD + "\x00", "character U+0000 (NUL) is not allowed, at line 13, column 1"),
    (
        "escape-sequence",
        swap("name: sales", "name: \x1b[1msales"),
        "character U+001B (ESC) is not allowed, at line 12, column 15",
    ),
    (
        "del",
        swap("cn-north-4", "cn-north-4\x7f"),
        "character U+007F (DEL) is not allowed, at line 5, column 23",
    ),
    ("c1-control", swap("t0ken", "t0\u0080ken"), "character U+0080 is not allowed, at line 9"),
    ("form-feed", GOOD + "\x0c\n", "character U+000C is not allowed, at line 13, column 1"),
    # --- ${NAME} ------------------------------------------------------------------------------
    (
        "unclosed-reference",
        swap("t0ken", "${DLF_TOKEN"),
        "config: sources[0].auth.token: '${' at character 1 is not closed",
    ),
    (
        "unclosed-reference-mid-string",
        swap("cn-north-4", "cn-${REGION"),
        "config: sources[0].region: '${' at character 4 is not closed",
    ),
    (
        "shell-default-syntax",
        swap("t0ken", "${DLF_TOKEN:-x}"),
        "config: sources[0].auth.token: '${' at character 1 is not followed by a name",
    ),
    (
        "unset-variable",
        swap("t0ken", "${BACKUPD_CORPUS_UNSET}"),
        "config: sources[0].auth.token: environment variable BACKUPD_CORPUS_UNSET is not set",
    ),
    # --- YAML syntax --------------------------------------------------------------------------
    (
        "tab-indent",
        swap("  path: repo", "\tpath: repo"),
        "found character '\\t' that cannot start any token (indent with spaces, not tabs) at "
        "line 2, column 1",
    ),
    (
        "unclosed-flow-list",
        GOOD + "alerts: {command: [x}\n",
        "while parsing a flow sequence, expected ',' or ']', but got '}' at line 13, column 21",
    ),
    (
        "bad-indentation",
        swap("    region:", "   region:"),
        "expected <block end>, but found '<block mapping start>' at line 5, column 4",
    ),
    (
        "two-documents",
        GOOD + "---\n" + GOOD,
        "expected a single document in the stream, but found another document at line 13",
    ),
    ("undefined-alias", GOOD + "schedule: *nothing\n", "undefined alias 'nothing' at line 13"),
    (
        "python-tag",
        GOOD + "daemon: !!python/object/apply:os.system [id]\n",
        "could not determine a constructor for the tag "
        "'tag:yaml.org,2002:python/object/apply:os.system' at line 13, column 9",
    ),
    (
        "custom-tag",
        swap("t0ken", "!vault abc"),
        "could not determine a constructor for the tag '!vault' at line 9, column 14",
    ),
    (
        "mapping-as-key",
        GOOD + "? {a: 1}\n: x\n",
        "while constructing a mapping, found unhashable key at line 13, column 3",
    ),
    ("bad-base64", GOOD + "x: !!binary 'a'\n", "failed to decode base64 data"),
    # --- shape and size -----------------------------------------------------------------------
    (
        "top-level-list",
        "- repository: {path: repo}\n",
        "the top level must be a mapping (key: value), got a list at line 1",
    ),
    (
        "top-level-text",
        "\nrepository\n",
        "the top level must be a mapping (key: value), got a single value at line 2",
    ),
    ("empty-file", "", "the file is empty (it must hold a mapping)"),
    ("only-comments", "# backupd\n\n# nothing yet\n", "the file is empty (it must hold a mapping)"),
    (
        "three-megabytes",
        GOOD + "#" + "x" * 3 * 2**20 + "\n",
        "larger than 1 MiB: not a config file",
    ),
    (
        "deeply-nested-lists",
        GOOD + "alerts: {command: " + "[" * 10_000 + "]" * 10_000 + "}\n",
        "nested more than 50 levels deep at line 13",
    ),
    (
        "deeply-nested-mappings",
        "repository: " + "{a: " * 10_000 + "}" * 10_000 + "\n",
        "nested more than 50 levels deep at line 1",
    ),
    (
        "billion-laughs",
        GOOD + laughs(),
        "the aliases in the value at line 18 stand for more than 100000 values",
    ),
    (
        "merge-key-bomb",
        GOOD + merge_bomb(),
        "the aliases in the value at line 28 stand for more than 100000 values",
    ),
    (
        "alias-inside-its-anchor",
        GOOD + "alerts: &a {command: [*a]}\n",
        "an alias refers to the value holding it (anchored at line 13)",
    ),
    (
        "integer-of-5000-digits",
        GOOD + "daemon: {max_parallel: " + "9" * 5000 + "}\n",
        "cannot read this integer: too many digits at line 13, column 24",
    ),
    (
        "impossible-date",
        swap("name: sales", "name: 2026-13-45"),
        "cannot read this date: month must be in 1..12 at line 12, column 15",
    ),
    # --- keys and values ----------------------------------------------------------------------
    ("unknown-top-level-key", GOOD + "colour: blue\n", "config: colour: unknown key"),
    (
        "unknown-nested-key",
        GOOD + "        colour: blue\n",
        "config: sources[0].workspaces[0].colour: unknown key",
    ),
    (
        "missing-required-key",
        swap("    project_id: 0123456789abcdef0123456789abcdef\n", ""),
        "config: sources[0].project_id: is required",
    ),
    (
        "string-for-integer",
        swap("    region: cn-north-4\n", "    region: cn-north-4\n    batch_size: ten\n"),
        "config: sources[0].batch_size: must be an integer, got 'ten'",
    ),
    (
        "mapping-for-list",
        "repository: {path: repo}\nsources: {name: prod}\n",
        "config: sources: must be a list, got dict",
    ),
    ("list-for-mapping", GOOD + "daemon: [1, 2]\n", "config: daemon: must be a mapping, got list"),
    (
        "list-for-auth-type",
        swap("type: token", "type: [token]"),
        "config: sources[0].auth.type: must be one of 'aksk', 'password', 'token', got ['token']",
    ),
    (
        "no-sources",
        swap("sources:\n  - name", "nothing:\n  - name"),
        "config: nothing: unknown key",
    ),
    ("infinite-interval", GOOD + "schedule: {interval: .inf}\n", "schedule.interval: must be a"),
    (
        "nul-in-a-quoted-path",
        swap("path: repo", 'path: "re\\0po"'),
        "config: repository.path: must not contain a NUL character",
    ),
    (
        "unknown-user-home",
        swap("path: repo", "path: ~no-such-user-here/repo"),
        "config: repository.path: cannot expand '~': unknown user or no home folder",
    ),
    (
        "line-break-in-a-quoted-path",
        swap("    region:", '    ca_bundle: "ca\\nbundle.pem"\n    region:'),
        "bundle.pem is not a readable file",
    ),
    (
        "huge-wrong-value",
        swap(
            "    region: cn-north-4\n", f"    region: cn-north-4\n    batch_size: {'x' * 200_000}\n"
        ),
        "config: sources[0].batch_size: must be an integer, got 'xxxx",
    ),
    (
        "non-ascii-port",
        GOOD + "metrics: {listen: '127.0.0.1:\u0669\u0664'}\n",
        "config: metrics.listen: must be host:port",
    ),
]


@pytest.fixture(autouse=True)
def _keep_logging() -> Iterator[None]:
    """main() points the root logger at the captured stderr; put it back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.fixture
def started(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """What `snapshot` and `run` would have started; stays empty for a bad config."""
    calls: list[str] = []

    def snapshot(*_args: Any, **_kwargs: Any) -> SimpleNamespace:
        calls.append("snapshot")
        return SimpleNamespace(results=[], push=None)

    def daemon(*_args: Any, **_kwargs: Any) -> int:
        calls.append("daemon")
        return 0

    monkeypatch.setattr(backupd.commands.snapshot, "run", snapshot)
    monkeypatch.setattr(backupd.service.daemon, "run_daemon", daemon)
    monkeypatch.delenv("BACKUPD_CORPUS_UNSET", raising=False)
    return calls


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_the_corpus_is_broad() -> None:
    assert len(CORPUS) >= 40
    assert len({name for name, _, _ in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("command", ["snapshot", "run"])
def test_the_good_config_reaches_the_command(
    command: str, tmp_path: Path, started: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """The control: without the mistake, the same file gets past loading."""
    config = tmp_path / "config.yaml"
    config.write_text(GOOD)
    config.chmod(0o600)  # else the inline token is warned about, on stderr
    code, _, err = run_cli(capsys, command, "-c", str(config))
    assert (code, err) == (0, "")
    assert started == ["snapshot" if command == "snapshot" else "daemon"]


@pytest.mark.parametrize("command", ["snapshot", "run"])
@pytest.mark.parametrize(("content", "says"), [c[1:] for c in CORPUS], ids=[c[0] for c in CORPUS])
def test_a_broken_config_is_one_line_and_exit_78(
    command: str,
    content: str | bytes,
    says: str,
    tmp_path: Path,
    started: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = tmp_path / "config.yaml"
    config.write_bytes(content.encode() if isinstance(content, str) else content)

    code, out, err = run_cli(capsys, command, "-c", str(config))

    assert code == EXIT_CONFIG, err
    assert err.endswith("\n")
    lines = err.splitlines()
    assert len(lines) == 1, err[:2000]
    assert lines[0].startswith("backupd: config: ")
    assert says in lines[0]
    assert len(lines[0]) < 1000
    assert "Traceback" not in err and "internal error" not in err and "please report" not in err
    assert out == ""
    assert started == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.yaml"]  # no repo, no state


@pytest.mark.parametrize("command", ["snapshot", "run"])
@pytest.mark.parametrize("where", ["missing.yaml", "."])
def test_a_config_path_that_cannot_be_read_is_exit_78(
    command: str,
    where: str,
    tmp_path: Path,
    started: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run_cli(capsys, command, "-c", str(tmp_path / where))
    assert code == EXIT_CONFIG
    assert len(err.splitlines()) == 1
    assert f"cannot read {tmp_path / where}: " in err
    assert started == []
