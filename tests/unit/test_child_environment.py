"""Secrets this process holds stay out of the environment of the processes it starts."""

from __future__ import annotations

import gc

import pytest

from backupd.secret import Secret, child_environment, holds_secret, live_secrets


def test_a_variable_holding_a_live_secret_is_left_out() -> None:
    secret = Secret("child-env-secret-8f3a1c")
    base = {
        "PATH": "/usr/bin:/bin",
        "DLF_SK": "child-env-secret-8f3a1c",  # the config read it from ${DLF_SK}
        "PUSH_URL": "https://u:child-env-secret-8f3a1c@host/r.git",  # holds it inside
        "HOME": "/var/lib/backupd",
    }

    assert child_environment(base) == {"PATH": "/usr/bin:/bin", "HOME": "/var/lib/backupd"}
    assert secret.reveal() in live_secrets()


def test_a_secret_no_longer_held_is_no_longer_looked_for() -> None:
    Secret("child-env-gone-61d0e2")  # dropped at once
    gc.collect()

    assert "child-env-gone-61d0e2" not in live_secrets()
    assert child_environment({"OLD": "child-env-gone-61d0e2"}) == {"OLD": "child-env-gone-61d0e2"}


def test_two_equal_secrets_are_both_tracked() -> None:
    first, second = Secret("child-env-twin-77a9b4"), Secret("child-env-twin-77a9b4")
    del first
    gc.collect()

    assert second.reveal() in live_secrets()


def test_short_secrets_match_whole_values_only() -> None:
    short = frozenset({"abc"})
    assert holds_secret("abc", short)
    assert not holds_secret("/usr/abc/bin", short)  # PATH survives a silly short secret
    long = frozenset({"abcdefgh"})
    assert holds_secret("x=abcdefgh;", long)
    assert not holds_secret("abcdefg", long)
    assert not holds_secret("anything", frozenset())


def test_the_default_base_is_our_own_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    secret = Secret("child-env-own-0b5e93")
    monkeypatch.setenv("BACKUPD_TEST_OWN_SECRET", secret.reveal())
    monkeypatch.setenv("BACKUPD_TEST_PLAIN", "plain")

    environment = child_environment()

    assert "BACKUPD_TEST_OWN_SECRET" not in environment
    assert environment["BACKUPD_TEST_PLAIN"] == "plain"
