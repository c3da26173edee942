"""Workspace discovery decisions: filters, folder allocation and the map (pure, no network)."""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Any

import pytest

from backupd.config import SourceConfig, parse_config
from backupd.dataarts.client import WorkspaceInfo
from backupd.snapshot.discovery import filter_reason, map_commit_message, plan_discovery
from backupd.store.workspace_map import MappedWorkspace, WorkspaceMap, allocate_folder

INSTANCE = "i" * 32
A, B, C, D = (f"{n:032x}" for n in (0xA, 0xB, 0xC, 0xD))


def source(**options: Any) -> SourceConfig:
    data = {
        "repository": {"path": "repo"},
        "sources": [
            {
                "name": "prod",
                "region": "cn-north-4",
                "project_id": "0123456789abcdef0123456789abcdef",
                "auth": {"type": "token", "token": "t"},
                "workspaces": "all",
                **options,
            }
        ],
    }
    return parse_config(data, base_dir=Path("/"), environ={}).sources[0]


def listed(*pairs: tuple[str, str]) -> list[WorkspaceInfo]:
    return [WorkspaceInfo(id=wid, name=name, instance_id=INSTANCE) for wid, name in pairs]


@pytest.mark.parametrize(
    ("include", "exclude", "name", "expected"),
    [
        ((), (), "sales", (True, "included")),
        ((), ("tmp_*",), "tmp_scratch", (False, "excluded by 'tmp_*'")),
        ((), ("tmp_*",), "sales_tmp", (True, "included")),
        (("sales*", "fin"), (), "finance", (False, "not matched by include ('sales*', 'fin')")),
        (("sales*",), ("*_old",), "sales_old", (False, "excluded by '*_old'")),
        ((), ("Tmp_*",), "tmp_x", (True, "included")),  # case-sensitive, like workspace names
        ((), (A,), "anything", (False, f"excluded by {A!r}")),  # ids match too
        ((f"{A[:8]}*",), (), "anything", (True, "included")),
    ],
)
def test_filters_match_names_or_ids_with_globs_and_say_why(
    include: tuple[str, ...], exclude: tuple[str, ...], name: str, expected: tuple[bool, str]
) -> None:
    assert filter_reason(A, name, include, exclude) == expected


def test_a_new_folder_is_the_name_unless_unusable_or_taken_case_insensitively() -> None:
    assert allocate_folder("sales", A, []) == "sales"
    assert allocate_folder("sales", A, ["Sales"]) == f"sales-{A[:8]}"
    assert allocate_folder("sales", A, ["sales", f"sales-{A[:8]}"]) == A
    assert allocate_folder("a/b", A, []) == A
    assert allocate_folder(".hidden", A, []) == A
    assert allocate_folder("销售", A, []) == "销售"


@pytest.mark.parametrize(
    "name",
    ["CON", "aux.daily", "trailing.", "tab\there", "销" * 100, "x~0123456789", "a:b", " lead"],
)
def test_a_workspace_name_windows_or_macos_cannot_store_gets_its_id(name: str) -> None:
    assert allocate_folder(name, A, []) == A


def test_folders_that_macos_would_merge_are_taken() -> None:
    nfc, nfd = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
    assert allocate_folder(nfc, A, [nfd]) == f"{nfc}-{A[:8]}"
    assert allocate_folder("KELVIN", A, ["\u212aelvin"]) == f"KELVIN-{A[:8]}"  # Kelvin sign


def test_a_recorded_folder_stays_readable_though_a_new_one_could_not_have_it() -> None:
    recorded = WorkspaceMap(
        (MappedWorkspace(id=A, folder="CON", name="CON", instance_id="i"),)
    ).to_bytes()
    assert WorkspaceMap.from_bytes(recorded).by_id[A].folder == "CON"


