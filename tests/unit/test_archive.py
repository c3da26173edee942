"""extract_archive: hostile zips are refused and leave nothing behind; honest ones unpack."""

from __future__ import annotations

import errno
import stat
import struct
import warnings
import zipfile
from pathlib import Path
from typing import Any

import pytest

import backupd.store.archive as archive
from backupd.errors import ArchiveError
from backupd.store.archive import ArchiveLimits, extract_archive, read_archive

LOCAL_SIG = b"PK\x03\x04"
CENTRAL_SIG = b"PK\x01\x02"


# --- helpers ----------------------------------------------------------------------------------


def make_zip(
    path: Path,
    entries: list[tuple[str | zipfile.ZipInfo, bytes]],
    compression: int = zipfile.ZIP_DEFLATED,
) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about the duplicates some tests want
        with zipfile.ZipFile(path, "w", compression=compression) as zf:
            for name, data in entries:
                zf.writestr(name, data)
    return path


def replace_bytes(path: Path, old: bytes, new: bytes, expected: int = 2) -> None:
    """Swap raw bytes (a name appears twice: local and central header)."""
    assert len(old) == len(new)
    data = path.read_bytes()
    assert data.count(old) == expected
    path.write_bytes(data.replace(old, new))


def patch_central(path: Path, index: int, offset: int, fmt: str, value: int) -> None:
    """Overwrite a field of the index-th central directory header."""
    data = bytearray(path.read_bytes())
    start = -1
    for _ in range(index + 1):
        start = data.index(CENTRAL_SIG, start + 1)
    struct.pack_into(fmt, data, start + offset, value)
    path.write_bytes(bytes(data))


def leftovers(tmp_path: Path, zip_path: Path) -> list[Path]:
    """Everything under tmp_path except the archive itself: must be empty after a refusal."""
    return sorted(path for path in tmp_path.rglob("*") if path != zip_path)


def assert_refused(
    tmp_path: Path,
    zip_path: Path,
    match: str,
    limits: ArchiveLimits | None = None,
    *,
    read: bool = True,
) -> ArchiveError:
    dest = tmp_path / "dest"
    with pytest.raises(ArchiveError, match=match) as caught:
        extract_archive(zip_path, dest, limits or ArchiveLimits())
    assert zip_path.name in str(caught.value)
    assert not dest.exists()
    assert leftovers(tmp_path, zip_path) == []
    if read:  # read_archive (what a snapshot uses) reads entries its own way: the same
        with pytest.raises(ArchiveError, match=match) as refused:
            list(read_archive(zip_path, limits or ArchiveLimits()))
        assert zip_path.name in str(refused.value)
    return caught.value


# --- honest archives --------------------------------------------------------------------------


def test_normal_layout(tmp_path: Path) -> None:
    job = b'{"name": "job_a", "nodes": []}'
    script = b'{"name": "dws_sql", "content": "select 1"}'
    zip_path = make_zip(
        tmp_path / "jobs.zip",
        [
            ("jobs/", b""),
            ("jobs/job_a/job_a.job", job),
            ("jobs/job_a/dws_sql.script", script),
            ("jobs/empty_dir/", b""),
        ],
    )
    dest = tmp_path / "dest"
    written = extract_archive(zip_path, dest)
    assert written == ["jobs/job_a/dws_sql.script", "jobs/job_a/job_a.job"]
    assert (dest / "jobs/job_a/job_a.job").read_bytes() == job
    assert (dest / "jobs/job_a/dws_sql.script").read_bytes() == script
    assert (dest / "jobs/empty_dir").is_dir()


def test_stored_and_empty_files(tmp_path: Path) -> None:
    zip_path = make_zip(
        tmp_path / "jobs.zip", [("a.job", b"x" * 100), ("b.job", b"")], zipfile.ZIP_STORED
    )
    assert extract_archive(zip_path, tmp_path / "dest") == ["a.job", "b.job"]
    assert (tmp_path / "dest/b.job").read_bytes() == b""


def test_existing_empty_dest_is_fine(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "jobs.zip", [("a.job", b"1")])
    (tmp_path / "dest").mkdir()
    assert extract_archive(zip_path, tmp_path / "dest") == ["a.job"]


def test_non_empty_dest_is_refused(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "jobs.zip", [("a.job", b"1")])
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest/old").write_text("keep me")
    with pytest.raises(ArchiveError, match="not an empty directory"):
        extract_archive(zip_path, tmp_path / "dest")
    assert (tmp_path / "dest/old").read_text() == "keep me"


