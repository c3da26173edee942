"""The simulator's field variety (dlf-api.md §12), checked over real HTTP, one variant at a time.

Each variant must answer as its options say: zip layout, member-name encoding, directory
entries, extra files, optional APIs, paging and one-shot glitches. The pipeline's contract
suite relies on these answers; here they are pinned down without the pipeline.
"""

from __future__ import annotations

import dataclasses
import io
import json
import struct
import unicodedata
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from backupd.simulator.server import (
    CAFE_NFC,
    CAFE_NFD,
    DEFAULT_INSTANCE_ID,
    DEFAULT_PROJECT_ID,
    HOSTILE_NAME_CLASSES,
    LONG_CJK_JOB,
    LONG_CJK_JOB_TWIN,
    LONG_CJK_RESOURCE,
    LONG_CJK_SCRIPT,
    VARIANTS,
    CallRecord,
    Glitch,
    Simulator,
    variant,
)

WS = "a1" * 16
V1 = f"/v1/{DEFAULT_PROJECT_ID}"
JOBS = f"{V1}/jobs"
SCRIPTS = f"{V1}/scripts"
RESOURCES = f"{V1}/resources"
INSTANCES = f"{V1}/instances"
WORKSPACES = f"{V1}/workspaces/{DEFAULT_INSTANCE_ID}"
EXPORT = f"{V1}/jobs/batch-export"
UNPUBLISHED = {
    "error_code": "APIG.0101",
    "error_msg": "The API does not exist or has not been published in the environment",
}
INVALID = {"error_code": "DLF.3051", "error_msg": "The request parameter is invalid."}


@contextmanager
def running(sim: Simulator) -> Iterator[httpx.Client]:
    headers = {"X-Auth-Token": sim.token or "", "workspace": WS}
    with sim, httpx.Client(base_url=sim.url, headers=headers, timeout=10) as http:
        yield http


def populated(*names: str, jobs: int = 8, **options: Any) -> Simulator:
    sim = variant(*names, **options)
    sim.add_workspace(WS, "sales")
    sim.populate(WS, jobs, realtime_fraction=0.3, resources=2)
    return sim


def read_encoding(sim: Simulator) -> str | None:
    """The metadata_encoding a reader needs for this simulator's export zips."""
    options = sim.options()
    if options["utf8_flag"]:
        return None
    return "utf-8" if options["name_encoding"] == "utf-8" else "gb18030"


def unzip(data: bytes, encoding: str | None = None) -> list[zipfile.ZipInfo]:
    with zipfile.ZipFile(io.BytesIO(data), metadata_encoding=encoding) as archive:
        return archive.infolist()


def files_of(data: bytes, encoding: str | None = None) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data), metadata_encoding=encoding) as archive:
        return {i.filename: archive.read(i) for i in archive.infolist() if not i.is_dir()}


def raw_central_names(data: bytes) -> list[bytes]:
    """Member names exactly as the central directory stores them (no decoding at all)."""
    names: list[bytes] = []
    position = data.find(b"PK\x01\x02")
    while position >= 0:
        name_length, extra_length, comment_length = struct.unpack(
            "<HHH", data[position + 28 : position + 34]
        )
        names.append(data[position + 46 : position + 46 + name_length])
        position = data.find(b"PK\x01\x02", position + 46 + name_length + extra_length)
        del comment_length
    return names


def export(http: httpx.Client, names: list[str], **body: Any) -> httpx.Response:
    response = http.post(EXPORT, json={"jobList": names, **body})
    assert response.status_code == 200, response.text
    return response


def export_all(http: httpx.Client, sim: Simulator) -> dict[str, bytes]:
    names = sorted(sim.jobs(WS))
    files: dict[str, bytes] = {}
    for start in range(0, len(names), 100):
        data = export(http, names[start : start + 100]).content
        files |= files_of(data, read_encoding(sim))
    return files


def list_names(http: httpx.Client, path: str, key: str, limit: int, **params: Any) -> list[str]:
    """Every name of a list, paging by the simulator's offset mode (page, then record)."""
    first = http.get(path, params={**params, "limit": limit, "offset": 0}).json()
    names = [row["name"] for row in first[key]]
    if len(names) < limit:
        return names
    probe = http.get(path, params={**params, "limit": limit, "offset": 1}).json()[key]
    record = bool(probe) and probe[0]["name"] == names[1]
    offset = limit if record else 1
    while True:
        rows = http.get(path, params={**params, "limit": limit, "offset": offset}).json()[key]
        names += [row["name"] for row in rows]
        if len(rows) < limit:
            return names
        offset += limit if record else 1


def quoted(name: str) -> str:
    return quote(name, safe="")


# ---- defaults and configuration ----------------------------------------------------------------


