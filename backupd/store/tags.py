"""Snapshot tags: named restore points such as ``snapshot/2026-11-29T0300Z`` (pure rules).

A tag marks HEAD after a snapshot run: the state of every workspace at that moment. Policies:

* ``none``   never tag.
* ``every``  tag after every run whose HEAD carries no snapshot tag yet (so each run that
  committed something; a run that changed nothing adds no second tag to the same commit).
* ``daily``  tag after the first run of each UTC calendar day, and ``weekly`` after the first
  run of each ISO week (Monday to Sunday, UTC) — even when that run committed nothing, so the
  tags of a quiet repository still say "this was the state on that day".

Names use the run's UTC time to the minute; a second tag within the same minute gets ``-2``,
``-3``…. backupd never moves or deletes a tag.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Literal

TagPolicy = Literal["none", "every", "daily", "weekly"]
TAG_PREFIX = "snapshot/"


def tag_name(now: datetime, taken: Collection[str] = ()) -> str:
    base = f"{TAG_PREFIX}{now.astimezone(UTC):%Y-%m-%dT%H%MZ}"
    name, number = base, 1
    while name in taken:
        number += 1
        name = f"{base}-{number}"
    return name


def _period(policy: TagPolicy, moment: datetime) -> tuple[int, ...]:
    utc = moment.astimezone(UTC)
    if policy == "daily":
        return (utc.year, utc.month, utc.day)
    iso = utc.isocalendar()
    return (iso.year, iso.week)


def tag_due(
    policy: TagPolicy, now: datetime, last_tag: datetime | None, *, head_tagged: bool
) -> bool:
    """Whether a run ending at ``now`` tags HEAD (``last_tag``: newest snapshot tag's date)."""
    if policy == "none":
        return False
    if policy == "every":
        return not head_tagged
    return last_tag is None or _period(policy, last_tag) < _period(policy, now)