def test_chinese_names_with_utf8_flag(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "jobs.zip", [("jobs/作业_1/作业_1.job", "内容".encode())])
    with zipfile.ZipFile(zip_path) as zf:
        assert zf.infolist()[0].flag_bits & 0x800
    assert extract_archive(zip_path, tmp_path / "dest") == ["jobs/作业_1/作业_1.job"]
    assert (tmp_path / "dest/jobs/作业_1/作业_1.job").read_text() == "内容"


@pytest.mark.parametrize(
    ("encoding", "name"),
    [
        ("utf-8", "作业"),
        ("gbk", "作业"),
        # 𠀀 (U+20000) and € need GB18030's four-byte sequences, which GBK cannot decode.
        ("gb18030", "作业\U00020000€"),
    ],
)
def test_chinese_names_without_utf8_flag(tmp_path: Path, encoding: str, name: str) -> None:
    # Write an ASCII placeholder of the same byte length, then swap in the raw name bytes:
    # the UTF-8 flag stays clear, as from a server that does not set it.
    raw = name.encode(encoding)
    placeholder = b"X" * len(raw)
    zip_path = make_zip(
        tmp_path / "jobs.zip",
        [(f"jobs/{placeholder.decode()}/{placeholder.decode()}.job", b"payload")],
    )
    replace_bytes(zip_path, placeholder, raw, expected=4)
    with zipfile.ZipFile(zip_path) as zf:
        assert not zf.infolist()[0].flag_bits & 0x800
    assert extract_archive(zip_path, tmp_path / "dest") == [f"jobs/{name}/{name}.job"]
    assert (tmp_path / f"dest/jobs/{name}/{name}.job").read_bytes() == b"payload"
    assert dict(read_archive(zip_path)) == {f"jobs/{name}/{name}.job": b"payload"}


def test_undecodable_unflagged_name_kept_as_cp437(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "jobs.zip", [("XX.job", b"1")])
    replace_bytes(zip_path, b"XX", b"\xff\xff")  # neither UTF-8 nor GBK
    assert extract_archive(zip_path, tmp_path / "dest") == ["\xa0\xa0.job"]


def test_plain_unix_modes_are_accepted(tmp_path: Path) -> None:
    info = zipfile.ZipInfo("run.job")
    info.create_system = 3
    info.external_attr = (stat.S_IFREG | 0o755) << 16
    zip_path = make_zip(tmp_path / "jobs.zip", [(info, b"1")])
    assert extract_archive(zip_path, tmp_path / "dest") == ["run.job"]
    # The archive's mode is not copied: no execute bit from an untrusted source.
    assert not (tmp_path / "dest/run.job").stat().st_mode & 0o111


# --- path tricks ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("../evil", r"'\.\.' path segment"),
        ("a/../../evil", r"'\.\.' path segment"),
        ("/etc/x", "absolute path"),
        ("C:/x", "drive letter"),
        ("a\\b", "backslash"),
        ("a//b", "empty path segment"),
        ("./a", r"'\.' path segment"),
        ("a/\x01b", "control character"),
        ("a/\x85b", "control character"),
        (".git/config", r"'\.git' path segment"),
        ("jobs/.GIT/hooks/post-checkout", r"'\.git' path segment"),
        ("a/" + "x" * 256, "longer than 255 bytes"),
        ("作" * 86, "longer than 255 bytes"),  # 258 bytes in UTF-8
        ("/".join(["y" * 200] * 21), "longer than 4096 bytes"),
    ],
)
def test_unsafe_names_are_refused(tmp_path: Path, name: str, match: str) -> None:
    zip_path = make_zip(tmp_path / "jobs.zip", [("ok.job", b"fine"), (name, b"evil")])
    # read_archive takes names as data (the layout maps them): only path tricks are refused.
    path_trick = any(part in ("", ".", "..") for part in name.split("/")) or name[0] == "/"
    error = assert_refused(tmp_path, zip_path, match, read=path_trick)
    assert not (tmp_path.parent / "evil").exists()
    assert str(error).count("entry") == 1


def test_nul_in_name_is_refused(tmp_path: Path) -> None:
    # zipfile cuts .filename at a NUL; the check must look at the raw name.
    zip_path = make_zip(tmp_path / "jobs.zip", [("aXb.job", b"1")])
    replace_bytes(zip_path, b"aXb", b"a\x00b")
    error = assert_refused(tmp_path, zip_path, "control character")
    assert r"'a\x00b.job'" in str(error)