def test_defaults_are_todays_behaviour() -> None:
    assert Simulator().options() == {
        "offset_mode": "page",
        "max_page_size": 1000,
        "page_size_policy": "reject",
        "layout": "folders",
        "directory_entries": False,
        "utf8_flag": True,
        "name_encoding": "auto",
        "extra_files": False,
        "resources_api": "ok",
        "management_api": "ok",
        "names": "plain",
        "instance_list_key": "commodity_orders",
    }
    assert VARIANTS["folders"].options == {}
    assert VARIANTS["folders"].glitches == ()


@pytest.mark.parametrize(
    "options",
    [
        {"layout": "nested"},
        {"layout": True},
        {"utf8_flag": 1},
        {"max_page_size": 0},
        {"max_page_size": True},
        {"resources_api": "gone"},
        {"name_encoding": "gb18030"},  # the UTF-8 flag is on by default: it would lie
        {"colour": "blue"},
    ],
)
def test_configure_rejects_what_it_cannot_model(options: dict[str, Any]) -> None:
    sim = Simulator()
    with pytest.raises(ValueError):
        sim.configure(**options)
    assert sim.options() == Simulator().options()  # nothing half-applied


def test_constructor_takes_the_same_options() -> None:
    sim = Simulator(layout="flat", utf8_flag=False, page_size_policy="clamp", max_page_size=100)
    assert sim.options()["layout"] == "flat"
    assert sim.options()["name_encoding"] == "auto"
    with pytest.raises(ValueError, match="offset_mode"):
        Simulator(offset_mode="row")  # type: ignore[arg-type]


def test_every_variant_is_one_line_and_applies() -> None:
    assert {"folders", "documented", "flat", "flat-gb18030", "hostile-names"} <= set(VARIANTS)
    assert {"no-resources-api", "forbidden-resources-api", "record-offsets"} <= set(VARIANTS)
    assert {"page-offsets", "clamped-100"} <= set(VARIANTS)
    for name, item in VARIANTS.items():
        assert item.name == name
        assert item.description and "\n" not in item.description
        sim = variant(name)
        assert {key: sim.options()[key] for key in item.options} == dict(item.options)
        assert sim.faults.glitches == list(item.glitches)
        assert all(a is not b for a, b in zip(sim.faults.glitches, item.glitches, strict=True))
    combined = variant("flat", "record-offsets", "hostile-names")
    assert (combined.layout, combined.offset_mode, combined.names) == ("flat", "record", "hostile")
    with pytest.raises(KeyError):
        variant("no-such-variant")


def test_options_and_variants_over_the_control_api() -> None:
    sim = Simulator()
    with sim, httpx.Client(base_url=sim.url) as http:
        assert http.get("/_sim/options").json() == sim.options()
        changed = http.post("/_sim/options", json={"layout": "flat", "extra_files": True})
        assert changed.json()["layout"] == "flat" and sim.extra_files is True
        assert http.post("/_sim/options", json={"layout": "zigzag"}).status_code == 400
        assert http.post("/_sim/options", json=["layout"]).status_code == 400
        described = http.get("/_sim/variants").json()
        assert described == {name: item.description for name, item in VARIANTS.items()}
        applied = http.post(
            "/_sim/variants", json={"variants": ["record-offsets", "glitch-empty-scripts"]}
        )
        assert applied.json()["offset_mode"] == "record"
        assert sim.faults.glitches == [Glitch("scripts")]
        assert http.post("/_sim/variants", json={"variants": ["nope"]}).status_code == 400
        assert http.post("/_sim/variants", json={"variant": "flat"}).status_code == 400


# ---- every variant, generically: it answers as its options say --------------------------------


def shape(body: dict[str, Any]) -> tuple[int, list[str]]:
    """(total, row names) of a list answer: job rows carry run noise that changes per call."""
    key = next(k for k in ("jobs", "scripts", "resources") if k in body)
    return body["total"], [row["name"] for row in body[key]]


def _spoiled_as_said(glitch: Glitch, spoiled: dict[str, Any], normal: dict[str, Any]) -> None:
    total, names = shape(normal)
    assert names, "the list must hold rows"
    if glitch.kind == "empty":
        assert shape(spoiled) == (0, [])
        assert len(spoiled) == 2
    elif glitch.kind == "total":
        assert shape(spoiled) == (glitch.total, names)
    else:
        assert shape(spoiled) == (total, names[glitch.rows :])


