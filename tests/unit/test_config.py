"""Config loading: every mistake is named by its key path; the sample config stays true."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from backupd.config import (
    AkSkAuthConfig,
    PasswordAuthConfig,
    SourceConfig,
    TokenAuthConfig,
    load_config,
    parse_config,
)
from backupd.config_doc import render_example
from backupd.dataarts.client import ClientSettings
from backupd.errors import ConfigError
from backupd.secret import Secret
from backupd.wiring import make_client

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


# ---- auth ------------------------------------------------------------------------------------

AK = "DISTINCTAK1234567890"


def with_auth(**auth: Any) -> dict[str, Any]:
    return minimal(auth=auth)


def test_the_three_kinds_of_auth_parse() -> None:
    aksk = parse_config(
        with_auth(type="aksk", ak=AK, sk_file="sk", security_token="${STS}"),
        base_dir=Path("/etc/backupd"),
        environ={"STS": "sts-value"},
    ).sources[0]
    assert isinstance(aksk.auth, AkSkAuthConfig)
    assert aksk.auth.sk_file == Path("/etc/backupd/sk")
    assert aksk.auth.security_token == Secret("sts-value")

    password = parse_config(
        with_auth(type="password", user="u", domain="d", password_credential="dlf-pw"),
        base_dir=Path("/"),
        environ={},
    ).sources[0]
    assert isinstance(password.auth, PasswordAuthConfig)
    assert password.iam_endpoint == "https://iam.cn-north-4.myhuaweicloud.com"

    token = parse_config(minimal(), base_dir=Path("/"), environ={}).sources[0]
    assert isinstance(token.auth, TokenAuthConfig)


@pytest.mark.parametrize(
    ("auth", "key", "words"),
    [
        ({"type": "aksk", "ak": AK}, "sources[0].auth", "set one of sk, sk_file, sk_credential"),
        (
            {"type": "aksk", "ak": AK, "sk": "x", "sk_file": "f"},
            "sources[0].auth",
            "set only one of sk, sk_file, sk_credential (found sk, sk_file)",
        ),
        (
            {
                "type": "aksk",
                "ak": AK,
                "sk": "x",
                "security_token": "t",
                "security_token_file": "f",
            },
            "sources[0].auth",
            "set only one of security_token, security_token_file, security_token_credential",
        ),
        ({"type": "aksk", "sk": "x"}, "sources[0].auth.ak", "required"),
        ({"type": "aksk", "ak": "AK WITH SPACE", "sk": "x"}, "sources[0].auth.ak", "spaces"),
        (
            {"type": "aksk", "ak": AK, "sk_credential": "../sk"},
            "sources[0].auth.sk_credential",
            "systemd credential name",
        ),
        (
            {"type": "password", "user": "u", "domain": "d"},
            "sources[0].auth",
            "set one of password, password_file, password_credential",
        ),
        ({"type": "password", "domain": "d", "password": "p"}, "sources[0].auth.user", "required"),
        (
            {"type": "password", "user": "u", "domain": "d", "password": "p", "iam_endpoint": "x"},
            "sources[0].auth.iam_endpoint",
            "base URL",
        ),
        (
            {"type": "token", "token": "t", "token_file": "f"},
            "sources[0].auth",
            "set only one of token, token_file, token_credential",
        ),
        ({"type": "token", "sk": "x"}, "sources[0].auth.sk", "unknown key"),
        ({"type": "basic"}, "sources[0].auth.type", "'aksk', 'password', 'token'"),
    ],
)
def test_auth_mistakes_are_named_by_key_path(auth: dict[str, Any], key: str, words: str) -> None:
    error = problem(minimal(auth=auth))
    assert error.key == key
    assert words in error.problem
    assert "AK WITH SPACE" not in str(error)


def test_password_auth_without_region_needs_an_iam_endpoint() -> None:
    auth = {"type": "password", "user": "u", "domain": "d", "password": "p"}
    data = minimal(auth=auth, endpoint="https://dlf.example.com")
    del data["sources"][0]["region"]
    assert problem(data).key == "sources[0].auth.iam_endpoint"
    auth["iam_endpoint"] = "https://iam.example.com/"
    source = parse_config(data, base_dir=Path("/"), environ={}).sources[0]
    assert source.iam_endpoint == "https://iam.example.com"


def test_ca_bundle_must_be_a_file(tmp_path: Path) -> None:
    assert problem(minimal(ca_bundle=str(tmp_path / "none.pem"))).key == "sources[0].ca_bundle"
    bundle = tmp_path / "ca.pem"
    bundle.write_text("x")
    config = parse_config(minimal(ca_bundle=str(bundle)), base_dir=Path("/"), environ={})
    assert config.sources[0].ca_bundle == bundle


def test_no_credential_shows_in_config_reprs() -> None:
    sk, password = "DISTINCT-SK-VALUE", "DISTINCT-PASSWORD"
    aksk = parse_config(with_auth(type="aksk", ak=AK, sk=sk), base_dir=Path("/"), environ={})
    iam = with_auth(type="password", user="u", domain="d", password=password)
    texts = [repr(aksk), str(aksk), repr(parse_config(iam, base_dir=Path("/"), environ={}))]
    for text in texts:
        assert AK not in text and sk not in text and password not in text


def _write(path: Path, data: dict[str, Any], mode: int) -> Path:
    path.write_text(yaml.safe_dump(data))
    path.chmod(mode)
    return path


@pytest.mark.parametrize(
    ("auth", "mode", "warned"),
    [
        ({"type": "aksk", "ak": AK, "sk": "INLINE-SK-VALUE"}, 0o644, ["sources[0].auth.sk"]),
        ({"type": "aksk", "ak": AK, "sk": "INLINE-SK-VALUE"}, 0o640, ["sources[0].auth.sk"]),
        ({"type": "aksk", "ak": AK, "sk": "INLINE-SK-VALUE"}, 0o600, []),
        ({"type": "aksk", "ak": AK, "sk": "${SK}"}, 0o644, []),
        ({"type": "aksk", "ak": AK, "sk": "prefix-${SK}"}, 0o644, ["sources[0].auth.sk"]),
        ({"type": "aksk", "ak": AK, "sk_file": "/etc/backupd/sk"}, 0o644, []),
        (
            {"type": "password", "user": "u", "domain": "d", "password": "INLINE-SK-VALUE"},
            0o604,
            ["sources[0].auth.password"],
        ),
        ({"type": "token", "token": "INLINE-SK-VALUE"}, 0o644, ["sources[0].auth.token"]),
    ],
)
def test_inline_secrets_in_a_readable_file_are_warned_about_by_key(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    auth: dict[str, Any],
    mode: int,
    warned: list[str],
) -> None:
    caplog.set_level(logging.WARNING)
    path = _write(tmp_path / "config.yaml", minimal(auth=auth), mode)
    load_config(path, environ={"SK": "INLINE-SK-VALUE"})
    records = [r for r in caplog.records if r.getMessage() == "config.inline_secret"]
    assert [r.backupd_fields["key"] for r in records] == warned  # type: ignore[attr-defined]
    for record in records:
        assert record.levelno == logging.WARNING
        assert record.backupd_fields["file"] == str(path)  # type: ignore[attr-defined]
    assert "INLINE-SK-VALUE" not in caplog.text
    assert all("INLINE-SK-VALUE" not in repr(r.__dict__) for r in caplog.records)


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


def test_each_api_has_a_rate_of_its_own_with_the_documented_defaults() -> None:
    source = parse_config(minimal(), base_dir=Path("/"), environ={}).sources[0]
    assert source.rates.as_budgets() == {
        "jobs_list": 30.0,
        "scripts_list": 30.0,
        "resources_list": 10.0,
        "export": 10.0,
        "job_detail": 10.0,
        "restore": 10.0,
        "management": 10.0,
    }
    halved = minimal(rates={"jobs_list": 15, "export": 5})
    rates = parse_config(halved, base_dir=Path("/"), environ={}).sources[0].rates
    assert (rates.jobs_list, rates.scripts_list, rates.export) == (15.0, 30.0, 5.0)
    assert problem(minimal(rates={"export": 0})).key == "sources[0].rates.export"
    assert problem(minimal(rates={"exports": 5})).key == "sources[0].rates.exports"


def test_the_old_rate_keys_still_work_and_are_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(minimal(requests_per_second=10, exports_per_second=4)))
    path.chmod(0o600)
    caplog.set_level(logging.WARNING)
    source = load_config(path, environ={}).sources[0]
    settings = make_client_settings(source)
    assert settings.budget_rates() == {
        **dict.fromkeys(("jobs_list", "scripts_list", "resources_list", "management"), 10.0),
        **dict.fromkeys(("export", "job_detail", "restore"), 4.0),
    }
    records = [r for r in caplog.records if r.getMessage() == "config.deprecated"]
    warned = [r.backupd_fields["key"] for r in records]  # type: ignore[attr-defined]
    assert warned == ["sources[0].requests_per_second", "sources[0].exports_per_second"]
    error = problem(minimal(requests_per_second=10, rates={"export": 5}))
    assert error.key == "sources[0].requests_per_second"
    assert "rates" in error.problem


def make_client_settings(source: SourceConfig) -> ClientSettings:
    with make_client(source) as client:
        return client.settings
