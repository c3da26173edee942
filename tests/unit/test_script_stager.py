"""ScriptStager: listed scripts staged as their pages arrive, corrected when the listing ends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from backupd.snapshot.ingest import ScriptStager
from backupd.store.normalise import canonical_json
from backupd.store.pathmap import (
    component,
    folder_components,
    is_component_of,
    portability_problems,
)
from backupd.store.staging import StagedTree, blob_id


def script(name: str, body: str = "SELECT 1;") -> dict[str, Any]:
    return {"name": name, "type": "DLI", "content": body}


def stored(*scripts: dict[str, Any]) -> dict[str, str]:
    """The blob ids of what a commit of these scripts holds (each .script and its view)."""
    files: dict[str, str] = {}
    for one in scripts:
        path = f"scripts/{one['name']}"
        files[f"{path}.script"] = blob_id(canonical_json(one))
        files[f"{path}.sql"] = blob_id(f"{one['content']}\n".encode())  # the view ends a line
    return files


def test_changed_new_and_vanished_scripts_are_reported(tmp_path: Path) -> None:
    tree = StagedTree(tmp_path, stored(script("same"), script("edited"), script("gone")))
    stager = ScriptStager(tree)
    names = [
        stager.stage(s) for s in (script("same"), script("edited", "SELECT 2;"), script("new"))
    ]

    assert stager.finish(names) == {"edited", "new", "gone"}
    changes = tree.changes()
    assert changes.added == ("scripts/new.script", "scripts/new.sql")
    assert changes.modified == ("scripts/edited.script", "scripts/edited.sql")
    assert changes.removed == ("scripts/gone.script", "scripts/gone.sql")


def test_scripts_staged_by_a_listing_pass_that_was_redone_are_taken_out(tmp_path: Path) -> None:
    # The listing ran twice (its total moved): "brief" and "old" were deleted in between.
    tree = StagedTree(tmp_path, stored(script("old"), script("kept")))
    stager = ScriptStager(tree)
    first_pass = [stager.stage(s) for s in (script("brief"), script("old"), script("kept"))]
    second_pass = [stager.stage(s) for s in (script("kept"),)]
    assert len(first_pass) == 3

    assert stager.finish(second_pass) == {"old"}  # "brief" was never committed: no change
    changes = tree.changes()
    assert changes.added == ()
    assert changes.removed == ("scripts/old.script", "scripts/old.sql")
    assert not (tmp_path / "scripts/brief.script").exists()
    assert not (tmp_path / "scripts/brief.sql").exists()


def test_every_name_is_staged_under_its_mapped_name(tmp_path: Path) -> None:
    # Once refused ("unusable script name"), which stopped the whole workspace.
    long_cjk = "清洗脚本汇总查询" * 16  # 384 bytes in UTF-8
    names = ["../escape", "tab\tname", long_cjk, "CON", "ok"]
    tree = StagedTree(tmp_path, {})
    stager = ScriptStager(tree)
    listed = [stager.stage(script(name)) for name in names]

    assert stager.finish(listed) == set(names)
    paths = set(tree.changes().added)
    assert f"scripts/{component(long_cjk)}.script" in paths
    assert "scripts/ok.script" in paths and "scripts/ok.sql" in paths
    assert portability_problems(paths) == []
    assert {n: stager.components[n] for n in names} == folder_components(names)


def test_a_clash_that_only_the_whole_listing_shows_is_resolved_at_the_end(
    tmp_path: Path,
) -> None:
    # "Orders_SQL" arrives first and is staged under its own name; "orders_sql" arrives on a
    # later page and is preferred (lowercase): the first one moves to its encoded name.
    tree = StagedTree(tmp_path, {})
    stager = ScriptStager(tree)
    listed = [stager.stage(script("Orders_SQL", "SELECT 1;")), stager.stage(script("orders_sql"))]

    assert stager.finish(listed) == {"Orders_SQL", "orders_sql"}
    moved = stager.components["Orders_SQL"]
    assert moved != "Orders_SQL" and is_component_of(moved, "Orders_SQL")
    assert sorted(tree.changes().added) == sorted(
        [
            f"scripts/{moved}.script",
            f"scripts/{moved}.sql",
            "scripts/orders_sql.script",
            "scripts/orders_sql.sql",
        ]
    )
    assert (tmp_path / f"scripts/{moved}.script").read_bytes() == canonical_json(
        script("Orders_SQL", "SELECT 1;")
    )


def test_a_stored_path_never_moves_for_a_newcomer(tmp_path: Path) -> None:
    tree = StagedTree(tmp_path, stored(script("Orders_SQL")))
    stager = ScriptStager(tree, {"Orders_SQL": "Orders_SQL"})
    listed = [stager.stage(script("orders_sql")), stager.stage(script("Orders_SQL"))]

    assert stager.finish(listed) == {"orders_sql"}
    assert stager.components["Orders_SQL"] == "Orders_SQL"
    assert is_component_of(stager.components["orders_sql"], "orders_sql")
    assert stager.components["orders_sql"] != "orders_sql"
