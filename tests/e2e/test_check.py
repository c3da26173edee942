"""`backupd check` as a subprocess against the simulator, real git and real folders."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from backupd.simulator.server import DEFAULT_AK, Simulator
from tests.gitserver import bare_repository
from tests.helpers import backupd_cli, make_config, secret_file, workspace_id


def lines_of(output: str) -> dict[tuple[str, str], tuple[str, str]]:
    """(what, check) → (verdict, detail) from the table `backupd check` prints."""
    table: dict[tuple[str, str], tuple[str, str]] = {}
    for line in output.splitlines()[1:]:
        parts = line.split(None, 3)
        if len(parts) == 4 and parts[0] in ("OK", "WARN", "FAIL", "SKIP"):
            table[(parts[1], parts[2])] = (parts[0], parts[3])
    return table


@contextlib.contextmanager
def unwritable(folder: Path) -> Iterator[None]:
    """Make ``folder`` unwritable even for root (immutable), else by its mode."""
    if os.geteuid() != 0:
        folder.chmod(0o500)
        try:
            yield
        finally:
            folder.chmod(0o700)
        return
    made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot make a folder unwritable for root here: {made.stderr!r}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


@pytest.mark.parametrize("answer", ["missing", "forbidden"])
def test_a_missing_or_forbidden_resource_api_is_a_warning_not_a_failure(
    tmp_path: Path, simulator: Simulator, answer: str
) -> None:
    sales = workspace_id(1)
    simulator.add_workspace(sales, "sales")
    simulator.populate(sales, 2)
    simulator.configure(resources_api=answer)
    config = make_config(tmp_path, simulator, {"sales": sales})

    result = backupd_cli("check", "-c", str(config))

    assert result.returncode == 0, result.stdout + result.stderr
    table = lines_of(result.stdout)
    verdict, detail = table[("prod/sales", "resources")]
    assert verdict == "WARN"
    assert "resource definitions will not be backed up" in detail
    assert ("APIG.0101" if answer == "missing" else "DLF.6888") in detail
    assert "sources[0].resources: false" in detail
    assert table[("prod/sales", "export")][0] == "OK"  # jobs are still backed up
    assert "checks passed, 1 with a WARNING" in result.stderr
    assert "all " not in result.stdout

    # Turned off: not asked, and said so.
    config = make_config(tmp_path, simulator, {"sales": sales}, extra_source={"resources": False})
    simulator.clear_calls()
    result = backupd_cli("check", "-c", str(config))
    assert result.returncode == 0
    assert lines_of(result.stdout)[("prod/sales", "resources")] == (
        "SKIP",
        "turned off (resources: false)",
    )
    assert not [c for c in simulator.calls if c.path.endswith("/resources")]


def test_check_against_the_simulator_is_all_green(tmp_path: Path, simulator: Simulator) -> None:
    sales, empty = workspace_id(1), workspace_id(2)
    simulator.add_workspace(sales, "sales")
    simulator.populate(sales, 3)
    simulator.add_workspace(empty, "empty")
    remote = bare_repository(tmp_path / "remote.git")
    config = make_config(
        tmp_path,
        simulator,
        {"sales": sales, "empty": empty},
        extra={"remote": {"url": remote.as_uri(), "timeout": 10}},
    )
    simulator.clear_calls()

    result = backupd_cli("check", "-c", str(config))

    assert result.returncode == 0, result.stdout + result.stderr
    table = lines_of(result.stdout)
    assert table[("prod", "credentials")][0] == "OK"
    assert DEFAULT_AK[-4:] in table[("prod", "credentials")][1]
    assert table[("prod/sales", "list")] == ("OK", "3 jobs")
    verdict, detail = table[("prod/sales", "export")]
    assert verdict == "OK" and "exported" in detail
    assert table[("prod/empty", "export")] == ("SKIP", "no job to try (the workspace has none)")
    assert table[("repository", "writable")][0] == "OK"
    assert table[("remote", "reachable")][0] == "OK"
    assert not [key for key, (verdict, _) in table.items() if verdict == "FAIL"]
    assert table[("prod/sales", "resources")] == ("OK", "0 resource definitions")
    assert "all 13 checks passed" in result.stdout
    # One real call of each kind: listing with limit 1, one export of one job.
    listings = [c for c in simulator.calls if c.path.endswith("/jobs") and c.method == "GET"]
    assert listings and all(c.query["limit"] == "1" for c in listings)
    exports = [c for c in simulator.calls if c.path.endswith("/batch-export")]
    assert [len(c.job_names) for c in exports] == [1]
    assert not (tmp_path / "repo").exists()  # checked, not created


def test_wrong_secret_unknown_workspace_and_unwritable_repository_turn_their_lines_red(
    tmp_path: Path, simulator: Simulator
) -> None:
    sales = workspace_id(1)
    simulator.add_workspace(sales, "sales")
    simulator.populate(sales, 2)
    config = make_config(tmp_path, simulator, {"sales": sales, "ghost": workspace_id(9)})
    data = yaml.safe_load(config.read_text())
    wrong = secret_file(tmp_path / "wrong-sk", "not-the-secret-key")
    other = {
        **data["sources"][0],
        "name": "eu",
        "auth": {"type": "aksk", "ak": DEFAULT_AK, "sk_file": str(wrong)},
        "workspaces": [{"id": sales, "name": "sales"}],
    }
    data["sources"].append(other)
    config.write_text(yaml.safe_dump(data))
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)

    with unwritable(repo):
        result = backupd_cli("check", "-c", str(config))

    assert result.returncode == 1, result.stdout + result.stderr
    table = lines_of(result.stdout)
    # The good source's good workspace is still green.
    assert table[("prod/sales", "list")][0] == "OK"
    assert table[("prod/sales", "export")][0] == "OK"
    # An unknown workspace: named by its config key, with where to find the right id.
    verdict, detail = table[("prod/ghost", "list")]
    assert verdict == "FAIL"
    assert "sources[0].workspaces[1].id" in detail and workspace_id(9) in detail
    assert table[("prod/ghost", "export")][0] == "SKIP"
    # A wrong secret: the credentials line of that source, pointing at its auth section.
    verdict, detail = table[("eu", "credentials")]
    assert verdict == "FAIL"
    assert "sources[1].auth" in detail and "not-the-secret-key" not in result.stdout
    assert ("eu/sales", "list") not in table  # same credentials: not tried again
    # An unwritable repository.
    verdict, detail = table[("repository", "writable")]
    assert verdict == "FAIL"
    assert f"cannot write in {repo}" in detail and "owner, mode" in detail
    assert "3 of" in result.stderr and "FAILED" in result.stderr


def test_check_of_an_invalid_config_exits_78(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("repository: {path: repo}\nsources: []\n")
    result = backupd_cli("check", "-c", str(config))
    assert result.returncode == 78
    assert result.stderr.strip() == "backupd: config: sources: must list at least one source"