def _check_glitch(http: httpx.Client, glitch: Glitch) -> None:
    """The glitch spoils exactly the answer it targets, once; the ones around it are true."""
    path = {"scripts": SCRIPTS, "resources": RESOURCES}.get(glitch.list, JOBS)
    params: dict[str, Any] = {"limit": 2, "offset": glitch.offset or 0}
    if glitch.list in ("BATCH", "REAL_TIME"):
        params["jobType"] = glitch.list
    before = [shape(http.get(path, params=params).json()) for _ in range(glitch.skip)]
    spoiled = http.get(path, params=params).json()
    after = http.get(path, params=params).json()
    assert before == [shape(after)] * glitch.skip
    _spoiled_as_said(glitch, spoiled, after)
    assert shape(http.get(path, params=params).json()) == shape(after)


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_each_variant_answers_as_it_says(name: str) -> None:
    sim = populated(name, jobs=12)
    options = sim.options()
    glitches = list(VARIANTS[name].glitches)
    with running(sim) as http:
        for glitch in glitches:
            _check_glitch(http, glitch)
        assert sim.faults.glitches == []
        # Listing: every job once, in both offset modes, at the variant's largest page.
        limit = min(100, options["max_page_size"])
        for job_type in ("BATCH", "REAL_TIME"):
            listed = list_names(http, JOBS, "jobs", 5, jobType=job_type)
            assert listed == sorted(
                n for n, t in sim.content(WS)["job_types"].items() if t == job_type
            )
        assert http.get(JOBS, params={"limit": limit}).status_code == 200
        too_big = http.get(JOBS, params={"limit": options["max_page_size"] + 1})
        if options["page_size_policy"] == "reject":
            assert (too_big.status_code, too_big.json()) == (400, INVALID)
        else:
            assert too_big.status_code == 200
        probe = http.get(JOBS, params={"limit": 2, "offset": 1}).json()["jobs"]
        batch = sorted(n for n, t in sim.content(WS)["job_types"].items() if t == "BATCH")
        expected_probe = batch[1:3] if options["offset_mode"] == "record" else batch[2:4]
        assert [row["name"] for row in probe] == expected_probe
        # Export: exactly the content's files, named and flagged as the options say.
        content = sim.content(WS)
        assert export_all(http, sim) == content["export"]
        data = export(http, sorted(sim.jobs(WS))[:100]).content
        infos = unzip(data, read_encoding(sim))
        assert any(info.is_dir() for info in infos) == options["directory_entries"]
        flags = {bool(info.flag_bits & 0x800) for info in infos}
        assert flags == {options["utf8_flag"]}
        extras = [p for p in content["export"] if not p.endswith((".job", ".script"))]
        assert bool(extras) == options["extra_files"]
        folders = {p.split("/")[1] for p in content["export"] if p.count("/") == 2}
        if options["layout"] == "flat":
            assert not folders
        else:
            assert folders
        # Optional APIs.
        resources = http.get(RESOURCES)
        instances = http.get(INSTANCES)
        expected_status = {"ok": 200, "missing": 404, "forbidden": 403}
        assert resources.status_code == expected_status[options["resources_api"]]
        assert instances.status_code == expected_status[options["management_api"]]
    names = set(sim.jobs(WS))
    assert (LONG_CJK_JOB in names) == (options["names"] == "hostile")
    assert ("誠信報表" in names) == (options["names"] == "chinese")


# ---- zip layouts -----------------------------------------------------------------------------


def _layout_sim(**options: Any) -> Simulator:
    sim = Simulator(**options)
    sim.add_workspace(WS, "sales")
    sim.add_job(WS, "a", scripts=["s1", "shared"])
    sim.add_job(WS, "b")  # no script
    sim.add_job(WS, "c", scripts=["shared"], resources=["lib"])
    return sim


