"""Pure parts of the store: canonical JSON, script views, change summaries, commit messages."""

from __future__ import annotations

import json
import math
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from backupd.store.normalise import canonical_json, normalise_file, normalise_script, script_view
from backupd.store.summary import PathNames, commit_message, summarise
from backupd.store.tree import ChangeSet


def test_canonical_json_is_stable_whatever_the_servers_formatting() -> None:
    compact = b'{"b":1,"a":{"y":[1,2],"x":"\\u4f5c\\u4e1a"}}'
    pretty = json.dumps({"a": {"x": "作业", "y": [1, 2]}, "b": 1}, indent=4).encode()
    assert normalise_file("jobs/j/j.job", compact) == normalise_file("jobs/j/j.job", pretty)
    assert normalise_file("jobs/j/j.job", compact).decode() == (
        '{\n  "a": {\n    "x": "作业",\n    "y": [\n      1,\n      2\n    ]\n  },\n  "b": 1\n}\n'
    )


def test_normalising_keeps_every_value() -> None:
    data = {"name": "j", "nodes": [{"n": 1.5, "big": 2**63, "none": None, "t": True}]}
    assert json.loads(canonical_json(data)) == data


def _as_json_dumps_writes_it(value: Any) -> bytes:
    """The definition canonical_json keeps to: json.dumps, integral floats as integers."""

    def numbers(item: Any) -> Any:
        if isinstance(item, float) and item.is_integer() and abs(item) < 2.0**53:
            return int(item)
        if isinstance(item, dict):
            return {key: numbers(inner) for key, inner in item.items()}
        if isinstance(item, list):
            return [numbers(inner) for inner in item]
        return item

    text = json.dumps(numbers(value), sort_keys=True, indent=2, ensure_ascii=False)
    return (text + "\n").encode("utf-8")


_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats()  # NaN and infinities too: json.dumps writes them, so must we
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=30,
)


@given(_JSON)
def test_canonical_json_writes_what_json_dumps_writes(value: Any) -> None:
    assert canonical_json(value) == _as_json_dumps_writes_it(value)


def test_canonical_json_numbers_and_the_unusual() -> None:
    assert canonical_json([1.0, -0.0, 1e16, 2.0**53, 0.1, math.inf, -math.inf]) == (
        b"[\n  1,\n  0,\n  1e+16,\n  9007199254740992.0,\n  0.1,\n  Infinity,\n  -Infinity\n]\n"
    )
    assert (
        canonical_json({"t": (1, 2.0), "b": True})
        == b'{\n  "b": true,\n  "t": [\n    1,\n    2\n  ]\n}\n'
    )
    assert canonical_json({1: "a"}) == b'{\n  "1": "a"\n}\n'  # json's rules for other keys


def test_non_json_and_broken_json_are_kept_byte_for_byte() -> None:
    assert normalise_file("jobs/j/readme.txt", b"a  b\r\n") == b"a  b\r\n"
    assert normalise_file("jobs/j/j.job", b"{not json") == b"{not json"


def test_script_views_follow_the_script_type() -> None:
    assert script_view({"type": "HiveSQL", "content": "SELECT 1"}) == (".sql", b"SELECT 1\n")
    assert script_view({"type": "Shell", "content": "echo hi\n"}) == (".sh", b"echo hi\n")
    assert script_view({"type": "PYTHON", "content": "print(1)"}) == (".py", b"print(1)\n")
    assert script_view({"type": "DLISQL", "content": ""}) is None
    assert script_view(["not", "a", "script"]) is None


def test_summary_separates_jobs_from_scripts_and_renames_from_edits() -> None:
    changes = ChangeSet(
        added=("jobs/new/new.job", "jobs/new/s1.script", "jobs/new/s1.sql", "scripts/s9.script"),
        modified=("jobs/old/old.job", "jobs/other/s2.script", "jobs/other/s2.sql"),
        removed=("jobs/gone/gone.job", "jobs/gone/s1.script", "scripts/s8.script"),
    )
    summary = summarise(changes)
    assert summary.jobs_added == ("new",)
    assert summary.jobs_changed == ("old", "other")
    assert summary.jobs_removed == ("gone",)
    assert summary.scripts_added == ("s9",)
    assert summary.scripts_changed == ("s2",)
    assert summary.scripts_removed == ("s8",)
    message = commit_message("prod/sales", summary, users={"old": "li.wei"})
    assert message.splitlines()[0] == (
        "prod/sales: 1 added, 2 changed, 1 removed; scripts: 1 added, 1 changed, 1 removed"
    )
    assert "  ~ old (by li.wei)" in message
    assert "  - gone" in message


def test_only_metadata_changes_are_not_content_changes() -> None:
    assert not ChangeSet(modified=(".backupd/index.json",)).has_content_changes
    assert ChangeSet(modified=("jobs/a/a.job",)).has_content_changes


def test_files_other_than_definitions_are_kept_byte_for_byte() -> None:
    cdm = b'{\r\n    "jobs": [],\r\n    "b": 1\r\n}'  # a CDM job definition: CRLF, pretty
    assert normalise_file("jobs/j/orders_to_obs.json", cdm) == cdm
    assert normalise_file("jobs/j/r.resource", b'{"b":1,"a":2}') == b'{\n  "a": 2,\n  "b": 1\n}\n'


def test_summaries_name_mapped_paths_by_their_dataarts_names() -> None:
    names = PathNames(
        jobs={"CON~a3dbc4b644": "CON"},
        files={
            "jobs/CON~a3dbc4b644/PRN~5c31b1c1ed.script": "PRN",
            "scripts/tab_script~1a2b3c4d5e.script": "tab\tscript",
        },
    )
    changes = ChangeSet(
        added=(
            "jobs/CON~a3dbc4b644/CON~a3dbc4b644.job",
            "jobs/CON~a3dbc4b644/PRN~5c31b1c1ed.script",
            "scripts/tab_script~1a2b3c4d5e.script",
        ),
        modified=("jobs/plain/plain.job",),
        removed=("jobs/old.job",),  # as an older backupd stored a job exported flat
    )
    summary = summarise(changes, names)
    assert list(summary.jobs_added) == ["CON"]
    assert list(summary.jobs_changed) == ["plain"]
    assert list(summary.jobs_removed) == ["old"]
    assert list(summary.scripts_added) == ["tab\tscript"]
    message = commit_message("prod/ws", summary, users={"CON": "王\n伟"})
    assert "  + CON (by '王\\n伟')\n" in message
    assert "  + 'tab\\tscript'\n" in message


def test_a_script_exported_again_is_normalised_once_and_the_same() -> None:
    script = {"name": "s", "type": "Shell", "content": "echo 1", "n": 1.0}
    exported = json.dumps(script, indent=4).encode()
    first = normalise_script(exported)
    assert first == (normalise_file("jobs/j/s.script", exported), (".sh", b"echo 1\n"))
    assert normalise_script(bytes(exported)) is first  # worked out once
    assert normalise_script(b"{broken") == (b"{broken", None)
    assert normalise_script(b'{"name": "t", "type": "SQL"}')[1] is None  # no body: no view
