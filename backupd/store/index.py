"""The workspace index, ``<source>/<workspace>/.backupd/index.json``.

It is backupd's record of a workspace folder, committed with it:

- per job what incremental snapshots need (``jobType``, ``lastUpdateTime``,
  ``lastUpdateUser``);
- where every DataArts name is stored (the name → path record, see ``store/pathmap.py``):
  a job's folder under ``jobs/`` (``path``, only where it is not the name itself); per job
  the exact zip entry of each stored file where it is not ``jobs/<job name>/<stored file
  name>`` (``files``: a job exported as ``jobs/<job>.job``, a script exported at
  ``scripts/<script>.script``, a file whose name had to be encoded); and the folders'
  names of standalone scripts and resources where they differ from the DataArts name
  (``scripts``, ``resources``).

Paths are read from here, never worked out again: a name's path depends on the names that
shared its folder when it was first stored. ``restore`` rebuilds the export's exact entry
names from it. An index without ``version`` is the first format (names stored as they are,
jobs only): every path in it is the name itself.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from json.encoder import encode_basestring
from types import MappingProxyType
from typing import Any

from backupd.store.normalise import parse_json

INDEX_VERSION = 2
_EMPTY: Mapping[str, str] = MappingProxyType({})


@dataclass(frozen=True)
class JobRecord:
    """What the index holds for one job."""

    job_type: str | None = None
    last_update_time: int | None = None
    last_update_user: str | None = None
    path: str | None = None  # its folder under jobs/; None: the job's name itself
    # Stored file name (in the job's folder) → exact zip entry, where it is not
    # jobs/<job name>/<stored file name>.
    files: Mapping[str, str] = field(default_factory=lambda: _EMPTY)

    def folder(self, name: str) -> str:
        return self.path if self.path is not None else name

    def zip_entry(self, name: str, stored: str) -> str:
        """The zip entry the export gave the job's stored file ``stored``."""
        return self.files.get(stored) or f"jobs/{name}/{stored}"


@dataclass(frozen=True)
class WorkspaceIndex:
    jobs: Mapping[str, JobRecord] = field(default_factory=dict)
    scripts: Mapping[str, str] = field(default_factory=dict)  # name → component, if not equal
    resources: Mapping[str, str] = field(default_factory=dict)
    version: int = INDEX_VERSION

    def job_folder(self, name: str) -> str | None:
        record = self.jobs.get(name)
        return None if record is None else record.folder(name)

    def script_component(self, name: str) -> str:
        return self.scripts.get(name, name)

    def resource_component(self, name: str) -> str:
        return self.resources.get(name, name)

    @classmethod
    def parse(cls, content: bytes) -> WorkspaceIndex:
        """Read an index file; raises ValueError when it is not one."""
        data = parse_json(content)
        if not isinstance(data, dict) or not isinstance(data.get("jobs"), dict):
            raise ValueError("no 'jobs' object")
        version = data.get("version", 1)
        if not isinstance(version, int) or version < 1:
            raise ValueError(f"bad version {version!r}")
        jobs = {str(name): _job_record(entry) for name, entry in data["jobs"].items()}
        return cls(
            jobs=jobs,
            scripts=_names(data.get("scripts")),
            resources=_names(data.get("resources")),
            version=version,
        )

    def to_bytes(self) -> bytes:
        """Canonical JSON (sorted keys, 2-space indent, UTF-8, trailing newline), written row
        by row: json.dumps with an indent encodes in Python, piece by piece, and for 10,000
        jobs holds several times the file's size at once."""
        out = io.BytesIO()  # hands over its buffer (a bytearray's bytes() would copy it)
        out.write(b"{\n")
        out.write(b'  "jobs": ')
        _write_object(out, ((name, _job_row(self.jobs[name])) for name in sorted(self.jobs)), 1)
        for key, names in (("resources", self.resources), ("scripts", self.scripts)):
            out.write(f',\n  "{key}": '.encode())
            _write_object(out, ((n, _json(names[n])) for n in sorted(names)), 1)
        out.write(f',\n  "version": {self.version}\n}}\n'.encode())
        return out.getvalue()


def _job_record(entry: Any) -> JobRecord:
    if not isinstance(entry, dict):
        raise ValueError("a job entry is not an object")
    path = entry.get("path")
    time = entry.get("lastUpdateTime")
    return JobRecord(
        job_type=_str_or_none(entry.get("jobType")),
        last_update_time=time if isinstance(time, int) and not isinstance(time, bool) else None,
        last_update_user=_str_or_none(entry.get("lastUpdateUser")),
        path=path if isinstance(path, str) and path else None,
        files=_names(entry.get("files")) or _EMPTY,
    )


def _names(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(k): v for k, v in value.items() if isinstance(v, str) and v}


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _json(value: object) -> str:
    """``json.dumps(value, ensure_ascii=False)``; a string, an int and None without its
    overhead (the same C escaper it uses): an index of 10,000 jobs encodes ~80,000 values."""
    if isinstance(value, str):
        return encode_basestring(value)
    if value is None:
        return "null"
    if type(value) is int:  # not a bool
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def _job_row(record: JobRecord) -> str:
    fields: list[tuple[str, str]] = []
    if record.files:
        fields.append(("files", _inline_object(record.files, 3)))
    fields += [
        ("jobType", _json(record.job_type)),
        ("lastUpdateTime", _json(record.last_update_time)),
        ("lastUpdateUser", _json(record.last_update_user)),
    ]
    if record.path is not None:
        fields.append(("path", _json(record.path)))
    inner = ",\n".join(f'      "{key}": {value}' for key, value in fields)  # plain keys
    return "{\n" + inner + "\n    }"


def _inline_object(values: Mapping[str, str], depth: int) -> str:
    pad = "  " * depth
    rows = ",\n".join(f"{pad}  {_json(k)}: {_json(values[k])}" for k in sorted(values))
    return "{\n" + rows + "\n" + pad + "}"


def _write_object(out: io.BytesIO, rows: Iterable[tuple[str, str]], depth: int) -> None:
    pad = "  " * (depth + 1)
    empty = True
    for key, value in rows:
        out.write(b"{\n" if empty else b",\n")
        empty = False
        out.write(f"{pad}{_json(key)}: {value}".encode())
    out.write(b"{}" if empty else f"\n{'  ' * depth}}}".encode())
