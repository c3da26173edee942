"""Configuration: YAML → frozen dataclasses, validated with the key path in every error.

The dataclasses below are the schema: each field's ``metadata["doc"]`` describes it, and the
loader (:func:`load_config`) walks the type hints to validate input. One definition serves
validation, defaults and documentation, so they cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml

from backupd.errors import ConfigError
from backupd.secret import Secret

Check = Callable[[Any], str | None]


def option(
    doc: str,
    default: Any = dataclasses.MISSING,
    *,
    check: Check | None = None,
    example: Any = None,
    sample: bool = False,
) -> Any:
    """A documented config field; ``check`` returns a problem description or None.

    ``example`` is shown in the generated sample config where there is no default;
    ``sample=True`` shows an optional key set to its example rather than commented out.
    """
    metadata = {"doc": doc, "check": check, "example": example, "sample": sample}
    if isinstance(default, list | dict):
        raise TypeError("mutable defaults are not allowed")
    if default is dataclasses.MISSING:
        return field(metadata=metadata)
    return field(default=default, metadata=metadata)


# --- checks -----------------------------------------------------------------------------------

_FOLDER_NAME = re.compile(r"^[^/\\\x00-\x1f.][^/\\\x00-\x1f]{0,127}$")
_HEX32 = re.compile(r"^[0-9a-fA-F]{32}$")


def _folder_name(value: str) -> str | None:
    if not _FOLDER_NAME.match(value):
        return (
            f"{value!r} cannot be a folder name (1-128 characters, no '/', '\\' or control "
            "characters, must not start with '.')"
        )
    return None


def _between(low: float, high: float) -> Check:
    def check(value: float) -> str | None:
        if not low <= value <= high:
            return f"must be between {low:g} and {high:g}, got {value!r}"
        return None

    return check


def _positive(value: float) -> str | None:
    return None if value > 0 else f"must be greater than 0, got {value!r}"


def _project_id(value: str) -> str | None:
    return None if _HEX32.match(value) else "must be the 32-character hex IAM project id"


def _url(value: str) -> str | None:
    if not re.match(r"^https?://[^/\s]+/?$", value):
        return f"must be a base URL such as https://host[:port], got {value!r}"
    return None


def _credential_name(value: str) -> str | None:
    if not re.match(r"^[A-Za-z0-9_.@-]{1,255}$", value) or value in {".", ".."}:
        return f"{value!r} is not a valid systemd credential name"
    return None


# --- schema -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuthorConfig:
    name: str = option("Name used as git author and committer of snapshot commits.", "backupd")
    email: str = option("E-mail used as git author and committer.", "backupd@localhost")


@dataclass(frozen=True)
class RepositoryConfig:
    path: Path = option(
        "Git working tree that receives the snapshots; created if missing. Relative paths "
        "are taken from the config file's folder.",
        example="/var/lib/backupd/repo",
    )
    branch: str = option("Branch the snapshots are committed to.", "main")
    author: AuthorConfig = option("Identity of snapshot commits.", AuthorConfig())


@dataclass(frozen=True)
class TokenAuthConfig:
    """A ready-made IAM token (X-Auth-Token): for tests, the simulator and short-lived use."""

    type: Literal["token"] = option("Authentication kind.")
    token: Secret | None = option("The token itself (prefer ${ENV_VAR} or a file).", None)
    token_file: Path | None = option(
        "File holding the token.", None, example="/etc/backupd/token", sample=True
    )
    token_credential: str | None = option(
        "systemd credential name holding the token ($CREDENTIALS_DIRECTORY/<name>).",
        None,
        check=_credential_name,
        example="dlf-token",
    )


AuthConfig = TokenAuthConfig


@dataclass(frozen=True)
class WorkspaceConfig:
    id: str = option(
        "DataArts Studio workspace id (sent in the 'workspace' header).",
        example="0123456789abcdef0123456789abcdef",
    )
    name: str | None = option(
        "Readable name; also the folder name in the repository (default: the id). Keep it "
        "stable: renaming it starts a new folder.",
        None,
        check=_folder_name,
        example="sales",
        sample=True,
    )

    @property
    def folder(self) -> str:
        return self.name or self.id


@dataclass(frozen=True)
class RetryConfig:
    attempts: int = option(
        "Tries per API call before giving up. Only what a later try can fix is retried: "
        "throttling (429), server errors (5xx), connection failures, timeouts and bodies cut "
        "short; bad credentials or a bad request fail at once.",
        6,
        check=_between(1, 50),
    )
    base_delay: float = option(
        "Seconds before the first retry; doubled for each further one, with random jitter.",
        0.5,
        check=_between(0.001, 600),
    )
    max_delay: float = option("Longest wait between two tries (seconds).", 30.0, check=_positive)
    max_retry_after: float = option(
        "Longest wait honoured when the service asks for one (Retry-After, seconds).",
        120.0,
        check=_positive,
    )
    archive_attempts: int = option(
        "Downloads of one export batch whose archive fails validation (corrupt, hostile) "
        "before the workspace fails.",
        2,
        check=_between(1, 10),
    )


@dataclass(frozen=True)
class SourceConfig:
    name: str = option(
        "Short name of this account/region; the top folder in the repository.",
        check=_folder_name,
        example="prod",
    )
    project_id: str = option(
        "IAM project id of the region (32 hex characters).",
        check=_project_id,
        example="fedcba9876543210fedcba9876543210",
    )
    auth: AuthConfig = option("How to authenticate to DataArts Studio.")
    workspaces: tuple[WorkspaceConfig, ...] = option("Workspaces to back up.")
    region: str | None = option(
        "Region id; builds the endpoint https://dayu-dlf.<region>.myhuaweicloud.com.",
        None,
        example="cn-north-4",
        sample=True,
    )
    endpoint: str | None = option(
        "DataArts Factory endpoint overriding the one built from region (other clouds, proxies).",
        None,
        check=_url,
        example="https://dayu-dlf.eu-de.otc.t-systems.com",
    )
    export_depend: bool = option("Export the scripts and resources each job uses.", True)
    batch_size: int = option(
        "Jobs per batch-export call (the API allows at most 100).", 100, check=_between(1, 100)
    )
    page_size: int = option(
        "Jobs per page when listing (100 is safe everywhere; newer regions allow 1000).",
        100,
        check=_between(1, 1000),
    )
    timeout: float = option("Seconds to wait for any single API response.", 60.0, check=_positive)
    requests_per_second: float = option(
        "Client-side limit for listing calls (DataArts allows 30/s per user).",
        10.0,
        check=_between(0.1, 1000),
    )
    exports_per_second: float = option(
        "Client-side limit for batch-export calls (DataArts allows 10/s per user).",
        4.0,
        check=_between(0.1, 1000),
    )
    max_concurrent_requests: int = option(
        "Most API calls of this source in flight at the same time.", 2, check=_between(1, 64)
    )
    retry: RetryConfig = option("Retries of failed API calls.", RetryConfig())

    @property
    def dlf_endpoint(self) -> str:
        if self.endpoint:
            return self.endpoint.rstrip("/")
        return f"https://dayu-dlf.{self.region}.myhuaweicloud.com"


@dataclass(frozen=True)
class LimitsConfig:
    max_archive_bytes: int = option(
        "Largest export zip accepted from the API (bytes).", 1024**3, check=_positive
    )
    max_uncompressed_bytes: int = option(
        "Largest total uncompressed size of one export zip (bytes).", 2 * 1024**3, check=_positive
    )
    max_entries: int = option("Most files accepted in one export zip.", 100_000, check=_positive)


@dataclass(frozen=True)
class SafetyConfig:
    max_delete_fraction: float = option(
        "Refuse a snapshot that would delete more than this fraction of a workspace's jobs "
        "(a listing glitch looks exactly like a mass deletion). An empty listing for a "
        "workspace that holds jobs is always refused.",
        0.5,
        check=_between(0, 1),
    )
    allow_mass_delete: bool = option(
        "Record such deletions anyway (same as 'backupd snapshot --allow-mass-delete').", False
    )


@dataclass(frozen=True)
class Config:
    repository: RepositoryConfig = option("Where snapshots are committed.")
    sources: tuple[SourceConfig, ...] = option("DataArts Studio accounts/regions to back up.")
    safety: SafetyConfig = option("Guards against recording a false history.", SafetyConfig())
    limits: LimitsConfig = option(
        "Caps protecting against broken or hostile archives.", LimitsConfig()
    )
    staging_dir: Path | None = option(
        "Scratch folder for downloads and unpacking; must be outside the repository "
        "(default: the system temporary folder).",
        None,
    )


# --- loading ----------------------------------------------------------------------------------

_ENV_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _interpolate(text: str, key: str, environ: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        if name not in environ:
            raise ConfigError(key, f"environment variable {name} is not set")
        return environ[name]

    return _ENV_REF.sub(replace, text)


def _type_name(tp: Any) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    names |= {Path: "a path", Secret: "a string"}
    if tp in names:
        return names[tp]
    if typing.get_origin(tp) is Literal:
        return " or ".join(repr(v) for v in typing.get_args(tp))
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    if typing.get_origin(tp) is tuple:
        return "a list"
    return str(tp)


class _Loader:
    def __init__(self, base_dir: Path, environ: Mapping[str, str]) -> None:
        self.base_dir = base_dir
        self.environ = environ

    def value(self, tp: Any, raw: Any, key: str) -> Any:
        origin = typing.get_origin(tp)
        if origin in (Union, types.UnionType):
            options = [t for t in typing.get_args(tp) if t is not type(None)]
            if raw is None:
                if len(options) < len(typing.get_args(tp)):
                    return None
                raise ConfigError(key, "must not be empty")
            if len(options) == 1:
                return self.value(options[0], raw, key)
            return self.tagged_union(options, raw, key)
        if raw is None:
            raise ConfigError(key, f"must be {_type_name(tp)}, got nothing")
        if origin is Literal:
            if raw not in typing.get_args(tp):
                raise ConfigError(key, f"must be {_type_name(tp)}, got {raw!r}")
            return raw
        if origin is tuple:
            (item_type, _) = typing.get_args(tp)
            if not isinstance(raw, list):
                raise ConfigError(key, f"must be a list, got {type(raw).__name__}")
            return tuple(self.value(item_type, item, f"{key}[{i}]") for i, item in enumerate(raw))
        if dataclasses.is_dataclass(tp):
            return self.dataclass(tp, raw, key)
        return self.scalar(tp, raw, key)

    def scalar(self, tp: Any, raw: Any, key: str) -> Any:
        if isinstance(raw, str):
            raw = _interpolate(raw, key, self.environ)
        if tp is bool:
            if isinstance(raw, bool):
                return raw
        elif tp is int:
            if isinstance(raw, int) and not isinstance(raw, bool):
                return raw
        elif tp is float:
            if isinstance(raw, int | float) and not isinstance(raw, bool):
                return float(raw)
        elif tp in (str, Secret, Path):
            if isinstance(raw, str) and raw:
                if tp is Path:
                    path = Path(raw).expanduser()
                    return path if path.is_absolute() else self.base_dir / path
                return tp(raw)
            if isinstance(raw, str):
                raise ConfigError(key, "must not be empty")
        else:  # pragma: no cover - a schema bug, not a user error
            raise TypeError(f"unsupported config type {tp!r}")
        shown = "a secret value" if tp is Secret else repr(raw)
        raise ConfigError(key, f"must be {_type_name(tp)}, got {shown}")

    def tagged_union(self, options: list[Any], raw: Any, key: str) -> Any:
        if not isinstance(raw, dict):
            raise ConfigError(key, f"must be a mapping, got {type(raw).__name__}")
        by_tag = {typing.get_args(typing.get_type_hints(o)["type"])[0]: o for o in options}
        tag = raw.get("type")
        if tag not in by_tag:
            allowed = ", ".join(repr(t) for t in by_tag)
            raise ConfigError(f"{key}.type", f"must be one of {allowed}, got {tag!r}")
        return self.dataclass(by_tag[tag], raw, key)

    def dataclass(self, cls: Any, raw: Any, key: str) -> Any:
        if not isinstance(raw, dict):
            raise ConfigError(key, f"must be a mapping, got {type(raw).__name__}")
        hints = typing.get_type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for name in raw:
            if name not in fields:
                known = ", ".join(fields)
                raise ConfigError(_join(key, str(name)), f"unknown key (known keys: {known})")
        values: dict[str, Any] = {}
        for name, spec in fields.items():
            sub_key = _join(key, name)
            if name not in raw:
                if spec.default is dataclasses.MISSING:
                    raise ConfigError(sub_key, "is required")
                continue
            value = self.value(hints[name], raw[name], sub_key)
            check = spec.metadata.get("check")
            if check is not None and value is not None:
                problem = check(value)
                if problem:
                    raise ConfigError(sub_key, problem)
            values[name] = value
        instance = cls(**values)
        validate = getattr(instance, "_validate", None)
        if validate is not None:
            validate(key)
        return instance


def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _validate_config(config: Config) -> None:
    if not config.sources:
        raise ConfigError("sources", "must list at least one source")
    seen_sources: set[str] = set()
    for i, source in enumerate(config.sources):
        key = f"sources[{i}]"
        if source.name in seen_sources:
            raise ConfigError(f"{key}.name", f"{source.name!r} is used by another source")
        seen_sources.add(source.name)
        if not source.region and not source.endpoint:
            raise ConfigError(key, "needs 'region' or 'endpoint'")
        _validate_auth(source.auth, f"{key}.auth")
        if not source.workspaces:
            raise ConfigError(f"{key}.workspaces", "must list at least one workspace")
        folders: set[str] = set()
        for j, workspace in enumerate(source.workspaces):
            if workspace.folder in folders:
                raise ConfigError(
                    f"{key}.workspaces[{j}]", f"folder {workspace.folder!r} is used twice"
                )
            folders.add(workspace.folder)
            problem = _folder_name(workspace.folder)
            if problem:
                raise ConfigError(f"{key}.workspaces[{j}].id", problem)
    if config.staging_dir is not None:
        repo = config.repository.path.resolve()
        staging = config.staging_dir.resolve()
        if staging == repo or staging.is_relative_to(repo):
            raise ConfigError("staging_dir", "must be outside the repository working tree")


def _validate_auth(auth: AuthConfig, key: str) -> None:
    given = [
        name
        for name in ("token", "token_file", "token_credential")
        if getattr(auth, name) is not None
    ]
    if len(given) != 1:
        raise ConfigError(key, "set exactly one of token, token_file, token_credential")


def parse_config(data: Any, *, base_dir: Path, environ: Mapping[str, str] | None = None) -> Config:
    """Validate already-parsed YAML data; relative paths are taken from ``base_dir``."""
    loader = _Loader(base_dir, os.environ if environ is None else environ)
    if not isinstance(data, dict):
        raise ConfigError("", "the file must hold a mapping at the top level")
    config: Config = loader.dataclass(Config, data, "")
    _validate_config(config)
    return config


def load_config(path: Path, *, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate a config file; every problem is a ConfigError naming the key."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError("", f"cannot read {path}: {error.strerror or error}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or "invalid YAML"
        raise ConfigError("", f"{path}: {problem}{where}") from None
    return parse_config(data, base_dir=path.resolve().parent, environ=environ)