def test_utf8_flag_on_invalid_utf8_name_is_refused(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "jobs.zip", [("XX.job", b"1")])
    replace_bytes(zip_path, b"XX", b"\xff\xfe")
    patch_central(zip_path, 0, 8, "<H", 0x800)
    assert_refused(tmp_path, zip_path, "flagged UTF-8 but is not UTF-8")


def test_long_names_are_shortened_in_messages(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "jobs.zip", [("../" + "z" * 5000, b"1")])
    error = assert_refused(tmp_path, zip_path, "longer than 4096 bytes")
    assert len(str(error)) < 400


# --- entry kinds and name clashes -------------------------------------------------------------


def test_symlink_is_refused(tmp_path: Path) -> None:
    info = zipfile.ZipInfo("jobs/link")
    info.create_system = 3
    info.external_attr = 0o120777 << 16
    zip_path = make_zip(tmp_path / "jobs.zip", [(info, b"/etc/passwd")])
    assert_refused(tmp_path, zip_path, "symbolic link")


def test_device_is_refused(tmp_path: Path) -> None:
    info = zipfile.ZipInfo("jobs/fifo")
    info.create_system = 3
    info.external_attr = (stat.S_IFIFO | 0o644) << 16
    zip_path = make_zip(tmp_path / "jobs.zip", [(info, b"")])
    assert_refused(tmp_path, zip_path, "special file")


def test_directory_mode_on_file_name_is_refused(tmp_path: Path) -> None:
    info = zipfile.ZipInfo("jobs/dir")
    info.create_system = 3
    info.external_attr = (stat.S_IFDIR | 0o755) << 16
    zip_path = make_zip(tmp_path / "jobs.zip", [(info, b"")])
    assert_refused(tmp_path, zip_path, "disagrees")


def test_directory_with_data_is_refused(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "jobs.zip", [("jobs/", b"")], zipfile.ZIP_STORED)
    patch_central(zip_path, 0, 24, "<I", 5)  # uncompressed size
    assert_refused(tmp_path, zip_path, "directory entry carries data")


@pytest.mark.parametrize(
    "names",
    [
        ["a.job", "a.job"],
        ["jobs/", "jobs/"],
    ],
)
def test_duplicates_are_refused(tmp_path: Path, names: list[str]) -> None:
    zip_path = make_zip(tmp_path / "jobs.zip", [(name, b"") for name in names])
    assert_refused(tmp_path, zip_path, "duplicate entry")


@pytest.mark.parametrize(
    ("names", "match"),
    [
        (["jobs/a", "jobs/a/b.job"], "is also used as a directory"),
        (["jobs/a/b.job", "jobs/a"], "file has the same name as a directory"),
        (["jobs/a/", "jobs/a"], "file has the same name as a directory"),
        (["jobs/a", "jobs/a/"], "directory has the same name as a file"),
    ],
)
def test_file_directory_clash_is_refused(tmp_path: Path, names: list[str], match: str) -> None:
    zip_path = make_zip(tmp_path / "jobs.zip", [(name, b"") for name in names])
    assert_refused(tmp_path, zip_path, match)


def test_encrypted_entry_is_refused(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "jobs.zip", [("a.job", b"secret")])
    patch_central(zip_path, 0, 8, "<H", 0x1)
    assert_refused(tmp_path, zip_path, "encrypted")


def test_unknown_compression_is_refused(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "jobs.zip", [("a.job", b"data")])
    patch_central(zip_path, 0, 10, "<H", 99)  # AES / unknown method
    assert_refused(tmp_path, zip_path, "unsupported compression method 99")


# --- sizes and bombs --------------------------------------------------------------------------


def test_too_many_entries(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "jobs.zip", [(f"{index}.job", b"") for index in range(4)])
    assert_refused(
        tmp_path, zip_path, "4 entries, more than the limit of 3", ArchiveLimits(max_entries=3)
    )


def test_oversize_declared_entry(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "jobs.zip", [("big.job", b"x" * 11)])
    assert_refused(
        tmp_path, zip_path, "declared size 11 exceeds", ArchiveLimits(max_entry_bytes=10)
    )


