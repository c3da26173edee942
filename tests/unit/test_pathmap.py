"""The name → path mapping: every DataArts name gets a path that Linux, macOS and Windows
store as it is, readable names stay as they are, and a path once given does not move."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
import sys
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from backupd.store.pathmap import (
    MAX_COMPONENT_BYTES,
    MAX_STEM_BYTES,
    collision_key,
    component,
    folder_components,
    is_component_of,
    is_portable,
    looks_encoded,
    portability_problems,
)

# Every suffix the tree appends to a component (stems of .job/.script/.resource files and
# the readable views of scripts).
SUFFIXES = (".job", ".script", ".resource", ".sql", ".sh", ".py", ".json")
LONGEST_SUFFIX = max(len(s) for s in SUFFIXES)

# No example database (no .hypothesis folder in the work tree); no deadline on a busy CI box.
PROPERTIES = settings(database=None, deadline=None, max_examples=200)

CJK_128 = "".join(chr(0x4E00 + i * 7) for i in range(128))  # 384 bytes in UTF-8


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:10]


def _utf8(text: str) -> int:
    return len(text.encode("utf-8"))


def _assert_encoded(name: str) -> str:
    got = component(name)
    assert got != name
    assert looks_encoded(got)
    assert got.endswith("~" + _digest(name))
    assert is_portable(got)
    assert is_component_of(got, name)
    assert _utf8(got) <= MAX_STEM_BYTES
    return got


def _assert_readable(name: str) -> None:
    assert component(name) == name
    assert not looks_encoded(name)
    assert is_portable(name)
    assert folder_components([name]) == {name: name}


# --- examples per kind of name ------------------------------------------------------------------


def test_the_encoding_is_pinned() -> None:
    """Changing these moves files in every existing backup repository."""
    assert component("CON") == "CON~a3dbc4b644"
    assert component("nul.sql") == "_nul.sql~0fba3a126b"
    assert component("") == "_~e3b0c44298"
    assert component(CJK_128) == CJK_128[:63] + "~" + _digest(CJK_128)


@pytest.mark.parametrize(
    "name",
    [
        "daily_orders",
        "Daily_Orders",
        "job-1.v2",
        "a",
        ".hidden",
        "git",
        "x.git",
        "etl job with spaces",
        "it's",
        "report #3",
        "a+b",
        "50%",
        "(x) [y] {z} & = @ ! , ; $ ^ `",
        "中文作业",
        "日次_売上",
        "café",  # NFC
        "Straße",
        "x\u00a0y",  # a no-break space inside
        "CONSOLE",
        "auxiliary",
        "nul_",
        "COM10",
        "LPT",
        "xcon",
        "con_job.sql",
        "a" * MAX_STEM_BYTES,
        "中" * 66,  # 198 bytes
    ],
)
def test_names_usable_everywhere_stay_as_they_are(name: str) -> None:
    _assert_readable(name)


def test_long_chinese_name_keeps_a_readable_beginning() -> None:
    got = _assert_encoded(CJK_128)
    assert got.startswith(CJK_128[:63])
    assert _utf8(got) + LONGEST_SUFFIX <= MAX_COMPONENT_BYTES
    _assert_encoded("中" * 67)  # 201 bytes
    _assert_encoded("a" * (MAX_STEM_BYTES + 1))
    _assert_encoded("a" * 300)
    _assert_encoded("é" * 101)  # 202 bytes


def test_long_names_differing_only_at_the_end_stay_apart() -> None:
    names = [CJK_128[:-1] + tail for tail in "一二三四"]
    got = folder_components(names)
    assert len({collision_key(c) for c in got.values()}) == 4
    assert len({c.rpartition("~")[0] for c in got.values()}) == 1  # same readable beginning


@pytest.mark.parametrize("device", ["CON", "PRN", "AUX", "NUL", "COM", "LPT"])
def test_windows_device_names_are_encoded_in_any_case_and_with_any_extension(device: str) -> None:
    stems = [device] if device not in ("COM", "LPT") else [f"{device}{d}" for d in "0123456789¹²³"]
    for stem in stems:
        for spelling in (stem, stem.lower(), stem.capitalize()):
            for name in (spelling, f"{spelling}.sql", f"{spelling}.daily", f"{spelling}.tar.gz"):
                got = _assert_encoded(name)
                assert got.split(".")[0].rstrip().upper() != stem  # not a device itself
    for name in ("CONIN$", "conout$", "CONIN$.x", "aux .txt", "com1 .sql"):
        _assert_encoded(name)


@pytest.mark.parametrize(
    "name", ["trailing.", "trailing..", "trailing ", " leading", "\u3000ideographic", "x\u00a0"]
)
def test_a_leading_space_a_trailing_dot_or_space_is_encoded(name: str) -> None:
    got = _assert_encoded(name)
    assert not got[0].isspace()


@pytest.mark.parametrize("char", [chr(c) for c in [*range(0x20), 0x7F, 0x85, 0x9F]])
def test_control_characters_are_encoded(char: str) -> None:
    got = _assert_encoded(f"a{char}b")
    assert got.startswith("a_b~")


@pytest.mark.parametrize("char", list('\\/:*?"<>|'))
def test_characters_windows_forbids_are_encoded(char: str) -> None:
    got = _assert_encoded(f"x{char}y")
    assert got.startswith("x_y~")


@pytest.mark.parametrize(
    "name",
    ["a\u200bb", "\u202eevil", "x\ufeff", "a\u00adb", "line\u2028sep", "\u200dx"],
)
def test_invisible_characters_are_encoded(name: str) -> None:
    _assert_encoded(name)


def test_a_lone_surrogate_is_encoded_into_valid_utf8() -> None:
    got = _assert_encoded("bad\udc80name")
    got.encode("utf-8")  # strict: git and every file system can take it


@pytest.mark.parametrize("name", ["", ".", ".."])
def test_empty_dot_and_dot_dot_are_encoded(name: str) -> None:
    got = _assert_encoded(name)
    assert not got.startswith(".")


@pytest.mark.parametrize(
    "name",
    [".git", ".GIT", ".Git", ".gitignore", ".gitattributes", ".gitmodules", ".github"],
)
def test_git_names_are_encoded(name: str) -> None:
    got = _assert_encoded(name)
    assert not collision_key(got).startswith(".git")


@pytest.mark.parametrize("name", [".backupd", ".BACKUPD", ".backupd-x"])
def test_backupd_names_are_encoded(name: str) -> None:
    _assert_encoded(name)


@pytest.mark.parametrize(
    "name", ["a~b", "PROGRA~1", "x~0123456789", "~", "x~" + "0" * 64, "DAILYO~1.SQL"]
)
def test_the_marker_is_kept_for_encoded_names(name: str) -> None:
    got = _assert_encoded(name)
    assert got.count("~") == 1


def test_no_verbatim_name_looks_encoded() -> None:
    assert looks_encoded("x~0123456789")
    assert looks_encoded("~" + "a" * 64)
    assert not looks_encoded("x~012345678")  # 9
    assert not looks_encoded("x~01234567890")  # 11
    assert not looks_encoded("x~ABCDEF0123")  # upper case: not ours
    assert not looks_encoded("a~b~0123456789")
    assert component("x~ABCDEF0123") != "x~ABCDEF0123"


def test_names_not_in_nfc_are_encoded_and_kept_apart_from_their_nfc_twin() -> None:
    nfc, nfd = "café", unicodedata.normalize("NFD", "café")
    assert nfc != nfd
    _assert_readable(nfc)
    got = _assert_encoded(nfd)
    assert got.startswith("café~")  # readable: the accent composed
    both = folder_components([nfd, nfc])
    assert both == {nfc: nfc, nfd: got}
    _assert_encoded("\u212b")  # ANGSTROM SIGN: NFC makes it Å
    _assert_encoded("\uf900")  # a CJK compatibility ideograph: NFC changes it


def test_case_pairs_one_keeps_its_name() -> None:
    got = folder_components(["Daily_Orders", "daily_orders"])
    assert got["daily_orders"] == "daily_orders"  # the all-lowercase one
    assert got["Daily_Orders"] == _encoded_form("Daily_Orders")
    got = folder_components(["DAILY_ORDERS", "Daily_Orders"])
    assert got["DAILY_ORDERS"] == "DAILY_ORDERS"  # else the first in Unicode order
    assert looks_encoded(got["Daily_Orders"])


def _encoded_form(name: str) -> str:
    return f"{name}~{_digest(name)}"


@pytest.mark.parametrize(
    "pair",
    [("\u0131", "I"), ("ß", "ss"), ("ẞ", "SS"), ("K", "\u212a"), ("\u03c3", "ς"), ("Å", "\u212b")],
)
def test_names_equal_on_macos_or_windows_share_a_key(pair: tuple[str, str]) -> None:
    left, right = pair
    assert collision_key(left) == collision_key(right)
    got = folder_components(pair)
    assert len({collision_key(c) for c in got.values()}) == 2


@functools.cache
def _assigned() -> list[str]:
    """Every character that can have a case mapping or a decomposition: unassigned,
    private-use and surrogate code points have neither."""
    return [
        chr(code)
        for code in range(sys.maxunicode + 1)
        if unicodedata.category(chr(code)) not in ("Cn", "Co", "Cs")
    ]


def test_no_character_folds_into_the_marker() -> None:
    """What keeps encoded names apart from verbatim ones: only encoded names hold a '~'."""
    for char in _assigned():
        if char != "~":
            assert "~" not in collision_key(char), hex(ord(char))


def test_the_key_covers_the_simple_case_mappings() -> None:
    """Windows compares names by an upper-case table; a case-insensitive APFS folds."""
    for char in _assigned():
        for other in (char.upper(), char.lower()):
            if len(other) == 1:
                assert collision_key(char) == collision_key(other), hex(ord(char))


def test_a_path_once_given_stays_when_a_namesake_appears() -> None:
    first = folder_components(["Daily_Orders"])
    assert first == {"Daily_Orders": "Daily_Orders"}
    later = folder_components(["Daily_Orders", "daily_orders"], previous=first)
    assert later["Daily_Orders"] == "Daily_Orders"  # not moved, though lowercase is preferred
    assert looks_encoded(later["daily_orders"])
    # ... and the encoded one stays encoded when its namesake goes.
    last = folder_components(["daily_orders"], previous=later)
    assert last == {"daily_orders": later["daily_orders"]}
    # Without the history, the folder is laid out from its names alone.
    assert folder_components(["daily_orders"]) == {"daily_orders": "daily_orders"}


def test_previous_paths_that_are_not_valid_for_the_name_are_ignored() -> None:
    previous = {
        "a": "b",  # another name's verbatim form
        "CON": "CON",  # a device: never verbatim
        "x": "x~0123456789",  # not x's digest
        "y": "y/z~" + _digest("y"),  # not portable
    }
    got = folder_components(["a", "CON", "x", "y"], previous=previous)
    assert got == {"CON": component("CON"), "a": "a", "x": "x", "y": "y"}


def test_previous_paths_from_an_older_prefix_rule_are_kept() -> None:
    old = "old-prefix~" + _digest("CON")
    assert is_component_of(old, "CON")
    assert folder_components(["CON"], previous={"CON": old}) == {"CON": old}


def test_a_legacy_tree_with_both_spellings_verbatim_moves_one() -> None:
    previous = {"Daily_Orders": "Daily_Orders", "daily_orders": "daily_orders"}
    got = folder_components(previous, previous=previous)
    assert got["daily_orders"] == "daily_orders"
    assert looks_encoded(got["Daily_Orders"])


def test_clashing_short_digests_get_the_whole_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    from backupd.store import pathmap

    def digest(name: str) -> str:  # every name's first ten hex characters alike
        return "0" * 10 + hashlib.sha256(name.encode()).hexdigest()[10:]

    monkeypatch.setattr(pathmap, "_digest", digest)
    got = folder_components(["a:1", "A:1", "b"])
    assert got["b"] == "b"
    assert len(got["a:1"].rpartition("~")[2]) == 64
    assert len(got["A:1"].rpartition("~")[2]) == 64
    assert collision_key(got["a:1"]) != collision_key(got["A:1"])
    # One of them had its short form before: it keeps it, the newcomer takes the long one.
    short = pathmap._encode("a:1", 10)
    got = folder_components(["a:1", "A:1"], previous={"a:1": short})
    assert got["a:1"] == short
    assert len(got["A:1"].rpartition("~")[2]) == 64
    assert all(looks_encoded(c) and is_portable(c) for c in got.values())


def test_stable_across_processes() -> None:
    """No dependence on hash randomisation (set order) or anything else of one process."""
    names = ["Daily_Orders", "daily_orders", "DAILY_ORDERS", "CON", "中" * 80, "é", "e\u0301"]
    script = (
        "import json, sys; from backupd.store.pathmap import folder_components; "
        "print(json.dumps(folder_components(json.loads(sys.argv[1]))))"
    )
    outputs = set()
    for seed in ("1", "2", "3"):
        result = subprocess.run(
            [sys.executable, "-c", script, json.dumps(names)],
            capture_output=True,
            check=True,
            text=True,
            timeout=60,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )
        outputs.add(result.stdout)
    assert len(outputs) == 1
    assert json.loads(outputs.pop()) == folder_components(names)


# --- properties ---------------------------------------------------------------------------------

_TRICKY = [
    *"aAbBzZ019-_. ~#+%'()",
    *'\\/:*?"<>|',
    "\t",
    "\n",
    "\x00",
    "\x7f",
    "\u0301",  # combining acute
    "é",
    "ß",
    "\u0131",  # dotless i
    "İ",
    "Σ",
    "ς",
    "\u212a",  # KELVIN SIGN
    "\u200b",
    "\u3000",
    "中",
    "文",
    "\U00020000",  # CJK extension B: 4 bytes
    "\u1f82",  # 4 code points once decomposed
    "\udc80",  # lone surrogate
    "¹",
]
_CHARS = st.one_of(st.sampled_from(_TRICKY), st.characters(codec=None))
_SPECIAL = st.sampled_from(
    ["CON", "nul.sql", "aux.daily", "COM¹", "", ".", "..", ".git", ".backupd", CJK_128]
)
NAMES = st.one_of(
    st.text(_CHARS, max_size=24), st.text(_CHARS, min_size=60, max_size=140), _SPECIAL
)


@st.composite
def folders(draw: st.DrawFn) -> list[str]:
    """Names of one folder, with namesakes: case and normalisation variants of some."""
    names = draw(st.lists(NAMES, max_size=12))
    variants = [
        variant
        for name in names[:4]
        for variant in (
            name.upper(),
            name.lower(),
            name.swapcase(),
            unicodedata.normalize("NFD", name),
            unicodedata.normalize("NFC", name),
        )
    ]
    return sorted(set(names + draw(st.lists(st.sampled_from(variants or [""]), max_size=6))))


def _check_folder(names: list[str], got: dict[str, str]) -> None:
    assert set(got) == set(names)
    keys = [collision_key(value) for value in got.values()]
    assert len(set(keys)) == len(keys), got  # injective on macOS and Windows too
    for name, value in got.items():
        assert is_portable(value), (name, value)
        assert is_component_of(value, name)
        assert (value == name) != looks_encoded(value)
        assert _utf8(value) <= MAX_STEM_BYTES
        for suffix in SUFFIXES:
            assert is_portable(value + suffix)
            assert _utf8(value + suffix) <= MAX_COMPONENT_BYTES


@PROPERTIES
@given(folders())
def test_a_folder_maps_injectively_onto_portable_names(names: list[str]) -> None:
    got = folder_components(names)
    _check_folder(names, got)
    assert portability_problems(f"jobs/{value}/{value}.job" for value in got.values()) == []


@PROPERTIES
@given(st.data())
def test_the_layout_does_not_depend_on_the_order_of_names(data: st.DataObject) -> None:
    names = data.draw(folders())
    shuffled = data.draw(st.permutations(names))
    assert list(folder_components(shuffled).items()) == list(folder_components(names).items())
    assert folder_components(names + shuffled) == folder_components(names)


@PROPERTIES
@given(NAMES)
def test_one_name_alone(name: str) -> None:
    got = component(name)
    _check_folder([name], {name: got})
    assert component(name) == got == folder_components([name])[name]
    if got != name:
        assert got.endswith("~" + _digest(name))


_SAFE_FIRST = st.sampled_from([*"abcXYZ019_-#+%'(中文", "é", "Ω"])
_SAFE_INNER = st.sampled_from([*"abcXYZ019_-#+%'()[]{}&=@!,;$. 中文", "é", "Ω", "\u00a0"])


@st.composite
def readable_names(draw: st.DrawFn) -> str:
    """Names that every system stores as they are (by a rule written out for the test)."""
    name: str = draw(_SAFE_FIRST) + draw(st.text(_SAFE_INNER, max_size=70)) + draw(_SAFE_FIRST)
    stem = name.split(".", 1)[0].strip().upper()
    devices = {"CON", "PRN", "AUX", "NUL"} | {
        f"{p}{d}" for p in ("COM", "LPT") for d in "0123456789"
    }
    if _utf8(name) > MAX_STEM_BYTES or stem in devices:
        return "plain"
    return name


@PROPERTIES
@given(st.lists(readable_names(), max_size=10))
def test_readable_names_without_namesakes_are_unchanged(names: list[str]) -> None:
    by_key: dict[str, list[str]] = {}
    for name in names:
        by_key.setdefault(collision_key(name), []).append(name)
    got = folder_components(names)
    for name in names:
        alone = len(set(by_key[collision_key(name)])) == 1
        if alone:
            assert got[name] == name
        assert component(name) == name


@PROPERTIES
@given(folders(), folders())
def test_paths_do_not_move_while_their_names_exist(old: list[str], new: list[str]) -> None:
    before = folder_components(old)
    after = folder_components(old + new, previous=before)
    _check_folder(sorted(set(old + new)), after)
    assert {name: after[name] for name in old} == before  # newcomers never displace a name
    fewer = folder_components(old[::2], previous=after)
    assert fewer == {name: after[name] for name in old[::2]}  # nor does a removal


# --- the tree checker ---------------------------------------------------------------------------


def test_a_backup_tree_passes() -> None:
    paths = [
        "README.md",
        "prod/.backupd/workspaces.json",
        "prod/sales/.backupd/index.json",
        "prod/sales/jobs/daily_orders/daily_orders.job",
        "prod/sales/jobs/daily_orders/load.script",
        "prod/sales/jobs/daily_orders/load.sql",
        "prod/sales/jobs/Daily_Orders~67e5107f11/Daily_Orders~67e5107f11.job",
        f"prod/sales/jobs/{component(CJK_128)}/{component(CJK_128)}.job",
        "prod/sales/scripts/it's #3 (50% + x).script",
        "prod/sales/resources/中文.resource",
        "prod/Sales-2/jobs/daily_orders/daily_orders.job",  # same names in other folders
    ]
    assert portability_problems(paths) == []


@pytest.mark.parametrize(
    ("paths", "expected"),
    [
        (["jobs/" + "a" * 256 + "/x.job"], "longer than 255 bytes"),
        (["jobs/" + "中" * 86 + ".job"], "longer than 255 bytes"),
        (["jobs/Daily/x.job", "jobs/daily/y.job"], "jobs: 'Daily', 'daily' are one name"),
        (["scripts/A.script", "scripts/a.script"], "scripts: 'A.script', 'a.script' are one"),
        (["x/caf\u00e9.job", "x/cafe\u0301.job"], "are one name on macOS and Windows"),
        (["x/cafe\u0301.job"], "not in Unicode NFC form"),
        (["jobs/CON/CON.job"], "jobs/CON: a Windows device name"),
        (["jobs/x/nul.sql"], "jobs/x/nul.sql: a Windows device name"),
        (["jobs/x/Aux.tar.gz"], "a Windows device name"),
        (["jobs/x/COM¹.job"], "a Windows device name"),
        (["jobs/trailing./x.job"], "ends with a dot or space"),
        (["jobs/trailing /x.job"], "ends with a dot or space"),
        (["jobs/ leading/x.job"], "starts with a space"),
        (["jobs/a\\b.job"], "holds '\\\\'"),
        (["jobs/a:b.job"], "holds ':'"),
        (["jobs/a*b.job"], "holds '*'"),
        (["jobs/a?b.job"], "holds '?'"),
        (['jobs/a"b.job'], "holds '\"'"),
        (["jobs/a<b.job"], "holds '<'"),
        (["jobs/a>b.job"], "holds '>'"),
        (["jobs/a|b.job"], "holds '|'"),
        (["jobs/a\tb.job"], "U+0009"),
        (["jobs/a\x7fb.job"], "U+007F"),
        (["jobs/a\u200bb.job"], "U+200B"),
        (["jobs//x.job"], "'' is not a file name"),
        (["/abs/x.job"], "'' is not a file name"),
        (["jobs/./x.job"], "'.' is not a file name"),
        (["jobs/../x.job"], "'..' is not a file name"),
        (["jobs/.git/config"], "git does not allow"),
        (["jobs/.GIT/config"], "git does not allow"),
        (["jobs/x", "jobs/x/y.job"], "jobs/x: both a file and a folder"),
    ],
)
def test_the_tree_checker_names_each_problem(paths: list[str], expected: str) -> None:
    problems = portability_problems(paths)
    assert any(expected in problem for problem in problems), problems
    assert portability_problems([*paths, "README.md"]) == problems  # only the bad ones


def test_the_tree_checker_does_not_mind_namesakes_in_different_folders() -> None:
    assert portability_problems(["a/X.job", "b/x.job", "c/x/X.job"]) == []


def test_is_portable() -> None:
    assert is_portable("daily_orders.job")
    assert is_portable("Daily_Orders~67e5107f11.job")
    assert is_portable(".backupd")  # backupd's own folder; only a job may not be named so
    assert is_portable("a" * 255)
    assert not is_portable("a" * 256)
    assert not is_portable("\u1f82" * 64)  # 192 bytes, but 256 UTF-16 units decomposed
    assert not is_portable("con")
    assert not is_portable("x.")
    assert not is_portable("")
