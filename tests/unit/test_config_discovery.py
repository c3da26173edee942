"""Config of discovery: 'workspaces: all', include/exclude, the management host."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from backupd.config import parse_config
from backupd.config_doc import render_example
from backupd.errors import ConfigError


def config(**source: Any) -> dict[str, Any]:
    return {
        "repository": {"path": "repo"},
        "sources": [
            {
                "name": "prod",
                "region": "cn-north-4",
                "project_id": "0123456789abcdef0123456789abcdef",
                "auth": {"type": "token", "token": "t"},
                "workspaces": "all",
                **source,
            }
        ],
    }


def load(data: dict[str, Any]) -> Any:
    return parse_config(data, base_dir=Path("/"), environ={})


def test_workspaces_all_with_filters_and_the_management_host() -> None:
    source = load(config(exclude=["tmp_*"], include=["*"])).sources[0]
    assert source.discovers and source.listed_workspaces == ()
    assert source.exclude == ("tmp_*",) and source.include == ("*",)
    assert source.management_api_endpoint == "https://dayu.cn-north-4.myhuaweicloud.com"
    assert source.dlf_endpoint == "https://dayu-dlf.cn-north-4.myhuaweicloud.com"
    override = load(config(management_endpoint="https://dayu.example.com/")).sources[0]
    assert override.management_api_endpoint == "https://dayu.example.com"


@pytest.mark.parametrize(
    ("source", "key", "words"),
    [
        ({"workspaces": "everything"}, "sources[0].workspaces", "must be 'all' or a list"),
        ({"workspaces": 3}, "sources[0].workspaces", "must be 'all' or a list"),
        (
            {"workspaces": [{"id": "f" * 32}], "exclude": ["tmp_*"]},
            "sources[0].exclude",
            "only applies with 'workspaces: all'",
        ),
        (
            {"workspaces": [{"id": "f" * 32}], "instance_id": "abc"},
            "sources[0].instance_id",
            "only applies",
        ),
        ({"region": None, "endpoint": "http://127.0.0.1:9"}, "sources[0]", "management_endpoint"),
        ({"instance_id": "a b"}, "sources[0].instance_id", "instance id"),
        ({"include": "sales"}, "sources[0].include", "must be a list"),
        ({"management_endpoint": "dayu"}, "sources[0].management_endpoint", "base URL"),
    ],
)
def test_discovery_mistakes_are_named_by_key(source: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(config(**source))
    assert caught.value.key == key
    assert words in caught.value.problem


def test_sample_config_shows_the_discovery_options_and_still_loads() -> None:
    sample = render_example()
    for text in ("# workspaces: all", "# management_endpoint:", "# instance_id:", "# exclude:"):
        assert text in sample
    # The commented alternative works when uncommented.
    data = yaml.safe_load(sample)
    data["sources"][0]["workspaces"] = "all"
    data["sources"][0]["exclude"] = ["tmp_*"]
    assert parse_config(data, base_dir=Path("/"), environ={}).sources[0].discovers
