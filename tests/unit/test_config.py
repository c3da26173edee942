"""Config loading: every mistake is named by its key path; the sample config stays true."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from backupd.config import parse_config
from backupd.config_doc import render_example
from backupd.errors import ConfigError
from backupd.secret import Secret

ROOT = Path(__file__).resolve().parents[2]


def minimal(**source: Any) -> dict[str, Any]:
    return {
        "repository": {"path": "repo"},
        "sources": [
            {
                "name": "prod",
                "region": "cn-north-4",
                "project_id": "0123456789abcdef0123456789abcdef",
                "auth": {"type": "token", "token": "t0ken"},
                "workspaces": [{"id": "fedcba9876543210fedcba9876543210", "name": "sales"}],
                **source,
            }
        ],
    }


def problem(data: Any, environ: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, base_dir=Path("/etc/backupd"), environ=environ or {})
    return caught.value


def test_minimal_config_gets_defaults_and_resolved_paths() -> None:
    config = parse_config(minimal(), base_dir=Path("/etc/backupd"), environ={})
    assert config.repository.path == Path("/etc/backupd/repo")
    source = config.sources[0]
    assert source.batch_size == 100
    assert source.dlf_endpoint == "https://dayu-dlf.cn-north-4.myhuaweicloud.com"
    assert source.workspaces[0].folder == "sales"


@pytest.mark.parametrize(
    ("mutate", "key", "words"),
    [
        (lambda d: d["sources"][0].update(colour="blue"), "sources[0].colour", "unknown key"),
        (lambda d: d["sources"][0].update(batch_size="ten"), "sources[0].batch_size", "integer"),
        (lambda d: d["sources"][0].update(batch_size=101), "sources[0].batch_size", "between"),
        (lambda d: d["sources"][0].pop("project_id"), "sources[0].project_id", "required"),
        (lambda d: d["sources"][0].update(project_id="abc"), "sources[0].project_id", "32"),
        (
            lambda d: d["sources"][0].update(export_depend="yes"),
            "sources[0].export_depend",
            "true or false",
        ),
        (lambda d: d["sources"][0]["auth"].update(type="magic"), "sources[0].auth.type", "'token'"),
        (
            lambda d: d["sources"][0]["workspaces"][0].update(name="../x"),
            "sources[0].workspaces[0].name",
            "folder",
        ),
        (lambda d: d["sources"][0].pop("region"), "sources[0]", "region"),
        (lambda d: d.update(sources=[]), "sources", "at least one"),
        (lambda d: d["repository"].update(path=""), "repository.path", "empty"),
    ],
)
def test_mistakes_are_named_by_key_path(mutate: Any, key: str, words: str) -> None:
    data = minimal()
    mutate(data)
    error = problem(data)
    assert error.key == key
    assert words in error.problem
    assert str(error).startswith(f"config: {key}: ")


def test_environment_variables_are_interpolated_and_missing_ones_named() -> None:
    data = minimal(auth={"type": "token", "token": "${DLF_TOKEN}"})
    config = parse_config(data, base_dir=Path("/"), environ={"DLF_TOKEN": "s3cr3t"})
    assert config.sources[0].auth.token == Secret("s3cr3t")
    error = problem(data)
    assert error.key == "sources[0].auth.token"
    assert "DLF_TOKEN is not set" in error.problem


def test_secrets_do_not_show_in_reprs_or_type_errors() -> None:
    config = parse_config(minimal(), base_dir=Path("/"), environ={})
    assert "t0ken" not in repr(config)
    error = problem(minimal(auth={"type": "token", "token": 12345}))
    assert "12345" not in str(error)


def test_sample_config_is_generated_from_the_schema_and_loads() -> None:
    committed = (ROOT / "config.example.yaml").read_text(encoding="utf-8")
    assert committed == render_example()
    config = parse_config(yaml.safe_load(committed), base_dir=ROOT, environ={})
    assert config.sources[0].name == "prod"


def test_history_section_reads_volatile_fields_and_an_authors_table() -> None:
    data = minimal()
    data["history"] = {
        "volatile_fields": {"job": ["version", "nodes[].location"]},
        "commit_per_author": True,
        "authors": {"li.wei": {"name": "Li Wei"}, "王伟": {"email": "wang@corp.example"}, 42: {}},
    }
    history = parse_config(data, base_dir=Path("/"), environ={}).history
    assert history.volatile_fields.job == ("version", "nodes[].location")
    assert history.volatile_fields.script == ()
    assert history.commit_per_author is True
    assert history.authors["li.wei"].name == "Li Wei"
    assert history.authors["王伟"].email == "wang@corp.example"
    assert history.authors["42"].name is None
    default = parse_config(minimal(), base_dir=Path("/"), environ={}).history
    assert "nodes[].lineageInfo" in default.volatile_fields.job
    assert dict(default.authors) == {}


@pytest.mark.parametrize(
    ("history", "key", "words"),
    [
        ({"volatile_fields": {"job": ["nodes[]"]}}, "history.volatile_fields.job", "nodes[]"),
        ({"volatile_fields": {"script": ["a..b"]}}, "history.volatile_fields.script", "segment"),
        ({"authors": ["li.wei"]}, "history.authors", "mapping"),
        ({"authors": {"li.wei": {"mail": "x"}}}, "history.authors['li.wei'].mail", "unknown"),
    ],
)
def test_history_mistakes_are_named_by_key_path(history: Any, key: str, words: str) -> None:
    error = problem({**minimal(), "history": history})
    assert error.key == key
    assert words in error.problem


def test_remote_section_and_tag_policy() -> None:
    data = {**minimal(), "remote": {"url": "git@h:r.git", "ssh_key_file": "keys/push"}}
    data["history"] = {"tags": "weekly"}
    config = parse_config(data, base_dir=Path("/etc/backupd"), environ={})
    assert config.remote is not None
    assert config.remote.ssh_key_file == Path("/etc/backupd/keys/push")
    assert config.remote.branch is None and config.remote.timeout == 120
    assert config.history.tags == "weekly"
    assert parse_config(minimal(), base_dir=Path("/"), environ={}).remote is None
    both = {**data, "remote": {**data["remote"], "ssh_key_credential": "push-key"}}
    assert problem(both).key == "remote"
    assert problem({**minimal(), "history": {"tags": "hourly"}}).key == "history.tags"
    assert problem({**minimal(), "remote": {"branch": "x"}}).key == "remote.url"