def test_total_size_limit(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "jobs.zip", [(f"{index}.job", b"x" * 10) for index in range(3)])
    assert_refused(tmp_path, zip_path, "more than 25 bytes", ArchiveLimits(max_total_bytes=25))


def test_zip_bomb_ratio(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "jobs.zip", [("bomb.job", bytes(10 * 1024**2))])
    assert_refused(tmp_path, zip_path, "compression ratio above 100", ArchiveLimits(max_ratio=100))


def test_default_limits_allow_ordinary_compressible_files(tmp_path: Path) -> None:
    data = b'{"name": "job", "nodes": [{"type": "DWSSQL"}]}\n' * 50_000  # ~2.4 MB of JSON
    zip_path = make_zip(tmp_path / "jobs.zip", [("big.job", data)])
    assert extract_archive(zip_path, tmp_path / "dest") == ["big.job"]
    assert (tmp_path / "dest/big.job").read_bytes() == data


def test_overlapping_entries_are_refused(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "jobs.zip", [("a.job", b"a" * 100), ("b.job", b"b" * 100)])
    patch_central(zip_path, 1, 42, "<I", 0)  # b's data "starts" at a's header
    assert_refused(tmp_path, zip_path, "overlaps")


# --- lying or broken data (phase 2: something was written, must be removed) -------------------


def test_lying_header_smaller_than_data(tmp_path: Path) -> None:
    real = b"0123456789" * 1000
    zip_path = make_zip(tmp_path / "jobs.zip", [("ok.job", b"fine"), ("liar.job", real)])
    patch_central(zip_path, 1, 24, "<I", 100)  # declared uncompressed size
    with zipfile.ZipFile(zip_path) as zf:
        assert zf.getinfo("liar.job").file_size == 100
    assert_refused(tmp_path, zip_path, "CRC mismatch")


def test_lying_header_larger_than_data(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "jobs.zip", [("ok.job", b"fine"), ("liar.job", b"short")])
    patch_central(zip_path, 1, 24, "<I", 500)
    assert_refused(tmp_path, zip_path, "less data than the header declares")


def test_a_header_declaring_nothing_over_a_deflated_bomb(tmp_path: Path) -> None:
    # zlib reads a limit of 0 as none: an entry said to be empty must not inflate at all.
    zip_path = make_zip(tmp_path / "jobs.zip", [("ok.job", b"fine"), ("bomb.job", b"0" * 10**6)])
    patch_central(zip_path, 1, 24, "<I", 0)
    assert_refused(tmp_path, zip_path, "bomb.job")


def test_lying_stored_sizes(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "jobs.zip", [("liar.job", b"x" * 50)], zipfile.ZIP_STORED)
    patch_central(zip_path, 0, 24, "<I", 10)
    assert_refused(tmp_path, zip_path, "stored entry with two different sizes")


def test_bad_crc(tmp_path: Path) -> None:
    payload = b"payload-to-corrupt" * 10
    zip_path = make_zip(
        tmp_path / "jobs.zip", [("ok.job", b"fine"), ("bad.job", payload)], zipfile.ZIP_STORED
    )
    data = bytearray(zip_path.read_bytes())
    data[data.index(payload)] ^= 0xFF
    zip_path.write_bytes(bytes(data))
    assert_refused(tmp_path, zip_path, "CRC mismatch")


def test_corrupt_deflate_stream(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "jobs.zip", [("ok.job", b"fine"), ("bad.job", b"z" * 1000)])
    data = bytearray(zip_path.read_bytes())
    with zipfile.ZipFile(zip_path) as zf:
        info = zf.getinfo("bad.job")
    start = info.header_offset + 30 + len(b"bad.job")
    data[start : start + info.compress_size] = b"\xff" * info.compress_size
    zip_path.write_bytes(bytes(data))
    assert_refused(tmp_path, zip_path, "bad.job")


def test_local_header_name_mismatch(tmp_path: Path) -> None:
    zip_path = make_zip(
        tmp_path / "jobs.zip", [("ok.job", b"fine"), ("b.job", b"1")], zipfile.ZIP_STORED
    )
    data = bytearray(zip_path.read_bytes())
    local = data.index(LOCAL_SIG, data.index(b"fine"))  # second local header
    data[local + 30 : local + 31] = b"c"
    zip_path.write_bytes(bytes(data))
    assert_refused(tmp_path, zip_path, "corrupt entry")


