"""What every JobSource does, whatever the service's variety: complete sorted lists, exports
that hold exactly what the service exports, refusals that say why."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from backupd.dataarts.limits import MAX_EXPORT_NAMES
from backupd.errors import ApiError
from tests.contract.conftest import World


def zip_files(data: bytes, world: World) -> dict[str, bytes]:
    """The file members of an export zip, names decoded as the service encoded them."""
    options = world.simulator.options()
    encoding = None
    if not options["utf8_flag"]:
        encoding = "gb18030" if options["name_encoding"] in ("auto", "gb18030") else "utf-8"
    with zipfile.ZipFile(io.BytesIO(data), metadata_encoding=encoding) as archive:
        return {
            info.filename: archive.read(info) for info in archive.infolist() if not info.is_dir()
        }


def test_job_list_is_every_job_of_both_types_sorted_and_unique(world: World) -> None:
    jobs = world.source.list_jobs(world.workspace)
    content = world.simulator.content(world.workspace)
    assert [job.name for job in jobs] == sorted(content["jobs"])
    assert {job.name: job.job_type for job in jobs} == content["job_types"]
    assert all(job.last_update_time is not None for job in jobs)
    only_batch = world.source.list_jobs(world.workspace, ("BATCH",))
    assert [job.name for job in only_batch] == sorted(
        name for name, kind in content["job_types"].items() if kind == "BATCH"
    )


def test_script_list_holds_every_script_with_its_content(world: World) -> None:
    scripts = world.source.list_scripts(world.workspace)
    expected = world.simulator.scripts(world.workspace)
    assert [script["name"] for script in scripts] == sorted(expected)
    assert {script["name"]: script for script in scripts} == expected
    kept = world.source.list_scripts(world.workspace, keep=lambda script: script["name"].upper())
    assert kept == [name.upper() for name in sorted(expected)]


def test_resources_are_listed_or_the_optional_api_says_why(world: World) -> None:
    availability = world.simulator.resources_api
    if availability == "ok":
        resources = world.source.list_resources(world.workspace)
        expected = world.simulator.resources(world.workspace)
        assert [r["name"] for r in resources] == sorted(expected)
        return
    with pytest.raises(ApiError) as refused:
        world.source.list_resources(world.workspace)
    assert refused.value.status == (404 if availability == "missing" else 403)


def test_an_export_holds_exactly_what_the_service_exports(world: World, tmp_path: Path) -> None:
    names = [job.name for job in world.source.list_jobs(world.workspace)][:MAX_EXPORT_NAMES]
    chunk = names[:9]
    target = tmp_path / "jobs.zip"
    size = world.source.export_jobs(world.workspace, chunk, target)
    data = target.read_bytes()
    assert size == len(data)
    assert zip_files(data, world) == world.simulator.export_files(world.workspace, chunk)


def test_an_export_naming_a_missing_job_is_refused_as_missing(world: World, tmp_path: Path) -> None:
    present = world.source.list_jobs(world.workspace)[0].name
    with pytest.raises(ApiError) as refused:
        world.source.export_jobs(world.workspace, [present, "no_such_job"], tmp_path / "x.zip")
    assert refused.value.status == 400
    assert refused.value.code in ("DLF.0100", "DLF.3051")
    with pytest.raises(ValueError, match="1 to 100"):
        world.source.export_jobs(world.workspace, [], tmp_path / "y.zip")


def test_existence_answers_follow_the_service(world: World) -> None:
    job = world.source.list_jobs(world.workspace)[-1].name
    assert world.source.job_exists(world.workspace, job)
    assert not world.source.job_exists(world.workspace, f"{job}_gone")
    script = next(iter(world.simulator.scripts(world.workspace)))
    assert world.source.script_exists(world.workspace, script)
    assert not world.source.script_exists(world.workspace, "no_such_script")
    world.simulator.add_job(world.workspace, "contract_brief")
    assert world.source.job_exists(world.workspace, "contract_brief")
    world.simulator.delete_job(world.workspace, "contract_brief")
    assert not world.source.job_exists(world.workspace, "contract_brief")
    assert "contract_brief" not in {j.name for j in world.source.list_jobs(world.workspace)}


def test_instances_and_workspaces_are_discovered(world: World) -> None:
    instances = world.source.list_instances()
    assert [instance.id for instance in instances] == [i for i, _, _ in world.simulator.instances()]
    found = world.source.list_workspaces(instances[0].id)
    assert [(w.id, w.name) for w in found] == [(world.workspace, "contract")]
