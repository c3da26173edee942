r"""How DataArts names become file and folder names in this repository.

Every job, script and resource name from DataArts Studio becomes a file or folder name
here (`jobs/<job>/<job>.job`, `scripts/<script>.script`, …) through this one mapping,
so that the repository can be cloned on Linux, macOS and Windows alike.

Most names are used exactly as they are. A name that some system cannot store, or that
two systems would read differently, is stored under an *encoded* name instead: the
beginning of the name (characters that cannot be used replaced by `_`), then `~` and ten
hexadecimal characters (the start of the SHA-256 of the exact name). The exact DataArts
name is never lost: it is inside the stored file (its `name` field) and in
`.backupd/index.json`, and `backupd restore` puts the exact names back into the zip it
builds.

A name is encoded when it

- is longer than 200 bytes in UTF-8 (about 66 Chinese characters): file names are limited
  to 255 bytes, and a suffix such as `.script` or `.resource` still has to fit;
- holds a character that Windows forbids (`\ / : * ? " < > |`), a control or invisible
  formatting character (tab, newline, zero-width space, direction marks, …), or `~`
  (kept for encoded names, and for the short names Windows invents, like `PROGRA~1`);
- starts or ends with a space, or ends with a dot (Windows drops them);
- is empty, `.` or `..`;
- is a Windows device name, in any case and with any extension: `CON`, `PRN`, `AUX`,
  `NUL`, `COM0`-`COM9`, `LPT0`-`LPT9` (also with `¹ ² ³`), `CONIN$`,
  `CONOUT$`, so also `aux.daily` or `nul.sql`;
- is not in Unicode NFC form (macOS would store it differently from how git records it);
- starts with `.git` or `.backupd` (names that git or backupd give a meaning to).

Names that differ only in upper/lower case or in Unicode normalisation (`Daily_Orders`
and `daily_orders`) are one name on macOS and Windows. When one folder holds several of
them, one keeps its name and the others are encoded. Which one keeps it: the name that had
it in the previous snapshot, so a path once given never moves while its job exists; among
names new to the folder, an all-lowercase one, else the first in Unicode order. The
trade-off: the layout then depends on the order in which names appeared, not only on the
names a folder holds now, so backupd reads a name's path from the stored files rather than
working it out again; in exchange a file never moves in git history because a namesake
appeared or vanished. A name encoded for such a clash stays encoded while it exists.

Examples (`~…` stands for the ten hexadecimal characters):

| DataArts name                          | file or folder name              |
|----------------------------------------|----------------------------------|
| `daily_orders`                         | `daily_orders`                   |
| `Daily_Orders` (beside `daily_orders`) | `Daily_Orders~…`                 |
| `it's job #3 (50% + x)`                | `it's job #3 (50% + x)`          |
| `say "hi"`                             | `say _hi_~…`                     |
| `CON`, `nul.sql`                       | `CON~…`, `_nul.sql~…`            |
| `trailing.`                            | `trailing.~…`                    |
| `a\b`, `tab<TAB>name`                 | `a_b~…`, `tab_name~…`            |
| `.git`, `..`, the empty name           | `_git~…`, `_.~…`, `_~…`          |
| 128 Chinese characters                 | the first 63 of them, then `~…`  |
| `café` with a combining accent         | `café~…` (the accent composed)   |

On Windows, long names can still make a whole path longer than 260 characters: set
`git config --global core.longpaths true` before cloning.

For developers: pure functions, no I/O. `folder_components` maps the names of one
folder; `component` is its answer for a name alone (what it gives inside a folder can
differ: see above); `candidates` lists every name it can ever give. `portability_problems`
checks a whole tree.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import defaultdict
from collections.abc import Iterable, Mapping

MAX_COMPONENT_BYTES = 255  # a file or folder name: NAME_MAX on Linux, APFS, NTFS
MAX_STEM_BYTES = 200  # what component() ever returns: room for the longest suffix
MAX_SUFFIX_BYTES = MAX_COMPONENT_BYTES - MAX_STEM_BYTES  # ".script", ".resource", ".sql", …
MARKER = "~"
HASH_CHARS = 10  # 40 bits: a clash in one folder is resolved with the whole digest
LONG_HASH_CHARS = 64

_FORBIDDEN = frozenset('\\/:*?"<>|')  # by Windows; "/" everywhere
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
_DEVICES = frozenset(
    {"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
    | {f"{port}{digit}" for port in ("COM", "LPT") for digit in "0123456789¹²³"}
)
_RESERVED_PREFIXES = (".git", ".backupd")  # compared by collision_key
_ENCODED = re.compile(rf"[^{MARKER}]*{MARKER}(?:[0-9a-f]{{{HASH_CHARS}}}|[0-9a-f]{{64}})")


# --- one name --------------------------------------------------------------------------------


def component(name: str) -> str:
    """The file or folder name for `name` when no other name shares its folder."""
    return name if _readable(name) else _encode(name, HASH_CHARS)


def encoded(name: str) -> str:
    """The encoded form of `name` (what a clash gives a name that is usable as it is)."""
    return _encode(name, HASH_CHARS)


def candidates(name: str) -> tuple[str, ...]:
    """Every file or folder name `name` can have been stored under, most likely first: the
    name as it is (also what backupd before this mapping used), its encoded forms (the
    short one, and the long one that separates clashing short ones). For finding a name in
    history when no index says where it was; each encoded form belongs to this name only.
    """
    return tuple(
        dict.fromkeys(
            (component(name), name, _encode(name, HASH_CHARS), _encode(name, LONG_HASH_CHARS))
        )
    )


def looks_encoded(component: str) -> bool:
    """Whether `component` has the shape of an encoded name (no verbatim name has it)."""
    return _ENCODED.fullmatch(component) is not None


def is_component_of(component: str, name: str) -> bool:
    """Whether `component` can stand for `name`: the name itself when that is usable as
    is, or an encoded form carrying the name's digest (whatever its readable beginning)."""
    if component == name:
        return _readable(name)
    if not looks_encoded(component) or _size(component) > MAX_STEM_BYTES:
        return False
    digest = component.rpartition(MARKER)[2]
    return _digest(name).startswith(digest) and is_portable(component)


