"""A string that never shows itself: safe in reprs, logs and exception texts.

Every live :class:`Secret` is also known here, so that :func:`child_environment` can keep
the secrets this process holds out of the environment of the processes it starts (a secret
that the config takes from ``${ENV_VAR}`` is in our own environment, and a child would
inherit it).
"""

from __future__ import annotations

import itertools
import os
import threading
import weakref
from collections.abc import Mapping

# A secret at least this long is also found inside a longer value (a URL, a header line);
# a shorter one only as the whole value, so that a silly short secret cannot empty PATH.
_MIN_CONTAINED = 8

_live: weakref.WeakValueDictionary[int, Secret] = weakref.WeakValueDictionary()
_live_lock = threading.Lock()
_numbers = itertools.count()


class Secret:
    """Holds a credential; only :meth:`reveal` returns it."""

    __slots__ = ("__weakref__", "_value")

    def __init__(self, value: str) -> None:
        self._value = value
        with _live_lock:
            _live[next(_numbers)] = self

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> str:  # no pickling: a pickle would carry the value in clear
        raise TypeError("Secret cannot be pickled")


def live_secrets() -> frozenset[str]:
    """The values of every Secret this process holds now."""
    with _live_lock:
        secrets = list(_live.values())
    return frozenset(value for secret in secrets if (value := secret.reveal()))


def holds_secret(text: str, secrets: frozenset[str]) -> bool:
    """Whether ``text`` is one of ``secrets`` or contains one (of at least 8 characters)."""
    return any(text == s or (len(s) >= _MIN_CONTAINED and s in text) for s in secrets)


def child_environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a process we start: ``base`` (default: ours) without any variable
    whose value holds a secret this process holds."""
    secrets = live_secrets()
    source = os.environ if base is None else base
    return {name: value for name, value in source.items() if not holds_secret(value, secrets)}
