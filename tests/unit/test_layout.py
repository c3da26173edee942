"""The stored layout: one job folder whatever the export's layout, file names through the
name mapping, and what an older backupd stored moved to where the mapping puts it."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from backupd.store.index import JobRecord, WorkspaceIndex
from backupd.store.layout import StoredLayout, entry_keys, file_names, read_layout, split_suffix
from backupd.store.layout_cache import read_layout_file, write_layout_file
from backupd.store.pathmap import is_component_of, portability_problems


def test_entries_in_the_jobs_folder_keep_their_path_others_their_file_name() -> None:
    assert entry_keys("j", ["jobs/j/j.job", "jobs/j/s.script", "jobs/j/sub/x.json"]) == {
        "jobs/j/j.job": "j.job",
        "jobs/j/s.script": "s.script",
        "jobs/j/sub/x.json": "sub/x.json",
    }
    assert entry_keys("j", ["jobs/j.job", "scripts/s.script", "cdm/x.json", "other/x.json"]) == {
        "jobs/j.job": "j.job",
        "scripts/s.script": "s.script",
        "cdm/x.json": "cdm/x.json",  # two files named x.json: the whole entry tells them apart
        "other/x.json": "other/x.json",
    }


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("a.script", ("a", ".script")),
        ("nul.sql.script", ("nul.sql", ".script")),
        ("trailing..job", ("trailing.", ".job")),
        ("trailing.", ("trailing.", "")),
        (".git", (".git", "")),
        ("x.a b", ("x.a b", "")),  # not a plain suffix: part of the name
    ],
)
def test_a_plain_suffix_is_kept_apart_from_the_name(name: str, parts: tuple[str, str]) -> None:
    assert split_suffix(name) == parts


def test_file_names_keep_suffixes_map_names_and_keep_the_job_file() -> None:
    keys = ["CON.job", "PRN.script", "Orders_SQL.script", "orders_sql.script", "x.json"]
    names = file_names("CON", "CON~0123456789", keys)
    assert names["CON.job"] == "CON~0123456789.job"
    assert names["PRN.script"].endswith(".script") and names["PRN.script"] != "PRN.script"
    assert names["orders_sql.script"] == "orders_sql.script"  # lowercase keeps its name
    assert is_component_of(names["Orders_SQL.script"][: -len(".script")], "Orders_SQL")
    assert names["x.json"] == "x.json"
    assert portability_problems(f"jobs/CON~0123456789/{n}" for n in names.values()) == []


def test_file_names_never_move_a_stored_name_for_a_newcomer() -> None:
    previous = {"j.job": "j.job", "Orders_SQL.script": "Orders_SQL.script"}
    names = file_names("j", "j", ["j.job", "Orders_SQL.script", "orders_sql.script"], previous)
    assert names["Orders_SQL.script"] == "Orders_SQL.script"
    assert names["orders_sql.script"] != "orders_sql.script"


def test_suffixes_that_differ_only_in_case_do_not_meet() -> None:
    names = file_names("j", "j", ["j.job", "a.sql", "a.SQL"])
    assert len({n.casefold() for n in names.values()}) == 3


def test_an_older_folder_moves_to_the_mapping_and_says_whose_each_path_is() -> None:
    paths = sorted(
        [
            "jobs/CON/CON.job",
            "jobs/CON/aux.script",
            "jobs/CON/aux.sql",
            "jobs/plain/plain.job",
            "jobs/flat.job",  # the documented layout, stored as exported
            "jobs/Daily/Daily.job",
            "jobs/daily/daily.job",
            "scripts/aux.script",
            "scripts/aux.sql",
            "scripts/ok.script",
            "resources/CON.resource",
            ".backupd/index.json",
        ]
    )
    index = WorkspaceIndex(
        jobs={name: JobRecord("BATCH", 1, "u") for name in ("CON", "plain", "flat")},
        version=1,
    )
    layout = read_layout(paths, index)

    assert set(layout.jobs) == {"CON", "plain", "flat", "Daily", "daily"}
    con = layout.jobs["CON"].folder("CON")
    assert con != "CON" and is_component_of(con, "CON")
    aux = layout.scripts["aux"]
    assert layout.moves == {
        "jobs/CON/CON.job": f"jobs/{con}/{con}.job",
        "jobs/CON/aux.script": f"jobs/{con}/{aux}.script",
        "jobs/CON/aux.sql": f"jobs/{con}/{aux}.sql",  # the view goes with its script
        "jobs/Daily/Daily.job": f"jobs/{layout.jobs['Daily'].path}/{layout.jobs['Daily'].path}.job",
        "jobs/flat.job": "jobs/flat/flat.job",
        "scripts/aux.script": f"scripts/{aux}.script",
        "scripts/aux.sql": f"scripts/{aux}.sql",
        "resources/CON.resource": f"resources/{layout.resources['CON']}.resource",
    }
    assert layout.jobs["daily"].path is None  # the lowercase one keeps its name
    assert layout.jobs["flat"].files == {"flat.job": "jobs/flat.job"}  # as the export had it
    assert layout.jobs["CON"].files == {
        f"{con}.job": "jobs/CON/CON.job",
        f"{aux}.script": "jobs/CON/aux.script",
    }
    assert layout.incomplete == {"flat"}  # its scripts were never stored beside it
    assert layout.jobs["CON"].last_update_time == 1  # metadata carried over
    moved = [layout.moves.get(p, p) for p in paths]
    assert portability_problems(moved) == []
    assert read_layout(sorted(moved), layout.index()).moves == {}  # done once


def test_a_folder_the_index_describes_needs_no_move_and_names_its_files() -> None:
    index = WorkspaceIndex(
        jobs={
            "CON": JobRecord(
                path="CON~a3dbc4b644",
                files={
                    "CON~a3dbc4b644.job": "jobs/CON.job",
                    "PRN~5c31b1c1ed.script": "scripts/PRN.script",
                },
            )
        },
        scripts={"PRN": "PRN~5c31b1c1ed"},
    )
    paths = [
        "jobs/CON~a3dbc4b644/CON~a3dbc4b644.job",
        "jobs/CON~a3dbc4b644/PRN~5c31b1c1ed.script",
        "scripts/PRN~5c31b1c1ed.script",
    ]
    layout = read_layout(paths, index)
    assert layout.moves == {}
    assert layout.scripts == {"PRN": "PRN~5c31b1c1ed"}
    assert layout.scripts_held(paths) == {"PRN": {"CON"}}
    assert layout.file_owners() == {
        "jobs/CON~a3dbc4b644/PRN~5c31b1c1ed.script": "PRN",
        "scripts/PRN~5c31b1c1ed.script": "PRN",
    }
    assert layout.job_names() == {"CON~a3dbc4b644": "CON"}


# --- the kept layout (store/layout_cache.py) -----------------------------------------------------


def _kept_example() -> tuple[StoredLayout, WorkspaceIndex]:
    index = WorkspaceIndex(
        jobs={
            "CON": JobRecord("BATCH", 5, "li.wei", "CON~1a2b3c4d5e", {"CON~1a2b3c4d5e.job": "x"}),
            "plain": JobRecord("REAL_TIME", 7, "alice"),
        },
        scripts={"aux": "aux~0f0f0f0f0f"},
    )
    staged = StoredLayout(
        jobs={
            "CON": JobRecord(None, None, None, "CON~1a2b3c4d5e", {"CON~1a2b3c4d5e.job": "x"}),
            "plain": JobRecord(),
        },
        scripts={"aux": "aux~0f0f0f0f0f", "ok": "ok"},
        resources={"CON": "CON~9e9e9e9e9e"},
    )
    return staged, index


def test_a_kept_layout_reads_back_with_each_jobs_record_from_the_committed_index(
    tmp_path: Path,
) -> None:
    staged, index = _kept_example()
    write_layout_file(staged, tmp_path / "layout.json")

    kept = read_layout_file(tmp_path / "layout.json", index)

    assert kept is not None
    assert kept.jobs == {
        "CON": JobRecord("BATCH", 5, "li.wei", "CON~1a2b3c4d5e", {"CON~1a2b3c4d5e.job": "x"}),
        "plain": JobRecord("REAL_TIME", 7, "alice"),
    }
    assert (kept.scripts, kept.resources) == (staged.scripts, staged.resources)
    assert kept.moves == {} and kept.incomplete == set()


def _header(lines: list[str], change: dict[str, Any]) -> list[str]:
    return [json.dumps(json.loads(lines[0]) | change), *lines[1:]]


@pytest.mark.parametrize(
    "spoil",
    [
        lambda lines: _header(lines, {"code": "another backupd's mapping"}),
        lambda lines: _header(lines, {"scripts": ["not", "a", "mapping"]}),
        lambda lines: _header(lines, {"jobs": 3}),  # a job line missing
        lambda lines: lines[:-1],
        lambda lines: [*lines[:-1], '["plain", 7, {}]'],
        lambda lines: [*lines[:-1], '["plain", null, {"a.job": 1}]'],
        lambda lines: [*lines[:-1], '["plain", null, {}'],  # cut short
        lambda lines: [],
    ],
)
def test_a_kept_layout_of_another_mapping_or_damaged_is_not_used(
    tmp_path: Path, spoil: Callable[[list[str]], list[str]]
) -> None:
    staged, index = _kept_example()
    path = tmp_path / "layout.json"
    write_layout_file(staged, path)
    assert read_layout_file(path, index) is not None

    path.write_text("".join(f"{line}\n" for line in spoil(path.read_text().splitlines())))

    assert read_layout_file(path, index) is None
    assert read_layout_file(tmp_path / "none.json", index) is None
