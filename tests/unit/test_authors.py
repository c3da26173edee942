"""Attribution of changed paths to DataArts users and the split into commits."""

from __future__ import annotations

from backupd.store.authors import attribute, default_identity, saved_by, split_commits
from backupd.store.gitrepo import Identity
from backupd.store.summary import summarise
from backupd.store.tree import ChangeSet

CHANGES = ChangeSet(
    added=("jobs/new/new.job", "jobs/new/s.script"),
    modified=(
        ".backupd/index.json",
        "jobs/a/a.job",
        "jobs/b/s.script",  # a script copy changed without its job
        "scripts/s.script",
    ),
    removed=("jobs/gone/gone.job",),
)
EDITORS = {"new": "carol", "a": "alice", "b": "bob", "gone": "dave"}


def saved(changes: ChangeSet) -> dict[str, str]:
    return saved_by(summarise(changes), changes, EDITORS)


def test_a_job_folder_is_its_editors_only_when_the_job_file_changed() -> None:
    # b's script copy changed without its job file; gone's deletion is nobody's edit.
    assert saved(CHANGES) == {"new": "carol", "a": "alice"}
    users = attribute(CHANGES, saved(CHANGES))
    assert users == {
        "jobs/new/new.job": "carol",
        "jobs/new/s.script": "carol",
        ".backupd/index.json": None,
        "jobs/a/a.job": "alice",
        "jobs/b/s.script": None,
        "scripts/s.script": None,
        "jobs/gone/gone.job": None,
    }


def test_per_author_split_orders_by_rank_and_ends_with_backupd_and_bookkeeping() -> None:
    groups = split_commits(
        CHANGES, attribute(CHANGES, saved(CHANGES)), per_author=True, rank={"alice": 9, "carol": 3}
    )
    assert [g.user for g in groups] == ["carol", "alice", None]
    assert groups[0].changes.added == ("jobs/new/new.job", "jobs/new/s.script")
    assert groups[1].changes.modified == ("jobs/a/a.job",)
    assert set(groups[2].changes.paths) == {
        ".backupd/index.json",
        "jobs/b/s.script",
        "scripts/s.script",
        "jobs/gone/gone.job",
    }
    assert sorted(p for g in groups for p in g.changes.paths) == sorted(CHANGES.paths)


def test_single_commit_is_a_users_only_when_they_made_every_change() -> None:
    mixed = split_commits(CHANGES, attribute(CHANGES, saved(CHANGES)), per_author=False)
    assert [(g.user, g.changes) for g in mixed] == [(None, CHANGES)]
    alone = ChangeSet(modified=(".backupd/index.json", "jobs/a/a.job", "jobs/a/x.script"))
    (group,) = split_commits(alone, attribute(alone, saved(alone)), per_author=False)
    assert group.user == "alice"


def test_default_identity_is_safe_for_git() -> None:
    assert default_identity("li.wei") == Identity("li.wei", "li.wei@dataarts.invalid")
    assert default_identity("王伟") == Identity("王伟", "王伟@dataarts.invalid")
    assert default_identity("Ann <x@y> Lee") == Identity(
        "Ann x@y Lee", "Ann.x.y.Lee@dataarts.invalid"
    )
    assert default_identity("<>") == Identity("unknown", "unknown@dataarts.invalid")
