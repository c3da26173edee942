"""Volatile field paths and the equivalence of two exports of one file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backupd.store.normalise import canonical_json
from backupd.store.tree import ChangeSet
from backupd.store.volatile import (
    FieldPath,
    VolatileRules,
    equivalent,
    json_equal,
    keep_equivalent,
    parse_field_path,
    without_fields,
)

JOB = {
    "name": "daily",
    "version": 3,
    "nodes": [
        {"name": "a", "lineageInfo": '{"in":1}', "location": {"x": "1.0"}},
        {"name": "b", "lineageInfo": "", "properties": [{"name": "p", "value": "1"}]},
    ],
    "schedule": {"cron": {"expression": "0 0 1 * * ?", "startTime": "2025-01-01T00:00:00+08"}},
    "params": [],
}


def paths(*texts: str) -> list[FieldPath]:
    return [parse_field_path(t) for t in texts]


@pytest.mark.parametrize(
    ("text", "steps"),
    [
        ("version", ("version",)),
        ("nodes[].lineageInfo", ("nodes", None, "lineageInfo")),
        ("schedule.cron.startTime", ("schedule", "cron", "startTime")),
        ("a[][].b", ("a", None, None, "b")),
        ("作业.名", ("作业", "名")),
    ],
)
def test_field_paths_parse(text: str, steps: tuple[str | None, ...]) -> None:
    assert parse_field_path(text).steps == steps


@pytest.mark.parametrize("text", ["", " version", "a..b", "nodes[]", "[].a", "a[.b", "a b", "a[]x"])
def test_bad_field_paths_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        parse_field_path(text)


def test_without_fields_leaves_out_exactly_the_named_fields_and_copies() -> None:
    stripped = without_fields(JOB, paths("version", "nodes[].lineageInfo", "schedule.cron.x"))
    assert "version" not in stripped
    assert all("lineageInfo" not in node for node in stripped["nodes"])
    assert stripped["nodes"][0]["location"] == {"x": "1.0"}
    assert stripped["schedule"] == JOB["schedule"]
    assert JOB["version"] == 3 and "lineageInfo" in JOB["nodes"][0]  # input untouched


def test_paths_that_do_not_fit_the_document_are_ignored() -> None:
    odd = {"nodes": {"lineageInfo": 1}, "version": [1]}
    assert without_fields(odd, paths("nodes[].lineageInfo", "version.x")) == odd


def test_numbers_compare_by_value_but_booleans_are_not_numbers() -> None:
    assert json_equal({"a": [1, 2.5]}, {"a": [1.0, 2.50]})
    assert json_equal(json.loads("1e0"), json.loads("1"))
    assert json_equal(json.loads("100"), json.loads("1E2"))
    assert not json_equal(True, 1)
    assert not json_equal(0, False)
    assert not json_equal("1", 1)
    assert not json_equal(None, 0)
    assert not json_equal([1, 2], [2, 1])


def test_equivalent_ignores_order_whitespace_number_spelling_and_volatile_fields() -> None:
    old = canonical_json(JOB)
    noisy = dict(reversed(list(JOB.items())))
    noisy["version"] = 4
    noisy["nodes"] = [{**n, "lineageInfo": "regenerated"} for n in JOB["nodes"]]
    text = json.dumps(noisy, indent=7).replace('"version": 4', '"version": 4.0e0')
    assert not equivalent(old, text.encode())
    assert equivalent(old, text.encode(), paths("version", "nodes[].lineageInfo"))
    edited = {**JOB, "schedule": {"cron": {**JOB["schedule"]["cron"], "expression": "x"}}}
    assert not equivalent(old, canonical_json(edited), paths("version", "nodes[].lineageInfo"))


def test_unparsable_files_are_equivalent_only_when_identical() -> None:
    assert equivalent(b"{broken", b"{broken")
    assert not equivalent(b"{broken", b"{broken ")


def test_keep_equivalent_keeps_noise_and_the_view_of_a_kept_script(tmp_path: Path) -> None:
    staged, current = tmp_path / "staged", tmp_path / "current"
    files = {
        "jobs/j/j.job": (canonical_json({"name": "j", "version": 1}), b'{"version":2,"name":"j"}'),
        "jobs/k/k.job": (canonical_json({"name": "k"}), canonical_json({"name": "k2"})),
        "jobs/j/s.script": (canonical_json({"content": "A", "v": 1}), b'{"content":"A","v":2}'),
        "jobs/j/s.sql": (b"A\n", b"B\n"),  # only possible if 'content' were volatile
        "jobs/j/notes.txt": (b"a", b"b"),
    }
    for path, (old, new) in files.items():
        for root, data in ((current, old), (staged, new)):
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            (root / path).write_bytes(data)
    changes = ChangeSet(modified=tuple(sorted(files)), unchanged_count=5)
    rules = VolatileRules.from_texts({".job": ["version"], ".script": ["v"]})

    settled = keep_equivalent(changes, staged, current, rules)

    assert settled.modified == ("jobs/j/notes.txt", "jobs/k/k.job")
    assert settled.unchanged_count == 8


def test_canonical_json_spells_each_number_one_way() -> None:
    spellings = ['{"n": 60}', '{"n": 60.0}', '{"n": 6e1}', '{"n": 6.0E+1}']
    assert len({canonical_json(json.loads(text)) for text in spellings}) == 1
    assert canonical_json(json.loads('{"n": 60}')) == b'{\n  "n": 60\n}\n'
    assert canonical_json({"f": 0.10, "g": 1.5e-7, "big": 1e300, "t": True}) == (
        b'{\n  "big": 1e+300,\n  "f": 0.1,\n  "g": 1.5e-07,\n  "t": true\n}\n'
    )
