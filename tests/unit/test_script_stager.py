"""ScriptStager: listed scripts staged as their pages arrive, corrected when the listing ends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from backupd.errors import ArchiveError
from backupd.snapshot.ingest import ScriptStager
from backupd.store.normalise import canonical_json
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


def test_an_unusable_script_name_is_refused(tmp_path: Path) -> None:
    stager = ScriptStager(StagedTree(tmp_path, {}))
    with pytest.raises(ArchiveError, match="unusable script name"):
        stager.stage(script("../escape"))
