"""Safe unpacking of an export zip: the archive is hostile until proven otherwise.

Two phases. Phase 1 reads only the central directory and rejects anything odd (path tricks,
links, duplicates, bombs, encryption) before a single byte is written. Phase 2 stream-copies
the files under ``dest`` and re-checks sizes against what is actually decompressed, because
headers can lie. Any failure in phase 2 removes ``dest`` so a rejected archive leaves nothing.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import re
import shutil
import stat
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from backupd.errors import ArchiveError

_FLAG_ENCRYPTED = 0x1
_FLAG_UTF8 = 0x800
_LOCAL_HEADER_SIZE = 30  # fixed part of a local file header, before name and extra field
_LOCAL_SIGNATURE = b"PK\x03\x04"
_MIB = 1024**2
_CHUNK = 64 * 1024
_MAX_SEGMENT_BYTES = 255  # NAME_MAX on Linux
_MAX_PATH_BYTES = 4096  # PATH_MAX on Linux
_MAX_REPR = 200  # keep error messages readable even for absurd names
_SUPPORTED_METHODS = (
    zipfile.ZIP_STORED,
    zipfile.ZIP_DEFLATED,
)  # what Java's ZipOutputStream writes


@dataclass(frozen=True)
class ArchiveLimits:
    max_entries: int = 100_000
    max_total_bytes: int = 2 * 1024**3  # sum of uncompressed sizes
    max_entry_bytes: int = 256 * 1024**2
    max_ratio: int = 1000  # uncompressed/compressed per entry above 1 MiB → zip bomb


@dataclass(frozen=True)
class _Entry:
    info: zipfile.ZipInfo
    name: str  # decoded, validated, without the trailing "/" of directories
    is_dir: bool


def _open_archive(zip_path: Path) -> zipfile.ZipFile:
    label = zip_path.name
    try:
        return zipfile.ZipFile(zip_path)
    except UnicodeDecodeError as error:
        # zipfile decodes flagged names itself while reading the central directory.
        raise ArchiveError(f"{label}: an entry name is flagged UTF-8 but is not UTF-8") from error
    except FileNotFoundError as error:
        raise ArchiveError(f"{label}: cannot read archive: {error.strerror}") from error
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, struct.error) as error:
        raise ArchiveError(f"{label}: not a zip archive or truncated ({error})") from error


def extract_archive(
    zip_path: Path, dest: Path, limits: ArchiveLimits = ArchiveLimits()
) -> list[str]:
    """Validate the whole archive, then write it under dest (created; must not exist or be empty).
    Returns the POSIX relative paths written (files only), sorted."""
    label = zip_path.name
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ArchiveError(f"{label}: destination {dest} exists and is not an empty directory")
    with _open_archive(zip_path) as archive:
        entries = _check_archive(archive, label, limits)
        try:
            dest.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ArchiveError(f"{label}: cannot create {dest}: {error.strerror}") from error
        try:
            return _write_entries(archive, entries, dest, label, limits)
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)
            raise


def read_archive(
    zip_path: Path, limits: ArchiveLimits = ArchiveLimits()
) -> Iterator[tuple[str, bytes]]:
    """(POSIX path, bytes) of every file, after the whole archive's metadata passed phase 1.

    Each file is yielded only once it was read completely and its CRC checked, so a consumer
    never sees a corrupt entry; a later entry can still fail, which is why consumers write
    what they get into staging only. Nothing touches the file system here, so the names are
    data, not paths: a segment longer than 255 bytes, a control character (not NUL), a
    backslash or a ``.git`` segment is a literal part of a DataArts name (the consumer maps
    names to file names). Path tricks (``..``, ``.``, empty segments, absolute paths) are
    refused all the same: no honest export holds them.
    """
    label = zip_path.name
    with _open_archive(zip_path) as archive:
        entries = _check_archive(archive, label, limits, literal_names=True)
        total = 0
        with zip_path.open("rb") as file, _mapped(file) as view:
            for entry in entries:
                if entry.is_dir:
                    continue
                data = _read_entry(
                    view, archive.start_dir, entry, label, limits, limits.max_total_bytes - total
                )
                total += len(data)
                yield entry.name, data


@contextlib.contextmanager
def _mapped(file: BinaryIO) -> Iterator[memoryview]:
    """The whole file as read-only memory (mapped: pages are read as they are touched)."""
    size = os.fstat(file.fileno()).st_size
    if size == 0:
        yield memoryview(b"")
        return
    with mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
        view = memoryview(mapped)
        try:
            yield view
        finally:
            view.release()


def _read_entry(
    view: memoryview,
    directory_start: int,
    entry: _Entry,
    label: str,
    limits: ArchiveLimits,
    budget: int,
) -> bytes:
    """One entry's data, decompressed and checked as zipfile checks it (local header, size,
    CRC), but without zipfile's per-entry machinery: an export holds hundreds of small
    files, and opening each through zipfile took three times as long as the rest.

    Phase 1 checked the central directory (method, flags, sizes, overlap); the local header
    is checked here: its signature, its name (the same as the directory's), and that the
    data it points to ends before the central directory.
    """
    info = entry.info
    offset = info.header_offset
    header = bytes(view[offset : offset + _LOCAL_HEADER_SIZE])
    if len(header) < _LOCAL_HEADER_SIZE or header[:4] != _LOCAL_SIGNATURE:
        raise _rejection(label, entry.name, "corrupt entry (bad local header)")
    name_length, extra_length = struct.unpack_from("<HH", header, 26)
    name_start = offset + _LOCAL_HEADER_SIZE
    if bytes(view[name_start : name_start + name_length]) != _raw_name_bytes(info):
        raise _rejection(label, entry.name, "corrupt entry (local header names another file)")
    start = name_start + name_length + extra_length
    end = start + info.compress_size
    if end > directory_start:
        raise _rejection(label, entry.name, "entry data overlaps another entry or the directory")
    allowed = min(info.file_size, limits.max_entry_bytes, budget)
    # Never more than the header declares (a lying header shows up in the CRC), and at
    # least one byte more than nothing: zlib reads a limit of 0 as none.
    limit = max(1, info.file_size)
    with view[start:end] as compressed:  # released here, even on the way out of an error
        if info.compress_type == zipfile.ZIP_STORED:
            data = bytes(compressed[:limit])
        else:
            try:
                data = zlib.decompressobj(-zlib.MAX_WBITS).decompress(compressed, limit)
            except zlib.error as error:
                raise _rejection(
                    label, entry.name, f"truncated or corrupt data ({error})"
                ) from error
    if len(data) > allowed:
        raise _rejection(label, entry.name, "more data than the header declares")
    if len(data) != info.file_size:
        raise _rejection(label, entry.name, "less data than the header declares")
    if zlib.crc32(data) != info.CRC:
        raise _rejection(label, entry.name, f"CRC mismatch (bad CRC-32 for {entry.name!r})")
    return data


# --- phase 1: metadata only -------------------------------------------------------------------


def _check_archive(
    archive: zipfile.ZipFile, label: str, limits: ArchiveLimits, *, literal_names: bool = False
) -> list[_Entry]:
    infos = archive.infolist()
    if len(infos) > limits.max_entries:
        raise ArchiveError(
            f"{label}: {len(infos)} entries, more than the limit of {limits.max_entries}"
        )
    entries: list[_Entry] = []
    files: set[str] = set()
    explicit_dirs: set[str] = set()
    all_dirs: set[str] = set()  # explicit directories and every parent of every entry
    total = 0
    for info in infos:
        entry = _check_entry(info, label, limits, literal_names=literal_names)
        name = entry.name
        if entry.is_dir:
            if name in explicit_dirs:
                raise _rejection(label, name, "duplicate entry")
            if name in files:
                raise _rejection(label, name, "directory has the same name as a file")
            explicit_dirs.add(name)
        else:
            if name in files:
                raise _rejection(label, name, "duplicate entry")
            if name in all_dirs:
                raise _rejection(label, name, "file has the same name as a directory")
        parents = _parents(name)
        clash = next((parent for parent in parents if parent in files), None)
        if clash is not None:
            raise _rejection(label, name, f"file {_safe_repr(clash)} is also used as a directory")
        all_dirs.update(parents)
        if entry.is_dir:
            all_dirs.add(name)
        else:
            files.add(name)
            total += info.file_size
            if total > limits.max_total_bytes:
                message = f"archive unpacks to more than {limits.max_total_bytes} bytes"
                raise _rejection(label, name, message)
        entries.append(entry)
    _check_overlap(archive, label, entries)
    return entries


def _check_entry(
    info: zipfile.ZipInfo, label: str, limits: ArchiveLimits, *, literal_names: bool = False
) -> _Entry:
    raw_name = info.orig_filename  # not .filename: zipfile silently cuts that at a NUL
    name = _decode_name(raw_name, info.flag_bits)

    def reject(reason: str) -> ArchiveError:
        return _rejection(label, name, reason)

    if info.flag_bits & _FLAG_ENCRYPTED:
        raise reject("entry is encrypted")
    if info.compress_type not in _SUPPORTED_METHODS:
        raise reject(f"unsupported compression method {info.compress_type}")
    is_dir = name.endswith("/")
    path = name[:-1] if is_dir else name
    problem = _path_problem(name, path, literal_names=literal_names)
    if problem:
        raise reject(problem)
    # Unix mode bits: only files and directories; we never create links or devices, but a
    # link entry means the producer is not what we think it is.
    mode = info.external_attr >> 16
    kind = stat.S_IFMT(mode)
    if stat.S_ISLNK(mode):
        raise reject("symbolic link")
    if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
        raise reject(f"special file (mode {mode:o})")
    if kind != 0 and (kind == stat.S_IFDIR) != is_dir:
        raise reject("file type in mode bits disagrees with the name")
    if is_dir:
        # Only the uncompressed size counts: an empty deflate stream is 2 bytes.
        if info.file_size:
            raise reject("directory entry carries data")
        return _Entry(info, path, is_dir=True)
    if info.compress_type == zipfile.ZIP_STORED and info.compress_size != info.file_size:
        raise reject("stored entry with two different sizes")
    if info.file_size > limits.max_entry_bytes:
        raise reject(
            f"declared size {info.file_size} exceeds the limit of {limits.max_entry_bytes}"
        )
    if info.file_size > _MIB and info.file_size / max(info.compress_size, 1) > limits.max_ratio:
        raise reject(
            f"compression ratio above {limits.max_ratio} "
            f"({info.file_size} from {info.compress_size} bytes): zip bomb?"
        )
    return _Entry(info, path, is_dir=False)


def _decode_name(raw_name: str, flag_bits: int) -> str:
    if flag_bits & _FLAG_UTF8:
        return raw_name  # zipfile already decoded it as UTF-8
    # Unflagged names were decoded as cp437 (a total, reversible mapping): get the bytes back
    # and try what servers actually send: UTF-8 without the flag, then GB18030 (a superset
    # of GBK, whose four-byte sequences GBK cannot decode).
    data = raw_name.encode("cp437")
    for encoding in ("utf-8", "gb18030"):
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return raw_name


_CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f-\x9f]")


def _path_problem(name: str, path: str, *, literal_names: bool = False) -> str | None:
    """Why ``name`` (``path`` is it without a directory's trailing slash) is unsafe, or None.

    ``literal_names``: the name is read, never written to disk as it is (read_archive), so
    only what no honest archive holds is a problem.
    """
    if not path:
        return "absolute path" if name.startswith("/") else "empty name"
    if "\0" in name or (not literal_names and _CONTROL_CHARACTER.search(name)):
        return "control character in name"
    if "\\" in name and not literal_names:
        return "backslash in name"
    if name.startswith("/"):
        return "absolute path"
    if (
        not literal_names
        and len(name) >= 2
        and name[1] == ":"
        and name[0].isascii()
        and name[0].isalpha()
    ):
        return "drive letter in name"
    if len(name.encode("utf-8", "surrogatepass")) > _MAX_PATH_BYTES:
        return f"name longer than {_MAX_PATH_BYTES} bytes"
    for segment in path.split("/"):
        if segment == "":
            return "empty path segment"
        if segment in (".", ".."):
            return f"{segment!r} path segment"
        if literal_names:
            continue
        if segment.lower() == ".git":
            # The staging tree is later copied into a git work tree: never let an archive
            # smuggle in repository metadata (hooks, config).
            return "'.git' path segment"
        if len(segment.encode("utf-8")) > _MAX_SEGMENT_BYTES:
            return f"path segment longer than {_MAX_SEGMENT_BYTES} bytes"
    return None


def _parents(path: str) -> list[str]:
    segments = path.split("/")
    return ["/".join(segments[:index]) for index in range(1, len(segments))]


def _check_overlap(archive: zipfile.ZipFile, label: str, entries: list[_Entry]) -> None:
    # Entries sharing compressed bytes are the "overlapping" zip bomb, which a per-entry ratio
    # cannot see; every entry must own its bytes up to the next header or the central directory.
    spans = sorted(
        (
            entry.info.header_offset,
            entry.info.header_offset
            + _LOCAL_HEADER_SIZE
            + len(_raw_name_bytes(entry.info))
            + entry.info.compress_size,
            entry.name,
        )
        for entry in entries
    )
    limits = [start for start, _, _ in spans[1:]] + [archive.start_dir]
    for (_, end, name), limit in zip(spans, limits, strict=True):
        if end > limit:
            raise _rejection(label, name, "entry data overlaps another entry or the directory")


def _raw_name_bytes(info: zipfile.ZipInfo) -> bytes:
    encoding = "utf-8" if info.flag_bits & _FLAG_UTF8 else "cp437"
    return info.orig_filename.encode(encoding)


# --- phase 2: write under dest ----------------------------------------------------------------


def _write_entries(
    archive: zipfile.ZipFile, entries: list[_Entry], dest: Path, label: str, limits: ArchiveLimits
) -> list[str]:
    root = dest.resolve()
    written: list[str] = []
    total = 0
    for entry in entries:
        target = dest / entry.name
        # Defence in depth: phase 1 already refused every way out of dest.
        if not target.resolve().is_relative_to(root):
            raise _rejection(label, entry.name, "resolves outside the destination")
        try:
            if entry.is_dir:
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            total += _copy_entry(
                archive, entry, target, label, limits, limits.max_total_bytes - total
            )
        except OSError as error:
            if error.errno in (errno.ENOSPC, errno.EDQUOT):
                message = f"{label}: disk full while unpacking {_safe_repr(entry.name)} into {dest}"
                raise ArchiveError(message) from error
            message = f"{label}: cannot unpack {_safe_repr(entry.name)} into {dest}: {error}"
            raise ArchiveError(message) from error
        written.append(entry.name)
    return sorted(written)


def _copy_entry(
    archive: zipfile.ZipFile,
    entry: _Entry,
    target: Path,
    label: str,
    limits: ArchiveLimits,
    budget: int,
) -> int:
    """Stream one file to ``target``; returns the bytes actually written."""
    # "xb": never reuse an existing path (or follow a link planted there).
    with open(target, "xb") as sink:
        return _stream_entry(archive, entry, sink, label, limits, budget)


def _stream_entry(
    archive: zipfile.ZipFile,
    entry: _Entry,
    sink: BinaryIO,
    label: str,
    limits: ArchiveLimits,
    budget: int,
) -> int:
    """Copy one entry's data into ``sink`` in chunks, trusting no header; returns its size."""
    info = entry.info
    allowed = min(info.file_size, limits.max_entry_bytes, budget)
    count = 0
    try:
        with archive.open(info) as source:
            while chunk := source.read(_CHUNK):
                count += len(chunk)
                if count > allowed:
                    raise _rejection(label, entry.name, "more data than the header declares")
                sink.write(chunk)
        if count != info.file_size:
            raise _rejection(label, entry.name, "less data than the header declares")
    except zipfile.BadZipFile as error:
        # zipfile stops at the declared size, so a header that lies shows up as a bad CRC.
        reason = "CRC mismatch" if "CRC" in str(error) else "corrupt entry"
        raise _rejection(label, entry.name, f"{reason} ({error})") from error
    except (zlib.error, EOFError) as error:
        raise _rejection(label, entry.name, f"truncated or corrupt data ({error})") from error
    except (NotImplementedError, RuntimeError) as error:
        raise _rejection(label, entry.name, f"cannot be read ({error})") from error
    return count


def _rejection(label: str, name: str, reason: str) -> ArchiveError:
    return ArchiveError(f"{label}: entry {_safe_repr(name)}: {reason}")


def _safe_repr(name: str) -> str:
    # repr() escapes control and non-printable characters; also cap the length.
    if len(name) > _MAX_REPR:
        return repr(name[:_MAX_REPR]) + "…"
    return repr(name)
