"""Putting what the service sent into the staged tree: export archives and listed items.

An archive must hold exactly the jobs it was asked for; scripts get a readable view of their
body beside them; listed scripts and resources are staged as their pages arrive."""

from __future__ import annotations

import errno
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from backupd.errors import (
    ArchiveError,
    describe_os_error,
)
from backupd.store.archive import ArchiveLimits, read_archive
from backupd.store.layout import RESOURCES_DIR, SCRIPTS_DIR
from backupd.store.names import stem_of, with_suffix
from backupd.store.normalise import (
    VIEW_SUFFIXES,
    canonical_json,
    normalise_parsed,
    normalise_script,
    parse_json,
    script_view,
)
from backupd.store.staging import StagedTree, blob_id

logger = logging.getLogger(__name__)


def ingest_archive(
    zip_path: Path,
    limits: ArchiveLimits,
    tree: StagedTree,
    requested: Sequence[str],
    archive_name: str,
) -> None:
    """Check one export archive and stage its normalised files.

    The archive must hold exactly the requested jobs, and write only into their folders.
    Its entries are read (and CRC-checked) before any of them is staged.
    """
    files = {path: _normalised(path, data) for path, data in read_archive(zip_path, limits)}
    exported: set[str] = set()
    owners: set[str] = set()  # job folders the archive writes into
    for relative in files:
        parts = relative.split("/")
        if parts[0] == "jobs" and relative.endswith(".job"):
            exported.add(parts[1] if len(parts) == 3 else stem_of(parts[1]))
        if parts[0] == "jobs" and len(parts) >= 3:
            owners.add(parts[1])
    missing = sorted(set(requested) - exported)
    unexpected = sorted((exported | owners) - set(requested))
    if missing or unexpected:
        problems = []
        if missing:
            problems.append(f"lacks {len(missing)} requested job(s): {', '.join(missing[:5])}")
        if unexpected:
            problems.append(f"holds jobs not asked for: {', '.join(unexpected[:5])}")
        raise ArchiveError(f"{archive_name}: export {'; '.join(problems)}")
    try:
        for relative, (content, view) in files.items():
            if relative.endswith(".script"):
                stage_script_view(tree, relative, content, view)
            else:
                tree.put(relative, content)
    except OSError as error:
        # Our disk, not the archive: _local_failure() sees the OSError and does not retry.
        full = error.errno in (errno.ENOSPC, errno.EDQUOT)
        what = "disk full while unpacking" if full else "cannot stage"
        raise ArchiveError(
            f"{archive_name}: {what} into {tree.root}: {describe_os_error(error)}"
        ) from error


def _normalised(path: str, data: bytes) -> tuple[bytes, tuple[str, bytes] | None]:
    """The bytes to store for an exported file, and a script's view (None for the rest)."""
    if path.endswith(".script"):
        return normalise_script(data)
    return normalise_parsed(path, data)[0], None


def stage_script_file(tree: StagedTree, path: str, content: bytes, parsed: Any = None) -> None:
    """Stage a .script and, beside it, the readable view of its body (derived, never restored).

    ``parsed``: the JSON ``content`` was written from, when the caller has it.
    """
    try:
        view = script_view(parse_json(content) if parsed is None else parsed)
    except ValueError:
        view = None
    stage_script_view(tree, path, content, view)


def stage_script_view(
    tree: StagedTree, path: str, content: bytes, view: tuple[str, bytes] | None
) -> None:
    """Stage a .script and its view (``script_view`` of it; None: it has none)."""
    tree.put(path, content)
    if view is None:
        return
    extension, text = view
    view_path = with_suffix(path, extension)
    if not tree.has(view_path):  # a real exported file of that name wins
        tree.put(view_path, text)


class ScriptStager:
    """Stages listed scripts under scripts/ as their pages arrive, so a large workspace's
    thousands of script bodies are not held until its listing ends."""

    def __init__(self, tree: StagedTree) -> None:
        self._tree = tree
        self._staged: set[str] = set()
        self._changed: set[str] = set()  # differ from the last commit

    def stage(self, script: dict[str, Any]) -> str:
        """Stage one listed script; returns its name."""
        name = str(script["name"])
        if not safe_name(name):
            raise ArchiveError(f"script list: unusable script name {name!r}")
        path = f"{SCRIPTS_DIR}/{name}.script"
        content = canonical_json(script)
        if self._tree.stored_blob(path) != blob_id(content):
            self._changed.add(name)
        stage_script_file(self._tree, path, content, script)
        self._staged.add(name)
        return name

    def finish(self, listed: Sequence[str]) -> set[str]:
        """The listing ended with ``listed``: returns the scripts that changed or vanished.

        A listing that ran twice (its total moved) may have staged scripts deleted since:
        they are taken out again.
        """
        names = set(listed)
        for name in self._staged - names:
            path = f"{SCRIPTS_DIR}/{name}.script"
            for staged in (path, *(with_suffix(path, suffix) for suffix in VIEW_SUFFIXES)):
                self._tree.discard(staged)
        changed = self._changed & names
        for path in self._tree.stored_paths(SCRIPTS_DIR):
            if path.endswith(".script") and (name := stem_of(path)) not in names:
                changed.add(name)
        return changed


def stage_resource(tree: StagedTree, resource: dict[str, Any]) -> None:
    """Stage a resource definition as listed (the OBS object it points to stays in OBS)."""
    name = str(resource["name"])
    if not safe_name(name):
        raise ArchiveError(f"resource list: unusable resource name {name!r}")
    tree.put(f"{RESOURCES_DIR}/{name}.resource", canonical_json(resource))


def safe_name(name: str) -> bool:
    return (
        bool(name)
        and name not in {".", ".."}
        and not any(c in name for c in "/\\\0")
        and len(name.encode("utf-8")) <= 240
    )