def test_first_discovery_gives_folders_and_maps_only_included_workspaces() -> None:
    found = plan_discovery(
        source(exclude=["tmp_*"]),
        INSTANCE,
        listed((A, "sales"), (B, "tmp_x"), (C, "Sales")),
        WorkspaceMap(),
    )
    by_id = {w.id: w for w in found.workspaces}
    assert by_id[A].folder == "sales" and by_id[A].state == "new" and by_id[A].included
    assert by_id[B].folder is None and not by_id[B].included
    assert by_id[B].status == "excluded by 'tmp_*'"
    assert by_id[C].folder == f"Sales-{C[:8]}"
    assert set(found.workspace_map.by_id) == {A, C}
    assert [t.label for t in found.targets()] == ["prod/sales", f"prod/Sales-{C[:8]}"]


def test_rename_keeps_the_folder_gone_keeps_it_reserved_and_return_restores_it() -> None:
    previous = WorkspaceMap().with_entries(
        [
            MappedWorkspace(A, "sales", "sales", INSTANCE),
            MappedWorkspace(B, "finance", "finance", INSTANCE),
            MappedWorkspace(C, "ops", "ops", INSTANCE, present=False),
        ]
    )
    # A renamed; B vanished; C is back; D is new and named like B's folder.
    found = plan_discovery(
        source(), INSTANCE, listed((A, "sales_eu"), (C, "ops"), (D, "finance")), previous
    )
    by_id = {w.id: w for w in found.workspaces}
    assert (by_id[A].state, by_id[A].folder, by_id[A].previous_name) == (
        "renamed",
        "sales",
        "sales",
    )
    assert (by_id[B].state, by_id[B].folder) == ("gone", "finance")
    assert by_id[B].status == "gone: no longer listed by DataArts (folder kept)"
    assert by_id[C].state == "returned"
    assert by_id[D].folder == f"finance-{D[:8]}"  # never the vanished workspace's folder
    mapped = found.workspace_map.by_id
    assert mapped[A].name == "sales_eu" and mapped[A].folder == "sales"
    assert not mapped[B].present and mapped[C].present
    assert [w.id for w in found.gone()] == [B]
    assert {t.workspace_id for t in found.targets()} == {A, C, D}
    message = map_commit_message(found)
    assert message.splitlines()[0] == "prod: workspaces: 1 new, 1 renamed, 1 returned, 1 gone"
    assert f"sales -> sales_eu (id {A}) in prod/sales/" in message
    assert f"finance (id {B}) in prod/finance/" in message


def test_switching_from_a_list_takes_over_folders_named_by_id_or_name() -> None:
    existing = {A, "sales", "ops"}  # folders an explicit workspace list left behind
    found = plan_discovery(
        source(),
        INSTANCE,
        listed((A, "finance"), (B, "sales"), (C, "marketing")),
        WorkspaceMap(),
        existing_folders=existing,
    )
    folders = {w.id: w.folder for w in found.workspaces}
    assert folders == {A: A, B: "sales", C: "marketing"}


def test_excluding_a_backed_up_workspace_stops_it_but_keeps_its_folder() -> None:
    previous = WorkspaceMap().with_entries([MappedWorkspace(A, "tmp_a", "tmp_a", INSTANCE)])
    found = plan_discovery(source(exclude=["tmp_*"]), INSTANCE, listed((A, "tmp_a")), previous)
    (workspace,) = found.workspaces
    assert workspace.status == "excluded by 'tmp_*' (folder kept)"
    assert found.targets() == []
    assert found.workspace_map == previous
    # …and one that vanished while excluded is not announced as a loss.
    gone = plan_discovery(source(exclude=["tmp_*"]), INSTANCE, listed((B, "x")), previous)
    assert gone.gone() == []


def test_the_map_round_trips_and_rejects_nonsense() -> None:
    original = WorkspaceMap().with_entries(
        [
            MappedWorkspace(A, "sales", "销售", INSTANCE),
            MappedWorkspace(B, "old", "old", INSTANCE, present=False),
        ]
    )
    assert WorkspaceMap.from_bytes(original.to_bytes()) == original
    assert original.to_bytes().endswith(b"}\n")
    for bad in (
        b"[]",
        b'{"workspaces": {"x": {"folder": "../etc"}}}',
        b'{"workspaces": {"x": {"folder": "a"}, "y": {"folder": "A"}}}',
        b"not json",
    ):
        with pytest.raises(ValueError):
            WorkspaceMap.from_bytes(bad)