def is_portable(component: str) -> bool:
    """Whether `component` is a file or folder name that Linux, macOS and Windows all
    store as it is (it says nothing about clashes with other names of its folder)."""
    return _problem(component) is None


def collision_key(name: str) -> str:
    """Names with equal keys are one name on macOS or Windows (case, Unicode normalisation).

    Canonical caseless matching (casefold of the decomposed form), made coarser by upper
    casing once more, so that also the simple case mappings of Windows' upcase table (like
    dotless i, U+0131, → `I`) fall together.
    """
    if name.isascii():  # the same key, without four normalisations (most names are ASCII)
        return name.lower()
    caseless = unicodedata.normalize("NFD", unicodedata.normalize("NFD", name).casefold())
    return unicodedata.normalize("NFC", unicodedata.normalize("NFD", caseless.upper()).casefold())


# --- one folder ------------------------------------------------------------------------------


def folder_components(
    names: Iterable[str], previous: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Name → file or folder name for all the names of one folder, no two of them one name
    on macOS or Windows (equal `collision_key`).

    `previous`: name → path component of the names stored in the folder before (read
    from the stored tree or index). A name keeps its component while that is still valid
    for it, so paths do not move; without it, the result depends on `names` alone. In
    both cases it does not depend on the order of `names`.
    """
    plain = _as_they_are(names, previous or {})
    if plain is not None:
        return plain
    before = {
        name: value
        for name, value in (previous or {}).items()
        if is_component_of(value, name)  # anything else (stale, foreign) is ignored
    }
    result: dict[str, str] = {}
    readable: defaultdict[str, list[str]] = defaultdict(list)
    for name in sorted(set(names)):
        if _readable(name):
            readable[collision_key(name)].append(name)
        else:
            result[name] = before.get(name) or _encode(name, HASH_CHARS)
    for group in readable.values():
        keeper = _keeper(group, before)
        for name in group:
            if name == keeper:
                result[name] = name
            else:
                kept = before.get(name)
                result[name] = kept if kept and kept != name else _encode(name, HASH_CHARS)
    _separate_encoded(result, before)
    return dict(sorted(result.items()))


def _as_they_are(names: Iterable[str], previous: Mapping[str, str]) -> dict[str, str] | None:
    """``folder_components`` of the usual folder, worked out in one pass: every name
    readable, none stored under another component, no two one name on macOS or Windows.
    Each then keeps its name (None: not such a folder)."""
    result: dict[str, str] = {}
    keys: set[str] = set()
    for name in sorted(set(names)):
        if previous.get(name, name) != name or not _readable(name):
            return None
        keys.add(collision_key(name))
        result[name] = name
    return result if len(keys) == len(result) else None


def _keeper(group: list[str], before: Mapping[str, str]) -> str | None:
    """The name of a clashing `group` that is stored as it is, if any: the one that was,
    else the preferred one of those new to the folder (a name encoded before stays so)."""
    had_it = [name for name in group if before.get(name) == name]
    if had_it:
        return min(had_it, key=_preference)
    new = [name for name in group if name not in before]
    return min(new, key=_preference) if new else None


def _preference(name: str) -> tuple[bool, str]:
    return (name != name.lower(), name)


def _separate_encoded(result: dict[str, str], before: Mapping[str, str]) -> None:
    """Give the whole digest to encoded names whose short forms clash (1 in 10^12 pairs).

    Encoded names never clash with names stored as they are: only encoded names hold `~`
    (and no character's case or normal form is a `~`).
    """
    clashes: defaultdict[str, list[str]] = defaultdict(list)
    for name, value in result.items():
        if value != name:
            clashes[collision_key(value)].append(name)
    for group in clashes.values():
        if len(group) < 2:
            continue
        old = [name for name in group if before.get(name) == result[name]]
        moving = [name for name in group if name not in old] if len(old) == 1 else group
        for name in moving:
            result[name] = _encode(name, LONG_HASH_CHARS)
    keys = [collision_key(value) for value in result.values()]
    if len(set(keys)) != len(keys):  # two names with one SHA-256: not in this universe
        raise ValueError("two names of one folder map to one path")


# --- checking a tree -------------------------------------------------------------------------


def portability_problems(paths: Iterable[str]) -> list[str]:
    """What keeps the tree of `paths` (POSIX, relative) from a faithful checkout on Linux,
    macOS or Windows, one line each, sorted; empty when nothing does."""
    problems: set[str] = set()
    children: defaultdict[str, defaultdict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    files: set[str] = set()
    folders: set[str] = set()
    for path in paths:
        parts = path.split("/")
        for depth, part in enumerate(parts):
            here = "/".join(parts[: depth + 1])
            kind = files if depth == len(parts) - 1 else folders
            if here in kind:  # a folder of many files: checked once
                continue
            kind.add(here)
            problem = _problem(part)
            if problem is not None:
                problems.add(f"{_shown(here)}: {problem}")
            children["/".join(parts[:depth])][collision_key(part)].add(part)
    for both in files & folders:
        problems.add(f"{_shown(both)}: both a file and a folder")
    for folder, by_key in children.items():
        for names in by_key.values():
            if len(names) > 1:
                shown = [repr(name) for name in sorted(names)]
                if len(set(shown)) < len(shown):  # look-alikes (NFC and NFD): show the codes
                    shown = [ascii(name) for name in sorted(names)]
                listed = ", ".join(shown)
                problems.add(
                    f"{_shown(folder) if folder else '.'}: {listed} are one name on macOS "
                    "and Windows (case or Unicode normalisation)"
                )
    return sorted(problems)


def _shown(path: str) -> str:
    if not path.isprintable():
        return repr(path)
    return path if unicodedata.is_normalized("NFC", path) else ascii(path)


# --- rules -----------------------------------------------------------------------------------


def _problem(component: str) -> str | None:
    """Why `component` is not a portable file or folder name, or None."""
    if component in ("", ".", ".."):
        return f"{component!r} is not a file name"
    char = _first_unfit(component)
    if char is not None:
        if char in _FORBIDDEN:
            return f"holds {char!r}, which Windows does not allow"
        return f"holds the control or invisible character U+{ord(char):04X}"
    if _size(component) > MAX_COMPONENT_BYTES:
        return f"longer than {MAX_COMPONENT_BYTES} bytes"
    if component[-1] == "." or component[-1].isspace():
        return "ends with a dot or space, which Windows drops"
    if component[0].isspace():
        return "starts with a space"
    if _is_device(component):
        return "a Windows device name"
    if not unicodedata.is_normalized("NFC", component):
        return "not in Unicode NFC form, which macOS changes"
    if collision_key(component) == ".git":
        return "git does not allow '.git' in a tree"
    return None


# The ASCII characters of _FORBIDDEN and of _INVISIBLE_CATEGORIES (the controls).
_ASCII_UNFIT = re.compile(r'[\\/:*?"<>|\x00-\x1f\x7f]')


def _first_unfit(component: str) -> str | None:
    """The first character of ``component`` that Windows forbids or that is invisible."""
    if component.isascii():  # most names: one search, not a category lookup a character
        found = _ASCII_UNFIT.search(component)
        return None if found is None else found.group()
    for char in component:
        if char in _FORBIDDEN or unicodedata.category(char) in _INVISIBLE_CATEGORIES:
            return char
    return None


def _readable(name: str) -> bool:
    """Whether `name` is stored as it is (when no namesake takes that name)."""
    return (
        MARKER not in name
        and _problem(name) is None
        and _size(name) <= MAX_STEM_BYTES
        and not collision_key(name).startswith(_RESERVED_PREFIXES)
    )


def _is_device(component: str) -> bool:
    # Windows takes "NUL.sql", "nul .txt" and "COM1.a.b" for devices: the part before the
    # first dot, without trailing spaces, decides.
    return component.split(".", 1)[0].rstrip().upper() in _DEVICES


def _size(text: str) -> int:
    """The larger of UTF-8 bytes (Linux, APFS) and UTF-16 units once decomposed (HFS+, which
    stores names decomposed; NTFS counts UTF-16 units too)."""
    if text.isascii():  # one byte and one unit a character, decomposed or not
        return len(text)
    utf8 = len(text.encode("utf-8", "surrogatepass"))
    decomposed = unicodedata.normalize("NFD", text).encode("utf-16-le", "surrogatepass")
    return max(utf8, len(decomposed) // 2)


def _digest(name: str) -> str:
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()


def _encode(name: str, hash_chars: int) -> str:
    tail = MARKER + _digest(name)[:hash_chars]
    budget = MAX_STEM_BYTES - len(tail)
    chars = [
        "_"
        if char in _FORBIDDEN
        or char == MARKER
        or unicodedata.category(char) in _INVISIBLE_CATEGORIES
        else char
        for char in unicodedata.normalize("NFC", name)
    ]
    if chars and (chars[0] == "." or chars[0].isspace()):
        chars[0] = "_"  # no hidden file, no ".git…", no leading space
    prefix = _truncate("".join(chars), budget)
    if not prefix or _is_device(prefix + tail):
        prefix = "_" + _truncate(prefix, budget - 1)
    return prefix + tail


def _truncate(text: str, budget: int) -> str:
    """The longest start of NFC `text` whose _size is within `budget` (whole characters)."""
    end = len(text)
    while (over := _size(text[:end]) - budget) > 0:
        # No character counts for more than 6 (3 UTF-16 pairs once decomposed): cutting
        # over/6 of them never cuts too many, and a long name takes a step or two.
        end -= max(1, over // 6)
    prefix = unicodedata.normalize("NFC", text[:end])
    while _size(prefix) > budget:  # composing again lengthened it (next to never)
        prefix = unicodedata.normalize("NFC", prefix[:-1])
    return prefix
