"""Where things live inside a workspace folder of the repository."""

from __future__ import annotations

from backupd.store.tree import META_DIR

INDEX_FILE = f"{META_DIR}/index.json"


RESOURCES_DIR = "resources"  # resources/<name>.resource: definitions from the resource list


SCRIPTS_DIR = "scripts"  # scripts/<name>.script: definitions from the script list