def test_truncated_zip(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "jobs.zip", [("a.job", b"a" * 1000), ("b.job", b"b" * 1000)])
    data = zip_path.read_bytes()
    zip_path.write_bytes(data[: len(data) // 2])
    assert_refused(tmp_path, zip_path, "not a zip archive or truncated")


def test_not_a_zip(tmp_path: Path) -> None:
    zip_path = tmp_path / "jobs.zip"
    zip_path.write_bytes(b'{"error_code": "DLF.3051", "error_msg": "invalid"}')
    assert_refused(tmp_path, zip_path, "not a zip archive or truncated")


def test_missing_archive(tmp_path: Path) -> None:
    with pytest.raises(ArchiveError, match="cannot read archive"):
        extract_archive(tmp_path / "nope.zip", tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_disk_full_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_open = open

    class FullFile:
        def __init__(self, path: Path, mode: str) -> None:
            self._file = real_open(path, mode)

        def __enter__(self) -> FullFile:
            return self

        def __exit__(self, *exc: Any) -> None:
            self._file.close()

        def write(self, data: bytes) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

    zip_path = make_zip(tmp_path / "jobs.zip", [("jobs/a.job", b"x" * 100)])
    monkeypatch.setattr(archive, "open", FullFile, raising=False)
    error = assert_refused(tmp_path, zip_path, "disk full while unpacking 'jobs/a.job'", read=False)
    assert isinstance(error.__cause__, OSError)


def test_read_archive_yields_checked_entries_without_writing(tmp_path: Path) -> None:
    entries = {"jobs/a/a.job": b'{"name":"a"}', "jobs/作业/作业.job": "中文".encode()}
    zip_path = tmp_path / "ok.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    before = set(tmp_path.iterdir())
    assert dict(read_archive(zip_path)) == entries
    assert set(tmp_path.iterdir()) == before


def test_read_archive_rejects_hostile_names_before_yielding_anything(tmp_path: Path) -> None:
    zip_path = tmp_path / "evil.zip"
    with zipfile.ZipFile(zip_path, "w") as archive:
        archive.writestr("jobs/a/a.job", b"{}")
        archive.writestr("../evil", b"x")
    reader = read_archive(zip_path)
    with pytest.raises(ArchiveError, match="evil"):
        next(reader)


def test_read_archive_reports_a_bad_crc(tmp_path: Path) -> None:
    zip_path = tmp_path / "crc.zip"
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("jobs/a/a.job", b"0123456789" * 10)
    data = bytearray(zip_path.read_bytes())
    position = data.index(b"0123456789")
    data[position] ^= 0xFF
    zip_path.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="CRC"):
        list(read_archive(zip_path))


@pytest.mark.parametrize(
    "name",
    [
        "jobs/" + "作" * 128 + "/" + "作" * 128 + ".job",  # 384-byte segments
        "jobs/back\\slash/back\\slash.job",
        "jobs/tab\there/tab\there.job",
        "jobs/.git/.git.job",
        "jobs/x/.GIT",
    ],
)
def test_read_archive_takes_names_as_data_where_extract_refuses_them(
    tmp_path: Path, name: str
) -> None:
    # DataArts names may be this long or hold these characters (dlf-api.md §12); nothing is
    # written to disk under them by read_archive, so they are part of the name, not a path.
    zip_path = make_zip(tmp_path / "jobs.zip", [(name, b"data")])
    assert dict(read_archive(zip_path)) == {name: b"data"}
    with pytest.raises(ArchiveError):
        extract_archive(zip_path, tmp_path / "dest")


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("../evil", r"'\.\.' path segment"),
        ("jobs/a/../../evil", r"'\.\.' path segment"),
        ("/etc/x", "absolute path"),
        ("jobs//b", "empty path segment"),
        ("./a", r"'\.' path segment"),
    ],
)
def test_read_archive_still_refuses_path_tricks(tmp_path: Path, name: str, match: str) -> None:
    zip_path = make_zip(tmp_path / "jobs.zip", [("ok.job", b"fine"), (name, b"evil")])
    with pytest.raises(ArchiveError, match=match):
        list(read_archive(zip_path))


def test_read_archive_refuses_a_nul_in_a_name(tmp_path: Path) -> None:
    zip_path = make_zip(tmp_path / "jobs.zip", [("aXb.job", b"1")])
    replace_bytes(zip_path, b"aXb", b"a\x00b")
    with pytest.raises(ArchiveError, match="control character"):
        list(read_archive(zip_path))
