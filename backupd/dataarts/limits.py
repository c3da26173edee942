"""Limits the DataArts API documents (dlf-api.md §2, §3, §8): one place for each number.

No imports: the configuration schema, the client, the snapshot options and the restore
comparison all read these, and none of them should pull in HTTP code to do so.
"""

from __future__ import annotations

MAX_EXPORT_NAMES = 100  # names per batch-export call (jobList), dlf-api.md §3.2 and §8
MAX_SCRIPT_LIMIT = 100  # page size of the script list: 1-100 (the page also says 1000)
MAX_RESOURCE_LIMIT = 100  # page size of the resource list: 1-100
MAX_WORKSPACE_LIMIT = 100  # page size of the workspace list: 1-100
