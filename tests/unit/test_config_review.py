"""restore.target_status and restore.approvers: what a workspace with review on needs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from backupd.config import parse_config
from backupd.errors import ConfigError
from tests.unit.test_config import minimal


def restore(**section: Any) -> Any:
    data = minimal(restore=section)
    return parse_config(data, base_dir=Path("/"), environ={}).sources[0].restore


def test_review_fields_default_to_unset_and_load_when_given() -> None:
    assert restore().target_status is None and restore().approvers == ()
    loaded = restore(target_status="SUBMITTED", approvers=["alice", "王伟"])
    assert loaded.target_status == "SUBMITTED"
    assert loaded.approvers == ("alice", "王伟")


@pytest.mark.parametrize(
    ("section", "key", "words"),
    [
        ({"target_status": "DEVELOP"}, "target_status", "SAVED, SUBMITTED, PRODUCTION"),
        ({"target_status": "submitted"}, "target_status", "must be one of"),
        ({"approvers": ["alice", " "]}, "approvers", "must not be empty"),
        ({"approvers": "alice"}, "approvers", ""),
    ],
)
def test_bad_review_fields_are_refused(section: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(ConfigError) as caught:
        restore(**section)
    assert caught.value.key == f"sources[0].restore.{key}"
    assert words in caught.value.problem