LAYOUTS = {
    "folders": [
        "jobs/a/a.job",
        "jobs/a/s1.script",
        "jobs/a/shared.script",
        "jobs/b/b.job",
        "jobs/c/c.job",
        "jobs/c/shared.script",
    ],
    "documented": [
        "jobs/a/a.job",
        "jobs/a/s1.script",
        "jobs/a/shared.script",
        "jobs/b.job",
        "jobs/c/c.job",
        "jobs/c/shared.script",
    ],
    "flat": [
        "jobs/a.job",
        "scripts/s1.script",
        "scripts/shared.script",
        "jobs/b.job",
        "jobs/c.job",
    ],
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_layouts_place_jobs_and_scripts_as_documented(layout: str) -> None:
    sim = _layout_sim(layout=layout)
    with running(sim) as http:
        data = export(http, ["a", "b", "c"]).content
        without_depend = files_of(export(http, ["a", "b"], exportDepend=False).content)
    files = files_of(data)
    assert list(files) == LAYOUTS[layout]
    assert files == sim.export_files(WS, ["a", "b", "c"])
    scripts = sim.scripts(WS)
    for path, raw in files.items():
        name = path.rsplit("/", 1)[1].rsplit(".", 1)[0]
        if path.endswith(".script"):
            assert json.loads(raw) == scripts[name]
        else:
            assert json.loads(raw) == sim.jobs(WS)[name]
    expected = (
        ["jobs/a/a.job", "jobs/b/b.job"] if layout == "folders" else ["jobs/a.job", "jobs/b.job"]
    )
    assert list(without_depend) == expected


def test_directory_entries_come_before_their_members() -> None:
    sim = _layout_sim(layout="documented", directory_entries=True)
    with running(sim) as http:
        infos = unzip(export(http, ["a", "b", "c"]).content)
    assert [info.filename for info in infos] == [
        "jobs/",
        "jobs/a/",
        "jobs/a/a.job",
        "jobs/a/s1.script",
        "jobs/a/shared.script",
        "jobs/b.job",
        "jobs/c/",
        "jobs/c/c.job",
        "jobs/c/shared.script",
    ]
    directories = [info for info in infos if info.filename.endswith("/")]
    assert all(info.is_dir() and info.file_size == 0 for info in directories)
    assert all(info.external_attr & 0x10 for info in directories)


def test_extra_files_ride_along_byte_for_byte() -> None:
    sim = _layout_sim(extra_files=True)
    cdm_of_b = [
        {p["name"]: p["value"] for p in node["properties"]}["jobName"]
        for node in sim.jobs(WS)["b"]["nodes"]
        if node["type"] == "CDMJob"
    ]
    assert cdm_of_b  # a job without scripts always has a CDM node
    with running(sim) as http:
        folders = files_of(export(http, ["b", "c"]).content)
        sim.configure(layout="flat")
        flat = files_of(export(http, ["b", "c"]).content)
        plain = files_of(export(http, ["b", "c"], exportDepend=False).content)
    resource = json.dumps(sim.resources(WS)["lib"], separators=(",", ":"), ensure_ascii=False)
    assert folders["jobs/c/lib.resource"] == resource.encode()
    assert flat["resources/lib.resource"] == resource.encode()
    cdm = folders[f"jobs/b/{cdm_of_b[0]}.json"]
    assert flat[f"cdm/{cdm_of_b[0]}.json"] == cdm
    assert b"\r\n" in cdm and not cdm.endswith(b"\n")
    assert json.loads(cdm)["jobs"][0]["name"] == cdm_of_b[0]
    assert sorted(plain) == ["jobs/b.job", "jobs/c.job"]
    sim.configure(extra_files=False)
    assert sorted(sim.export_files(WS, ["b", "c"])) == [
        "jobs/b.job",
        "jobs/c.job",
        "scripts/shared.script",
    ]


def test_populate_links_resources_without_changing_definitions() -> None:
    plain, linked = Simulator(seed=3), Simulator(seed=3, extra_files=True)
    for sim in (plain, linked):
        sim.add_workspace(WS, "sales")
        sim.populate(WS, 6, resources=2)
    assert plain.jobs(WS) == linked.jobs(WS)
    used = {r for links in linked.content(WS)["job_resources"].values() for r in links}
    assert used == set(linked.resources(WS))
    assert not any(p.endswith(".resource") for p in plain.content(WS)["export"])
    assert any(p.endswith(".resource") for p in linked.content(WS)["export"])


# ---- member-name encodings -------------------------------------------------------------------


def test_gb18030_names_read_back_only_with_that_encoding() -> None:
    sim = populated("flat-gb18030", jobs=2)
    with running(sim) as http:
        data = export(http, sorted(sim.jobs(WS))).content
    expected = list(sim.content(WS)["export"])
    assert "jobs/誠信報表.job" in expected
    assert raw_central_names(data) == [name.encode("gb18030") for name in expected]
    assert b"\xd5\x5c" in "誠".encode("gb18030")  # a backslash byte inside a character
    infos = unzip(data, "gb18030")
    assert [info.filename for info in infos] == expected
    assert not any(info.flag_bits & 0x800 for info in infos)
    naive = [info.filename for info in unzip(data)]  # cp437, as the zip spec says
    assert naive != expected
    assert [n for n in naive if n.isascii()] == [n for n in expected if n.isascii()]
    with pytest.raises(UnicodeDecodeError):
        unzip(data, "utf-8")
    assert files_of(data, "gb18030") == sim.content(WS)["export"]


def test_unflagged_utf8_names() -> None:
    sim = populated("unflagged-utf8", jobs=2)
    with running(sim) as http:
        data = export(http, ["每日销售汇总"]).content
    assert raw_central_names(data) == [
        "jobs/每日销售汇总/每日销售汇总.job".encode(),
        "jobs/每日销售汇总/清洗脚本.script".encode(),
        "jobs/每日销售汇总/汇总查询.script".encode(),
    ]
    assert unzip(data, "utf-8")[0].filename == "jobs/每日销售汇总/每日销售汇总.job"
    assert not any(info.flag_bits & 0x800 for info in unzip(data))
    assert unzip(data)[0].filename != "jobs/每日销售汇总/每日销售汇总.job"


def test_flagged_names_include_ascii_ones() -> None:
    sim = _layout_sim()
    with running(sim) as http:
        infos = unzip(export(http, ["a"]).content)
    assert all(info.flag_bits & 0x800 for info in infos)


# ---- hostile names ---------------------------------------------------------------------------


@pytest.fixture
def hostile() -> Iterator[tuple[Simulator, httpx.Client]]:
    sim = Simulator()
    sim.add_workspace(WS, "sales")
    sim.populate(WS, 3)
    sim.populate_hostile(WS)
    with running(sim) as http:
        yield sim, http


def test_hostile_names_cover_every_class() -> None:
    assert len(LONG_CJK_JOB) == len(LONG_CJK_SCRIPT) == 128
    assert len(LONG_CJK_JOB.encode()) == len(LONG_CJK_SCRIPT.encode()) == 384
    assert LONG_CJK_JOB[:-1] == LONG_CJK_JOB_TWIN[:-1] and LONG_CJK_JOB != LONG_CJK_JOB_TWIN
    assert len(LONG_CJK_RESOURCE) == 32
    assert CAFE_NFC != CAFE_NFD
    assert unicodedata.normalize("NFC", CAFE_NFD) == CAFE_NFC
    sim = Simulator()
    sim.add_workspace(WS, "sales")
    added = sim.populate_hostile(WS)
    assert sim.populate_hostile(WS) == []  # once per workspace
    everything = set(sim.jobs(WS)) | set(sim.scripts(WS)) | set(sim.resources(WS))
    for names in HOSTILE_NAME_CLASSES.values():
        assert set(names) <= everything
    for name in (
        "CON",
        "aux",
        "nul.sql",
        "COM1",
        "aux.daily",
        "trailing.",
        "Daily_Orders",
        "daily_orders",
        "tab\there",
        "back\\slash",
        "a b",
        "it's",
        "x#1",
        "a+b",
        "50%",
    ):
        assert name in everything
    assert added == list(sim.jobs(WS))
    types = {job["processType"] for job in sim.jobs(WS).values()}
    assert types == {"BATCH", "REAL_TIME"}
    used = {s for job in sim.jobs(WS) for s in sim.job_scripts(WS, job)}
    assert {LONG_CJK_SCRIPT, "nul.sql", "orders_sql", "Orders_SQL", "tab\tscript"} <= used
    assert set(sim.scripts(WS)) - used  # some are standalone


def test_populate_with_hostile_names_adds_the_set_once() -> None:
    sim = Simulator(names="hostile")
    sim.add_workspace(WS, "sales")
    first = sim.populate(WS, 2)
    second = sim.populate(WS, 2)
    assert LONG_CJK_JOB in first and LONG_CJK_JOB not in second
    assert len(second) == 2


def test_hostile_names_round_trip_through_the_lists(
    hostile: tuple[Simulator, httpx.Client],
) -> None:
    sim, http = hostile
    for job_type in ("BATCH", "REAL_TIME"):
        listed = list_names(http, JOBS, "jobs", 4, jobType=job_type)
        expected = sorted(n for n, j in sim.jobs(WS).items() if j["processType"] == job_type)
        assert listed == expected
    assert list_names(http, SCRIPTS, "scripts", 4) == sorted(sim.scripts(WS))
    rows = http.get(RESOURCES, params={"limit": 100}).json()["resources"]
    assert {row["name"] for row in rows} == set(sim.resources(WS))
    raw = http.get(JOBS, params={"limit": 1000}).content
    assert b'"tab\\there"' in raw and "数据仓库".encode() in raw  # JSON escapes, raw UTF-8


def test_hostile_names_round_trip_through_job_detail(
    hostile: tuple[Simulator, httpx.Client],
) -> None:
    sim, http = hostile
    for name, definition in sim.jobs(WS).items():
        response = http.get(f"{JOBS}/{quoted(name)}")
        assert response.status_code == 200, name
        assert response.json() == definition
    for name, definition in sim.scripts(WS).items():
        assert http.get(f"{SCRIPTS}/{quoted(name)}").json() == definition
    # %2F is a name, not a slash: decoded once, never twice.
    assert http.get(f"{JOBS}/{quoted('a%2Fb')}").json()["name"] == "a%2Fb"
    assert http.get(f"{JOBS}/{quoted('a/b')}").status_code in (400, 404)
    missing = http.get(f"{JOBS}/{quoted(CAFE_NFC + CAFE_NFD)}")
    assert missing.status_code == 400
    assert missing.json() == {"error_code": "DLF.0100", "error_msg": "The job does not exist."}


def test_hostile_names_round_trip_through_export(hostile: tuple[Simulator, httpx.Client]) -> None:
    sim, http = hostile
    files = export_all(http, sim)
    assert files == sim.content(WS)["export"]
    assert f"jobs/{LONG_CJK_JOB}/{LONG_CJK_JOB}.job" in files
    assert f"jobs/{CAFE_NFD}/{CAFE_NFD}.job" in files and f"jobs/{CAFE_NFC}/{CAFE_NFC}.job" in files
    assert "jobs/Daily_Orders/Orders_SQL.script" in files
    assert "jobs/Daily_Orders/orders_sql.script" in files
    assert "jobs/tab\there/tab\tscript.script" in files
    assert "jobs/back\\slash/back\\slash.job" in files
    for path, raw in files.items():
        name = json.loads(raw)["name"]
        assert path.endswith(f"/{name}.job") or path.endswith(f"/{name}.script"), path
    # The request body carries the names as JSON; the call log keeps them as sent.
    sim.clear_calls()
    export(http, ["a b", "it's", "50%", "tab\there"])
    assert sim.calls[0].job_names == ("a b", "it's", "50%", "tab\there")


def test_job_detail_is_on_the_call_log(hostile: tuple[Simulator, httpx.Client]) -> None:
    sim, http = hostile
    sim.clear_calls()
    http.get(f"{JOBS}/{quoted('x#1')}")
    http.get(f"{JOBS}/gone")
    assert sim.calls == [
        CallRecord("GET", f"{JOBS}/x%231", {}, WS, ("x#1",), 200),
        CallRecord("GET", f"{JOBS}/gone", {}, WS, ("gone",), 400),
    ]
    sim.delete_job(WS, "x#1")
    assert http.get(f"{JOBS}/{quoted('x#1')}").json()["error_code"] == "DLF.0100"


def test_script_and_resource_detail(hostile: tuple[Simulator, httpx.Client]) -> None:
    sim, http = hostile
    assert http.get(f"{SCRIPTS}/nope").json() == {
        "error_code": "DLF.6201",
        "error_msg": "The script does not exist.",
    }
    resource = sim.resources(WS)[LONG_CJK_RESOURCE]
    assert http.get(f"{RESOURCES}/{resource['id']}").json() == resource
    assert http.get(f"{RESOURCES}/{'0' * 32}").json()["error_code"] == "DLF.6241"


# ---- optional APIs ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", [RESOURCES, f"{RESOURCES}/{'0' * 32}"])
def test_a_missing_resources_api_is_an_unpublished_api(path: str) -> None:
    sim = populated("no-resources-api")
    with running(sim) as http:
        response = http.get(path)
        assert (response.status_code, response.json()) == (404, UNPUBLISHED)
        assert http.get(JOBS).status_code == 200
    assert all(call.path != path for call in sim.calls)  # the gateway answered, not DLF


def test_a_forbidden_resources_api_is_dlf_6888() -> None:
    sim = populated("forbidden-resources-api")
    with running(sim) as http:
        response = http.get(RESOURCES)
        assert response.status_code == 403
        assert response.json() == {
            "error_code": "DLF.6888",
            "error_msg": "Invalid account permissions.",
        }
        assert http.get(SCRIPTS).status_code == 200
        assert http.get(RESOURCES, headers={"X-Auth-Token": "wrong"}).status_code == 401
    assert [c.status for c in sim.calls if c.path == RESOURCES] == [403]


@pytest.mark.parametrize("path", [INSTANCES, WORKSPACES])
def test_the_management_api_may_be_missing_or_forbidden(path: str) -> None:
    sim = populated("no-management-api")
    with running(sim) as http:
        response = http.get(path)
        assert (response.status_code, response.json()) == (404, UNPUBLISHED)
        VARIANTS["forbidden-management-api"].apply(sim)
        response = http.get(path)
        assert response.status_code == 403
        error = response.json()["error"]
        assert error["code"] == 403 and error["title"] == "Forbidden"
        assert "DataArtsStudio:" in error["message"]
        sim.configure(management_api="ok")
        assert http.get(path).status_code == 200


# ---- paging ----------------------------------------------------------------------------------


def _big(**options: Any) -> Simulator:
    sim = Simulator(**options)
    sim.add_workspace(WS, "sales")
    sim.populate(WS, 130, realtime_fraction=0.0, scripts=110)
    return sim


@pytest.mark.parametrize("offset_mode", ["page", "record"])
def test_a_clamped_page_size_is_served_silently(offset_mode: str) -> None:
    sim = _big(max_page_size=100, page_size_policy="clamp", offset_mode=offset_mode)
    names = sorted(sim.jobs(WS))
    with running(sim) as http:
        first = http.get(JOBS, params={"limit": 1000}).json()
        second = http.get(JOBS, params={"limit": 1000, "offset": 1}).json()
        scripts = http.get(SCRIPTS, params={"limit": 500}).json()
        assert http.get(JOBS, params={"limit": 0}).status_code == 400
    assert first["total"] == 130
    assert [row["name"] for row in first["jobs"]] == names[:100]
    expected = names[100:130] if offset_mode == "page" else names[1:101]
    assert [row["name"] for row in second["jobs"]] == expected
    assert len(scripts["scripts"]) == 100 and scripts["total"] == 110


def test_a_rejected_page_size_is_dlf_3051() -> None:
    sim = populated("rejected-100")
    with running(sim) as http:
        for path in (JOBS, SCRIPTS, RESOURCES):
            response = http.get(path, params={"limit": 101})
            assert (response.status_code, response.json()) == (400, INVALID)
        assert http.get(JOBS, params={"limit": 100}).status_code == 200


def test_the_workspace_list_clamps_too() -> None:
    sim = Simulator(page_size_policy="clamp")
    for number in range(3):
        sim.add_workspace(f"{number:032x}", f"ws{number}")
    with running(sim) as http:
        clamped = http.get(WORKSPACES, params={"limit": 500}).json()
        sim.configure(page_size_policy="reject")
        rejected = http.get(WORKSPACES, params={"limit": 500})
    assert clamped["count"] == 3 and clamped["total_page"] == 1 and len(clamped["data"]) == 3
    assert rejected.status_code == 400


def test_the_total_moves_while_listing() -> None:
    sim = populated(jobs=6)
    sim.faults.create_while_listing = True
    with running(sim) as http:
        totals = [http.get(JOBS, params={"limit": 2, "offset": n}).json()["total"] for n in (0, 1)]
    assert totals[1] == totals[0] + 1


# ---- glitches --------------------------------------------------------------------------------


def _names(body: dict[str, Any], key: str = "jobs") -> list[str]:
    return [row["name"] for row in body[key]]


def test_a_glitch_naming_a_workspace_spares_the_others() -> None:
    sim = populated(jobs=12)
    other = "f" * 32
    sim.add_workspace(other, "finance")
    sim.populate(other, 4)
    sim.faults.glitches.append(Glitch("BATCH", workspace=other))
    with running(sim) as http:
        spared = http.get(JOBS, params={"limit": 100}).json()
        spoiled = http.get(JOBS, params={"limit": 100}, headers={"workspace": other}).json()
    assert spared["total"] > 0 and _names(spared)
    assert spoiled == {"total": 0, "jobs": []}


def test_an_empty_answer_for_one_job_type_only() -> None:
    sim = populated(jobs=12)
    sim.faults.glitches.append(Glitch("REAL_TIME"))
    with running(sim) as http:
        batch = http.get(JOBS, params={"limit": 100}).json()
        spoiled = http.get(JOBS, params={"limit": 100, "jobType": "REAL_TIME"}).json()
        healed = http.get(JOBS, params={"limit": 100, "jobType": "REAL_TIME"}).json()
    assert batch["total"] > 0 and _names(batch)
    assert spoiled == {"total": 0, "jobs": []}
    assert healed["total"] > 0 and _names(healed)
    assert sim.faults.glitches == []


@pytest.mark.parametrize("offset_mode", ["page", "record"])
def test_an_empty_later_page(offset_mode: str) -> None:
    sim = populated(jobs=30, offset_mode=offset_mode)
    later = 2 if offset_mode == "page" else 10
    sim.faults.glitches.append(Glitch("BATCH", offset=later))
    with running(sim) as http:
        pages = [http.get(JOBS, params={"limit": 5, "offset": o}).json() for o in (0, 1, later)]
        again = http.get(JOBS, params={"limit": 5, "offset": later}).json()
    assert pages[0]["total"] == pages[1]["total"] > 10
    assert len(pages[0]["jobs"]) == len(pages[1]["jobs"]) == 5
    assert pages[2] == {"total": 0, "jobs": []}
    assert again["total"] == pages[0]["total"] and len(again["jobs"]) == 5


@pytest.mark.parametrize("total", [0, 16])
def test_a_page_reporting_a_lowered_total(total: int) -> None:
    sim = populated(jobs=40)
    sim.faults.glitches.append(Glitch("jobs", "total", offset=1, total=total))
    with running(sim) as http:
        first = http.get(JOBS, params={"limit": 5}).json()
        spoiled = http.get(JOBS, params={"limit": 5, "offset": 1}).json()
        true = http.get(JOBS, params={"limit": 5, "offset": 1}).json()
    assert first["total"] == true["total"] > 16
    assert shape(spoiled) == (total, shape(true)[1])


def test_a_page_missing_some_rows() -> None:
    sim = populated(jobs=30)
    sim.faults.glitches.append(Glitch("BATCH", "drop", rows=2))
    with running(sim) as http:
        spoiled = http.get(JOBS, params={"limit": 5}).json()
        true = http.get(JOBS, params={"limit": 5}).json()
    assert spoiled["total"] == true["total"]
    assert _names(spoiled) == _names(true)[2:]


@pytest.mark.parametrize("offset_mode", ["page", "record"])
def test_an_empty_answer_to_the_offset_probe(offset_mode: str) -> None:
    sim = populated(jobs=30, offset_mode=offset_mode)
    with running(sim) as http:
        reply = http.post("/_sim/faults", json={"glitches": [{"list": "jobs", "offset": 1}]})
        assert reply.json()["result"]["glitches"] == [dataclasses.asdict(Glitch("jobs", offset=1))]
        first = http.get(JOBS, params={"limit": 5, "offset": 0}).json()
        probe = http.get(JOBS, params={"limit": 5, "offset": 1}).json()
        again = http.get(JOBS, params={"limit": 5, "offset": 1}).json()
    assert len(first["jobs"]) == 5
    assert probe == {"total": 0, "jobs": []}
    start = 1 if offset_mode == "record" else 5
    assert (
        _names(again)
        == sorted(n for n, j in sim.jobs(WS).items() if j["processType"] == "BATCH")[
            start : start + 5
        ]
    )


def test_skip_and_times_target_one_call_and_count_down() -> None:
    sim = populated(jobs=12)
    sim.faults.glitches += [
        Glitch("scripts", skip=1),
        Glitch("resources", "total", total=9, times=2),
    ]
    with running(sim) as http:
        scripts = [http.get(SCRIPTS).json()["total"] for _ in range(3)]
        resources = [http.get(RESOURCES).json()["total"] for _ in range(3)]
    real_scripts, real_resources = len(sim.scripts(WS)), len(sim.resources(WS))
    assert scripts == [real_scripts, 0, real_scripts]
    assert resources == [9, 9, real_resources]
    assert sim.faults.glitches == []


def test_management_lists_glitch_too() -> None:
    sim = Simulator()
    sim.add_workspace(WS, "sales")
    sim.faults.glitches += [Glitch("instances"), Glitch("workspaces", "drop")]
    with running(sim) as http:
        instances = [http.get(INSTANCES).json() for _ in range(2)]
        workspaces = [http.get(WORKSPACES).json() for _ in range(2)]
    assert instances[0] == {"billing_check": True, "count": 0, "commodity_orders": []}
    assert instances[1]["count"] == 1
    assert workspaces[0]["data"] == [] and workspaces[0]["count"] == 1
    assert len(workspaces[1]["data"]) == 1


def test_a_glitch_waits_for_a_successful_answer() -> None:
    sim = populated(jobs=4)
    sim.faults.glitches.append(Glitch("BATCH"))
    with running(sim) as http:
        assert http.get(JOBS, params={"limit": 0}).status_code == 400
        assert http.get(JOBS, headers={"X-Auth-Token": "wrong"}).status_code == 401
        assert sim.faults.glitches == [Glitch("BATCH")]  # not used up by failures
        assert http.get(JOBS).json() == {"total": 0, "jobs": []}
        assert http.get(JOBS).json()["total"] > 0


def test_empty_listings_still_empty_every_job_list() -> None:
    sim = populated(jobs=12)
    sim.faults.empty_listings = 2
    with running(sim) as http:
        answers = [http.get(JOBS, params={"jobType": t}).json() for t in ("BATCH", "REAL_TIME")]
        assert answers == [{"total": 0, "jobs": []}] * 2
        assert http.get(JOBS).json()["total"] > 0


@pytest.mark.parametrize(
    "glitches",
    [
        [{"list": "STREAM"}],
        [{"list": "BATCH", "kind": "late"}],
        [{"list": "BATCH", "colour": "red"}],
        [{"list": "BATCH", "times": 0}],
        {"list": "BATCH"},
    ],
)
def test_bad_glitches_are_refused(glitches: Any) -> None:
    sim = Simulator()
    with sim, httpx.Client(base_url=sim.url) as http:
        assert http.post("/_sim/faults", json={"glitches": glitches}).status_code == 400
    assert sim.faults.glitches == []


# ---- the simulator's own content, for comparing with a backup --------------------------------


def test_content_is_what_a_backup_should_hold() -> None:
    sim = populated("hostile-names", "extra-files", jobs=5)
    content = sim.content(WS)
    assert content["jobs"] == sim.jobs(WS)
    assert content["scripts"] == sim.scripts(WS)
    assert content["resources"] == sim.resources(WS)
    assert content["job_scripts"] == {name: sim.job_scripts(WS, name) for name in sim.jobs(WS)}
    assert content["job_resources"]["Daily_Orders"] == ["Lib_Jar", "lib_jar"]
    assert set(content["job_types"].values()) == {"BATCH", "REAL_TIME"}
    assert content["export"] == sim.export_files(WS, list(sim.jobs(WS)))
    with running(sim) as http:
        over_http = http.get("/_sim/content", params={"workspace": WS}).json()
        assert http.get("/_sim/content", params={"workspace": "f" * 32}).status_code == 404
        assert export_all(http, sim) == content["export"]
    assert over_http["jobs"] == content["jobs"]
    assert over_http["export"] == {p: b.decode() for p, b in content["export"].items()}
    content["jobs"].clear()
    assert sim.jobs(WS)  # a copy


def test_control_api_populates_hostile_names() -> None:
    sim = Simulator()
    sim.add_workspace(WS, "sales")
    with sim, httpx.Client(base_url=sim.url) as http:
        reply = http.post(
            "/_sim/mutate", json={"op": "populate_hostile", "args": {"workspace_id": WS}}
        )
        chinese = http.post(
            "/_sim/mutate", json={"op": "populate_chinese", "args": {"workspace_id": WS}}
        )
    assert LONG_CJK_JOB in reply.json()["result"]
    assert "誠信報表" in chinese.json()["result"]
