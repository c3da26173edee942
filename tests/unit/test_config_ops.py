"""Config of the operable service: state_dir, metrics, alerts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from backupd.config import parse_config
from backupd.errors import ConfigError


def config(**extra: Any) -> dict[str, Any]:
    source = {
        "name": "prod",
        "region": "cn-north-4",
        "project_id": "0123456789abcdef0123456789abcdef",
        "auth": {"type": "token", "token": "t0ken"},
        "workspaces": [{"id": "fedcba9876543210fedcba9876543210", "name": "sales"}],
    }
    return {"repository": {"path": "/srv/repo"}, "sources": [source], **extra}


def test_defaults_keep_metrics_and_alerts_off_and_status_in_the_git_folder() -> None:
    loaded = parse_config(config(), base_dir=Path("/"), environ={})
    assert loaded.metrics is None
    assert (loaded.alerts.webhook, loaded.alerts.command) == (None, ())
    assert loaded.status_dir == Path("/srv/repo/.git/backupd")
    chosen = parse_config(config(state_dir="state"), base_dir=Path("/etc/backupd"), environ={})
    assert chosen.status_dir == Path("/etc/backupd/state")


@pytest.mark.parametrize(
    ("extra", "key", "words"),
    [
        ({"metrics": {"listen": "9464"}}, "metrics.listen", "host:port"),
        ({"metrics": {"listen": "localhost:99999"}}, "metrics.listen", "host:port"),
        ({"metrics": {}}, "metrics.listen", "is required"),
        ({"alerts": {"webhook": "hooks.example.com"}}, "alerts.webhook", "URL"),
        ({"alerts": {"command": [" "]}}, "alerts.command", "must not be empty"),
        ({"alerts": {"command": "notify-send"}}, "alerts.command", "must be a list"),
        ({"alerts": {"timeout": 0}}, "alerts.timeout", "between"),
        ({"state_dir": "/srv/repo/state"}, "state_dir", "outside the working tree"),
    ],
)
def test_mistakes_are_named(extra: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(config(**extra), base_dir=Path("/"), environ={})
    assert caught.value.key == key
    assert words in caught.value.problem


def test_a_webhook_url_stays_out_of_reprs() -> None:
    hook = "https://hooks.example.com/services/T0/B0/very-secret"
    loaded = parse_config(config(alerts={"webhook": hook}), base_dir=Path("/"), environ={})
    assert loaded.alerts.webhook == hook
    assert "very-secret" not in repr(loaded)
    assert (
        parse_config(
            config(metrics={"listen": "[::1]:9464"}, state_dir="/srv/repo/.git/state"),
            base_dir=Path("/"),
            environ={},
        ).metrics
        is not None
    )
