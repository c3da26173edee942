"""Configuration: YAML → frozen dataclasses, validated with the key path in every error.

The dataclasses below are the schema: each field's ``metadata["doc"]`` describes it, and the
loader (:func:`load_config`) walks the type hints to validate input. One definition serves
validation, defaults and documentation, so they cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import os
import re
import types
import typing
import zoneinfo
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, Union

from backupd.config_yaml import read_yaml
from backupd.dataarts.limits import MAX_EXPORT_NAMES
from backupd.errors import ConfigError
from backupd.logs import log
from backupd.secret import Secret
from backupd.store.remote import url_problem
from backupd.store.volatile import parse_field_path

logger = logging.getLogger(__name__)

Check = Callable[[Any], str | None]


def option(
    doc: str,
    default: Any = dataclasses.MISSING,
    *,
    check: Check | None = None,
    example: Any = None,
    sample: bool = False,
    shown: bool = True,
) -> Any:
    """A documented config field; ``check`` returns a problem description or None.

    ``example`` is shown in the generated sample config where there is no default;
    ``sample=True`` shows an optional key set to its example rather than commented out;
    ``shown=False`` keeps the value out of the config objects' reprs.
    """
    metadata = {"doc": doc, "check": check, "example": example, "sample": sample}
    if isinstance(default, list | dict):
        raise TypeError("mutable defaults are not allowed")
    if isinstance(default, MappingProxyType):  # read-only, but unhashable: share one instance
        return field(default_factory=lambda: default, metadata=metadata)
    if default is dataclasses.MISSING:
        return field(metadata=metadata, repr=shown)
    return field(default=default, metadata=metadata, repr=shown)


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


def _rate(value: float) -> str | None:
    return _between(0.1, 1000)(value)


def _positive(value: float) -> str | None:
    return None if value > 0 else f"must be greater than 0, got {value!r}"


def _project_id(value: str) -> str | None:
    return None if _HEX32.match(value) else "must be the 32-character hex IAM project id"


def _url(value: str) -> str | None:
    if not re.match(r"^https?://[^/\s]+/?$", value):
        return f"must be a base URL such as https://host[:port], got {value!r}"
    return None


def _url_with_path(value: str) -> str | None:
    if not re.match(r"^https?://[^/\s]+(/\S*)?$", value):
        return f"must be a URL such as https://host[:port][/path], got {value!r}"
    return None


def _bucket_name(value: str) -> str | None:
    if not re.match(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", value):
        return (
            f"{value!r} is not an OBS bucket name (3-63 lowercase letters, digits, '-' or '.', "
            "starting and ending with a letter or digit)"
        )
    return None


def _obs_prefix(value: str) -> str | None:
    if value.startswith("/") or "\\" in value or any(c < " " for c in value):
        return f"{value!r} must be a relative key prefix such as 'backupd-restore/'"
    return None


IMPORT_TARGET_STATUSES = ("SAVED", "SUBMITTED", "PRODUCTION")


def _target_status(value: str) -> str | None:
    if value not in IMPORT_TARGET_STATUSES:
        return f"must be one of {', '.join(IMPORT_TARGET_STATUSES)}, got {value!r}"
    return None


def _user_names(value: tuple[str, ...]) -> str | None:
    if any(not name.strip() for name in value):
        return "user names must not be empty"
    return None


def _instance_id(value: str) -> str | None:
    if not re.match(r"^[A-Za-z0-9_-]{1,64}$", value):
        return f"{value!r} is not a DataArts Studio instance id (letters, digits, '-', '_')"
    return None


def _patterns(value: tuple[str, ...]) -> str | None:
    for pattern in value:
        if not pattern.strip():
            return "patterns must not be empty"
    return None


def _credential_name(value: str) -> str | None:
    if not re.match(r"^[A-Za-z0-9_.@-]{1,255}$", value) or value in {".", ".."}:
        return f"{value!r} is not a valid systemd credential name"
    return None


def _access_key_id(value: str) -> str | None:
    # Checked here rather than at the first request: a space or comma would break the header.
    if not re.fullmatch(r"[\x21-\x7e]+", value) or "," in value:
        return "must be printable ASCII without spaces or commas"
    return None


def _listen_address(value: str) -> str | None:
    host, _, port = value.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")  # [::1]:9464
    if not host or not re.fullmatch("[0-9]{1,5}", port) or not 0 < int(port) < 65536:
        return f"must be host:port such as 127.0.0.1:9464, got {value!r}"
    return None


def _command(value: tuple[str, ...]) -> str | None:
    if value and not value[0].strip():
        return "the program (first item) must not be empty"
    return None


def _prom_file(value: Path) -> str | None:
    # node_exporter's textfile collector reads only *.prom files.
    return None if value.name.endswith(".prom") else f"{value} must be a file name ending in .prom"


def _existing_file(value: Path) -> str | None:
    return None if value.is_file() else f"{value} is not a readable file"


def _one_source(instance: Any, key: str, names: tuple[str, ...], *, required: bool) -> None:
    """Require exactly one (``required``) or at most one of the fields ``names``."""
    given = [name for name in names if getattr(instance, name) is not None]
    if len(given) > 1:
        raise ConfigError(key, f"set only one of {', '.join(names)} (found {', '.join(given)})")
    if required and not given:
        raise ConfigError(key, f"set one of {', '.join(names)}")


_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_CRON_FIELDS = (  # name, lowest, highest, names standing for lowest, lowest + 1, ...
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day-of-month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 7, _WEEKDAYS),
)
_CRON_ITEM = re.compile(r"^(?:\*|([a-z0-9]+)(?:-([a-z0-9]+))?)(?:/([0-9]+))?$")


def _cron(value: str) -> str | None:
    """A 5-field crontab expression: numbers, names, '*', ranges, lists and steps."""
    fields = value.split()
    if len(fields) != len(_CRON_FIELDS):
        return (
            "must have 5 fields (minute hour day-of-month month day-of-week), "
            f"got {len(fields)} in {value!r}"
        )
    for text, (name, low, high, names) in zip(fields, _CRON_FIELDS, strict=True):
        for item in text.lower().split(","):
            match = _CRON_ITEM.match(item)
            if match is None or (match[3] or "1").strip("0") == "":
                return f"{name} field {text!r} is not valid cron syntax"
            values: list[int] = []
            for bound in (match[1], match[2]):
                if bound is None:
                    continue
                if bound in names:
                    values.append(names.index(bound) + low)  # jan = 1, sun = 0
                elif bound.isdigit() and len(bound) < 10 and low <= int(bound) <= high:
                    values.append(int(bound))
                else:
                    return f"{name} field {text!r}: {bound!r} is not in {low}-{high}"
            if values != sorted(values):
                return f"{name} field {text!r}: the range runs backwards"
    return None


def _timezone(value: str) -> str | None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return f"{value!r} is not an IANA time zone (such as UTC or Asia/Shanghai)"
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
class AkSkAuthConfig:
    """Access key (AK/SK): every request is signed; no token, no password (recommended)."""

    type: Literal["aksk"] = option("Authentication kind.")
    ak: str = option(
        "Access key id (AK). Not secret by itself, but never shown in full.",
        check=_access_key_id,
        example="EXAMPLEAK0123456789A",
        shown=False,
    )
    sk: Secret | None = option("Secret access key (SK) itself (prefer a file or credential).", None)
    sk_file: Path | None = option(
        "File holding the SK (mode 0600).", None, example="/etc/backupd/sk", sample=True
    )
    sk_credential: str | None = option(
        "systemd credential name holding the SK ($CREDENTIALS_DIRECTORY/<name>).",
        None,
        check=_credential_name,
        example="dlf-sk",
    )
    security_token: Secret | None = option(
        "Security token of temporary AK/SK credentials (sent as X-Security-Token).", None
    )
    security_token_file: Path | None = option(
        "File holding the security token.", None, example="/run/backupd/security-token"
    )
    security_token_credential: str | None = option(
        "systemd credential name holding the security token.",
        None,
        check=_credential_name,
        example="dlf-security-token",
    )

    def _validate(self, key: str) -> None:
        _one_source(self, key, ("sk", "sk_file", "sk_credential"), required=True)
        names = ("security_token", "security_token_file", "security_token_credential")
        _one_source(self, key, names, required=False)


@dataclass(frozen=True)
class PasswordAuthConfig:
    """IAM user and password: backupd gets a project-scoped IAM token and reuses it."""

    type: Literal["password"] = option("Authentication kind.")
    user: str = option("IAM user name (needs programmatic access).", example="backupd")
    domain: str = option("Account (domain) name the IAM user belongs to.", example="my-account")
    password: Secret | None = option("The password itself (prefer a file or credential).", None)
    password_file: Path | None = option(
        "File holding the password (mode 0600).",
        None,
        example="/etc/backupd/password",
        sample=True,
    )
    password_credential: str | None = option(
        "systemd credential name holding the password ($CREDENTIALS_DIRECTORY/<name>).",
        None,
        check=_credential_name,
        example="dlf-password",
    )
    iam_endpoint: str | None = option(
        "IAM endpoint issuing the token (default: https://iam.<region>.myhuaweicloud.com).",
        None,
        check=_url,
        example="https://iam.eu-de.otc.t-systems.com",
    )

    def _validate(self, key: str) -> None:
        _one_source(self, key, ("password", "password_file", "password_credential"), required=True)


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

    def _validate(self, key: str) -> None:
        _one_source(self, key, ("token", "token_file", "token_credential"), required=True)


AuthConfig = AkSkAuthConfig | PasswordAuthConfig | TokenAuthConfig


@dataclass(frozen=True)
class ScheduleConfig:
    """When `backupd run` snapshots a workspace.

    Every key is optional at every level: a workspace's schedule inherits each unset key from
    its source's, which inherits from the top-level one. 'cron' and 'interval' count as one
    choice: the nearest level that sets either decides.
    """

    cron: str | None = option(
        "Cron expression, 5 fields: minute hour day-of-month month day-of-week (0 or 7 = "
        "Sunday; names like mon-fri and jan allowed); quote it when it starts with '*'. "
        "When no level sets cron or interval, snapshots run hourly.",
        None,
        check=_cron,
        example="0 * * * *",
        sample=True,
    )
    interval: float | None = option(
        "Seconds between snapshots, instead of cron (counted from the daemon's start).",
        None,
        check=_positive,
        example=21600,
    )
    timezone: str | None = option(
        "IANA time zone the cron expression is read in (default: UTC).",
        None,
        check=_timezone,
        example="Asia/Shanghai",
    )
    jitter: float | None = option(
        "Delay each run by a random 0 to this many seconds, so that many workspaces or "
        "daemons do not call the API at the same instant (default: 0).",
        None,
        check=_between(0, 86400),
        example=60,
    )

    def _validate(self, key: str) -> None:
        if self.cron is not None and self.interval is not None:
            raise ConfigError(key, "set cron or interval, not both")


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
    schedule: ScheduleConfig | None = option(
        "This workspace's own schedule (`backupd run`); unset keys come from the source's.",
        None,
        example={"cron": "30 2 * * *"},
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
class RestoreConfig:
    """Where `backupd restore --import` puts the zip: DataArts imports from OBS only."""

    obs_bucket: str | None = option(
        "OBS bucket for restore zips (in the workspace's region); needed only for --import.",
        None,
        check=_bucket_name,
        example="dataarts-restore",
    )
    obs_prefix: str = option(
        "Key prefix (folder) in the bucket for uploaded restore zips.",
        "backupd-restore/",
        check=_obs_prefix,
    )
    obs_endpoint: str | None = option(
        "OBS endpoint (default: https://obs.<region>.myhuaweicloud.com).",
        None,
        check=_url_with_path,
        example="https://obs.cn-north-4.myhuaweicloud.com",
    )
    obs_ak: str | None = option(
        "AK for OBS. Default: the source's own AK/SK when its auth is AK/SK; set this (with "
        "one of obs_sk, obs_sk_file, obs_sk_credential) otherwise.",
        None,
        example="${OBS_AK}",
    )
    obs_sk: Secret | None = option("SK for obs_ak (prefer a file or ${ENV_VAR}).", None)
    obs_sk_file: Path | None = option(
        "File holding the SK for obs_ak.", None, example="/etc/backupd/obs-sk"
    )
    obs_sk_credential: str | None = option(
        "systemd credential name holding the SK for obs_ak.",
        None,
        check=_credential_name,
        example="obs-sk",
    )
    import_timeout: float = option(
        "Seconds to wait for DataArts to finish one import task.", 900.0, check=_positive
    )
    max_import_bytes: int = option(
        "Largest restore zip (uncompressed bytes) imported in one go; bigger restores are "
        "imported in parts (DataArts imports at most 10 MB).",
        10 * 1024**2,
        check=_between(1024, 10 * 1024**2),
    )
    target_status: str | None = option(
        "State of the imported jobs in a workspace with review (approval) on, where DataArts "
        "needs it: SAVED (saved only), SUBMITTED (submitted, runs once approved) or PRODUCTION "
        "(runs at once; workspace admins only). Not sent when unset; --target-status "
        "overrides it.",
        None,
        check=_target_status,
        example="SUBMITTED",
    )
    approvers: tuple[str, ...] = option(
        "Approvers of the imported jobs in a workspace with review on (DataArts user names, "
        "sent as approverName); --approver overrides the list.",
        (),
        check=_user_names,
        example=("alice",),
    )

    def _validate(self, key: str) -> None:
        secrets = [
            name
            for name in ("obs_sk", "obs_sk_file", "obs_sk_credential")
            if getattr(self, name) is not None
        ]
        if self.obs_ak is not None and len(secrets) != 1:
            raise ConfigError(
                key, "with obs_ak set exactly one of obs_sk, obs_sk_file, obs_sk_credential"
            )
        if self.obs_ak is None and secrets:
            raise ConfigError(f"{key}.obs_ak", f"is required when {secrets[0]} is set")


@dataclass(frozen=True)
class RatesConfig:
    """Calls per second of each DataArts API: the service limits each API per user on its
    own (the documented limits are the defaults). backupd slows an API down when the
    service answers 429 (throttled) and speeds it up again to this rate."""

    jobs_list: float = option("Job list calls (documented: 30/s per user).", 30.0, check=_rate)
    scripts_list: float = option(
        "Script list calls (documented: 30/s per user).", 30.0, check=_rate
    )
    resources_list: float = option(
        "Resource list calls (documented: 10/s per user).", 10.0, check=_rate
    )
    export: float = option(
        "Batch-export calls (documented: 10/s per user): what a first snapshot waits on.",
        10.0,
        check=_rate,
    )
    job_detail: float = option(
        "Job detail calls, which prove a job deleted (documented: 10/s per user).",
        10.0,
        check=_rate,
    )
    restore: float = option(
        "Restore calls: check-file, import and the import task query (documented: 10/s per "
        "user each).",
        10.0,
        check=_rate,
    )
    management: float = option(
        "Instance and workspace list calls of 'workspaces: all' (documented: 10/s per user).",
        10.0,
        check=_rate,
    )

    def as_budgets(self) -> dict[str, float]:
        """Budget name -> calls per second (the names of backupd.dataarts.budget)."""
        return {
            "jobs_list": self.jobs_list,
            "scripts_list": self.scripts_list,
            "resources_list": self.resources_list,
            "export": self.export,
            "job_detail": self.job_detail,
            "restore": self.restore,
            "management": self.management,
        }


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
    workspaces: tuple[WorkspaceConfig, ...] | Literal["all"] = option(
        "Workspaces to back up: a list, or 'all' to discover every workspace of the DataArts "
        "Studio instance at each snapshot (new ones are backed up from then on; folders of "
        "vanished ones are kept)."
    )
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
    ca_bundle: Path | None = option(
        "PEM file of extra CA certificates to trust, besides the public ones, for DataArts and "
        "IAM (a private CA or a TLS-inspecting proxy). Certificates are always verified.",
        None,
        check=_existing_file,
        example="/etc/backupd/ca.pem",
    )
    management_endpoint: str | None = option(
        "DataArts Studio management endpoint (instance and workspace lists, used by "
        "'workspaces: all') overriding https://dayu.<region>.myhuaweicloud.com.",
        None,
        check=_url,
        example="https://dayu.eu-de.otc.t-systems.com",
    )
    instance_id: str | None = option(
        "With 'workspaces: all': the DataArts Studio instance whose workspaces are discovered "
        "(default: the project's only effective instance; an error names them if there are "
        "several).",
        None,
        check=_instance_id,
        example="0d9e4b7a5c3f4e2a9b8c7d6e5f4a3b2c",
    )
    include: tuple[str, ...] = option(
        "With 'workspaces: all': back up only workspaces whose name or id matches one of "
        "these glob patterns (fnmatch, case-sensitive; default: all of them).",
        (),
        check=_patterns,
        example=["sales*", "finance"],
    )
    exclude: tuple[str, ...] = option(
        "With 'workspaces: all': skip workspaces whose name or id matches one of these glob "
        "patterns (applied after include).",
        (),
        check=_patterns,
        example=["tmp_*"],
    )
    export_depend: bool = option("Export the scripts and resources each job uses.", True)
    resources: bool = option(
        "Back up the workspace's resource definitions (the resource list, an optional API). "
        "Where that API is not published or not allowed, snapshots are partial with a "
        "warning; false: it is not asked and the stored definitions stay as they are.",
        True,
    )
    incremental: bool = option(
        "Export only jobs that are new, whose lastUpdateTime moved, or that use a script "
        "that changed; the rest of the folder stays as committed. Off: every snapshot "
        "exports every job.",
        True,
    )
    full_every: float = option(
        "Seconds between full snapshots that export every job even when incremental (they "
        "catch what lastUpdateTime does not show). 0: every snapshot is full.",
        86400.0,
        check=_between(0, 365 * 86400),
    )
    batch_size: int = option(
        f"Jobs per batch-export call (the API allows at most {MAX_EXPORT_NAMES}).",
        MAX_EXPORT_NAMES,
        check=_between(1, MAX_EXPORT_NAMES),
    )
    page_size: int = option(
        "Jobs per page when listing (100 is safe everywhere; newer regions allow 1000).",
        100,
        check=_between(1, 1000),
    )
    timeout: float = option("Seconds to wait for any single API response.", 60.0, check=_positive)
    rates: RatesConfig = option(
        "Calls per second of each DataArts API, each a budget of its own as the service "
        "counts them. Halve them when two hosts or tools use the same AK (the limits are "
        "per user).",
        RatesConfig(),
    )
    requests_per_second: float | None = option(
        "Deprecated (use rates, not both): the rate of each listing API (jobs_list, "
        "scripts_list, resources_list, management).",
        None,
        check=_rate,
    )
    exports_per_second: float | None = option(
        "Deprecated (use rates, not both): the rate of each export-class API (export, "
        "job_detail, restore).",
        None,
        check=_rate,
    )
    max_concurrent_requests: int = option(
        "Most calls of one API in flight at the same time. How many are is measured: the "
        "API's rate times how long its calls take (10 exports/s of 0.5 s each: 6).",
        32,
        check=_between(1, 64),
    )
    retry: RetryConfig = option("Retries of failed API calls.", RetryConfig())
    restore: RestoreConfig = option(
        "Restore settings: where `backupd restore --import` uploads the zip.", RestoreConfig()
    )
    schedule: ScheduleConfig | None = option(
        "Schedule for this source's workspaces (`backupd run`); unset keys come from the "
        "global schedule.",
        None,
        example={"interval": 3600},
    )

    def _validate(self, key: str) -> None:
        old = [k for k in ("requests_per_second", "exports_per_second") if getattr(self, k)]
        if old and self.rates != RatesConfig():
            raise ConfigError(
                f"{key}.{old[0]}", "is a deprecated form of 'rates': set one or the other"
            )

    @property
    def dlf_endpoint(self) -> str:
        if self.endpoint:
            return self.endpoint.rstrip("/")
        return f"https://dayu-dlf.{self.region}.myhuaweicloud.com"

    @property
    def iam_endpoint(self) -> str:
        """Where a password is exchanged for a token (only meaningful for password auth)."""
        configured = getattr(self.auth, "iam_endpoint", None)
        if configured:
            return str(configured).rstrip("/")
        return f"https://iam.{self.region}.myhuaweicloud.com"

    @property
    def obs_endpoint(self) -> str:
        if self.restore.obs_endpoint:
            return self.restore.obs_endpoint.rstrip("/")
        return f"https://obs.{self.region}.myhuaweicloud.com"

    @property
    def discovers(self) -> bool:
        """True when the workspaces are discovered ('workspaces: all'), not listed."""
        return self.workspaces == "all"

    @property
    def listed_workspaces(self) -> tuple[WorkspaceConfig, ...]:
        return () if isinstance(self.workspaces, str) else self.workspaces

    @property
    def management_api_endpoint(self) -> str:
        # Instances and workspaces live on dayu.<region>, not on dayu-dlf (dlf-api.md §1.1).
        if self.management_endpoint:
            return self.management_endpoint.rstrip("/")
        return f"https://dayu.{self.region}.myhuaweicloud.com"


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
        "Refuse a snapshot that would delete more than this fraction of one list of a "
        "workspace: its BATCH jobs, REAL_TIME jobs, scripts or resources, each on its own. "
        "Only deletions the service confirmed count (a list that glitched empty deletes "
        "nothing); one or two are always let through.",
        0.5,
        check=_between(0, 1),
    )
    allow_mass_delete: bool = option(
        "Record such deletions anyway (same as 'backupd snapshot --allow-mass-delete').", False
    )


def _field_paths(value: tuple[str, ...]) -> str | None:
    for text in value:
        try:
            parse_field_path(text)
        except ValueError as error:
            return f"{text!r}: {error}"
    return None


DEFAULT_VOLATILE_JOB_FIELDS = (
    "version",
    "lastUpdateUser",
    "lastUpdateTime",
    "createTime",
    "nodes[].lineageInfo",
)


@dataclass(frozen=True)
class VolatileFieldsConfig:
    job: tuple[str, ...] = option(
        "Fields of .job files that change without a user edit. Paths are dotted keys, with [] "
        "after a key for every list element; other candidates: id, location, nodes[].location.",
        DEFAULT_VOLATILE_JOB_FIELDS,
        check=_field_paths,
    )
    script: tuple[str, ...] = option(
        "Fields of .script files that change without a user edit (same syntax).",
        (),
        check=_field_paths,
    )


@dataclass(frozen=True)
class DataArtsUserConfig:
    name: str | None = option("Git author name (default: the DataArts user name).", None)
    email: str | None = option("Git author e-mail (default: <user>@dataarts.invalid).", None)


@dataclass(frozen=True)
class HistoryConfig:
    volatile_fields: VolatileFieldsConfig = option(
        "When a new export differs from the stored file only in these fields (or in key "
        "order, whitespace or number spelling), the stored file is kept as it is: no commit "
        "for noise, and the stored file is still a complete, real export.",
        VolatileFieldsConfig(),
    )
    commit_per_author: bool = option(
        "Split a workspace snapshot into one commit per DataArts user who saved jobs in it "
        "(each touching only that user's jobs), then one commit by repository.author for "
        "changes without a known user (deletions, scripts changed without their job). When "
        "off: one commit, authored by the user if a single user made all of its changes, "
        "whose body names the user of each job.",
        False,
    )
    authors: Mapping[str, DataArtsUserConfig] = option(
        "Git identity of DataArts users (lastUpdateUser → name and email) for commits they "
        "author; a user not listed appears as '<user> <user@dataarts.invalid>'. The "
        "committer is always repository.author.",
        MappingProxyType({}),
        example={"li.wei": {"name": "Li Wei", "email": "li.wei@example.com"}},
    )
    tags: Literal["none", "every", "daily", "weekly"] = option(
        "Annotated restore-point tags snapshot/<UTC time> on HEAD after a snapshot run. "
        "every: after each run whose HEAD is not tagged yet (each run that committed); "
        "daily / weekly: after the first run of each UTC day / ISO week, even one that "
        "committed nothing. backupd never deletes a tag.",
        "none",
    )


@dataclass(frozen=True)
class RemoteConfig:
    url: str = option(
        "Git URL to push the snapshots to (ssh://, user@host:path, https://, file://). "
        "Never with a password in it (https://USER@host/... is fine): give the password "
        "with password_file or password_credential; prefer an SSH key.",
        example="git@git.example.com:data-platform/dataarts-backup.git",
    )
    branch: str | None = option("Branch on the remote (default: repository.branch).", None)
    ssh_key_file: Path | None = option(
        "Private SSH key used for the push (only this key is offered).",
        None,
        example="/etc/backupd/push_key",
    )
    ssh_key_credential: str | None = option(
        "systemd credential name holding the private SSH key instead of ssh_key_file.",
        None,
        check=_credential_name,
        example="push-key",
    )
    known_hosts_file: Path | None = option(
        "known_hosts file holding the SSH host key of the remote (default: ssh's own, "
        "~/.ssh/known_hosts of the user backupd runs as and /etc/ssh/ssh_known_hosts). "
        "A host key not found there fails the push.",
        None,
        example="/etc/backupd/known_hosts",
    )
    password: Secret | None = option(
        "Password or access token of an https:// remote (user name in the URL), itself "
        "(prefer a file or credential).",
        None,
    )
    password_file: Path | None = option(
        "File holding the password or token of an https:// remote (mode 0600).",
        None,
        example="/etc/backupd/push-token",
    )
    password_credential: str | None = option(
        "systemd credential name holding the password or token of an https:// remote.",
        None,
        check=_credential_name,
        example="push-token",
    )
    timeout: float = option(
        "Seconds a push may take; a push that fails or times out is retried after the next "
        "snapshot run (or with 'backupd push').",
        120.0,
        check=_positive,
    )

    def _validate(self, key: str) -> None:
        if self.ssh_key_file is not None and self.ssh_key_credential is not None:
            raise ConfigError(key, "set at most one of ssh_key_file, ssh_key_credential")
        passwords = ("password", "password_file", "password_credential")
        _one_source(self, key, passwords, required=False)
        given = any(getattr(self, name) is not None for name in passwords)
        if (problem := url_problem(self.url, password_given=given)) is not None:
            raise ConfigError(f"{key}.url", problem)


@dataclass(frozen=True)
class DaemonConfig:
    max_parallel: int = option(
        "Workspaces the daemon ('backupd run') snapshots at the same time, each on its own "
        "schedule: their listings and exports overlap, their commits take turns. A reload "
        "cannot change it (restart instead). ('backupd snapshot' starts as many workspaces "
        "as the rate budgets keep busy.)",
        2,
        check=_between(1, 64),
    )
    run_at_start: bool = option(
        "Snapshot every workspace as soon as the daemon starts (and each workspace a reload "
        "adds), besides its schedule.",
        False,
    )
    misfire_grace_time: float = option(
        "A run that could not start on time (the daemon was busy, stopped or the machine "
        "asleep) still starts if at most this many seconds late; missed runs are coalesced "
        "into one.",
        300.0,
        check=_positive,
    )
    snapshot_timeout: float = option(
        "Hard deadline of one workspace snapshot in seconds. A snapshot running longer marks "
        "the daemon unhealthy: it stops answering the systemd watchdog, which restarts it.",
        3600.0,
        check=_positive,
    )
    stop_timeout: float = option(
        "On SIGTERM, seconds to wait for running snapshots to commit or abandon. Then the "
        "daemon exits anyway: with 0 if the rest were only waiting on the API (abandoned, "
        "nothing written), with 1 if a commit is stuck. Keep it below TimeoutStopSec.",
        60.0,
        check=_positive,
    )


@dataclass(frozen=True)
class MetricsConfig:
    listen: str = option(
        "host:port where `backupd run` serves Prometheus metrics (/metrics) and a health "
        "check (/healthz: 200, or 503 while a workspace is stale). The endpoint has no "
        "authentication: keep it on loopback (or behind a firewall).",
        check=_listen_address,
        example="127.0.0.1:9464",
    )


@dataclass(frozen=True)
class HeartbeatConfig:
    """A dead man's switch in the healthchecks.io style, pinged by every `backupd snapshot`:
    it raises the alarm when the pings stop, even if backupd never runs again."""

    url: str = option(
        "Ping URL, healthchecks.io style: <url>/start when a run starts, then <url> when "
        "every workspace succeeded or <url>/fail when one failed (POST, with one line per "
        "workspace as body). It usually holds a secret: only its scheme and host are logged.",
        check=_url_with_path,
        example="https://hc-ping.com/0123abcd-0000-4000-8000-000000000000",
        shown=False,
    )
    timeout: float = option(
        "Seconds one ping may take. A ping that fails is logged and never fails the snapshot.",
        10.0,
        check=_between(0.1, 60),
    )


@dataclass(frozen=True)
class AlertsConfig:
    """Where alerts go: on a workspace's first failure, its recovery and when it turns stale
    (once per change, never per run). A failing alert is logged; it never fails a snapshot."""

    webhook: str | None = option(
        "URL that receives each alert as a JSON POST (its 'text' key suits Slack-style "
        "incoming webhooks). Only its scheme and host appear in logs.",
        None,
        check=_url_with_path,
        example="https://hooks.example.com/services/backupd",
        shown=False,
    )
    command: tuple[str, ...] = option(
        "Program run for each alert, as an argv list (no shell), with the alert as JSON on "
        "its standard input and BACKUPD_ALERT / BACKUPD_WORKSPACE in its environment.",
        (),
        check=_command,
        example=["/usr/local/bin/backupd-alert", "--to", "ops"],
    )
    timeout: float = option(
        "Seconds one alert (webhook call or command) may take before it is abandoned.",
        10.0,
        check=_between(0.1, 600),
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
    schedule: ScheduleConfig = option(
        "Default schedule of every workspace for `backupd run` (sources and workspaces may "
        "override any key).",
        ScheduleConfig(),
    )
    daemon: DaemonConfig = option("How `backupd run` behaves.", DaemonConfig())
    history: HistoryConfig = option(
        "How snapshots become a history made for review.", HistoryConfig()
    )
    remote: RemoteConfig | None = option(
        "Push commits and snapshot tags here after every snapshot run (never forced).", None
    )
    state_dir: Path | None = option(
        "Folder for backupd's own state: status.json, the last run of every workspace (what "
        "`backupd status` shows; mode 0600). Default: <repository.path>/.git/backupd, found "
        "by every backupd that reads this config, whoever runs it.",
        None,
        example="/var/lib/backupd/state",
    )
    metrics: MetricsConfig | None = option(
        "Prometheus metrics and /healthz, served by `backupd run` (off when unset).", None
    )
    metrics_textfile: Path | None = option(
        "File `backupd snapshot` rewrites after every run for node_exporter's textfile "
        "collector (in its directory, name ending in .prom): each workspace's last success and "
        "attempt, result, jobs, duration and staleness, the run's result, and build_info. "
        "Written atomically with mode 0644 (off when unset).",
        None,
        check=_prom_file,
        example="/var/lib/prometheus/node-exporter/backupd.prom",
    )
    heartbeat: HeartbeatConfig | None = option(
        "Heartbeat pings by `backupd snapshot`: start, success, failure (off when unset).", None
    )
    alerts: AlertsConfig = option(
        "Alerts on failure, recovery and staleness (`backupd run` and `backupd snapshot`).",
        AlertsConfig(),
    )

    @property
    def status_dir(self) -> Path:
        """Where status.json lives: state_dir, else inside the repository's .git folder."""
        return self.state_dir or self.repository.path / ".git" / "backupd"


# --- loading ----------------------------------------------------------------------------------

# The last alternative is any other "${": an unclosed or malformed reference, an error rather
# than text taken literally (an AK of "${DLF_AK" would only fail at the first request).
_ENV_REF = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$\{")
_ENV_VAR_ONLY = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")


def _interpolate(text: str, key: str, environ: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        if name is None:  # never quote the text around it: it may be a secret
            where = f"'${{' at character {match.start() + 1}"
            if "}" not in text[match.end() :]:
                problem = f"{where} is not closed"
            else:
                problem = f"{where} is not followed by a name (letters, digits, '_') and '}}'"
            raise ConfigError(key, f"{problem}: write ${{NAME}}, or $${{ for a literal ${{")
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


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    """The resolved annotations of a config class, worked out once: resolving them is most
    of the cost of reading a config (a daemon reloads it; the tests read thousands)."""
    return typing.get_type_hints(cls)


class _Loader:
    def __init__(self, base_dir: Path, environ: Mapping[str, str]) -> None:
        self.base_dir = base_dir
        self.environ = environ
        # Keys of secrets written into the file itself (not ${ENV}): the file must stay private.
        self.inline_secrets: list[str] = []

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
            keywords = [o for o in options if typing.get_origin(o) is Literal]
            if keywords:
                return self.list_or_keyword(options, keywords, raw, key)
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
        if origin in (dict, Mapping):
            return self.mapping(tp, raw, key)
        if dataclasses.is_dataclass(tp):
            return self.dataclass(tp, raw, key)
        return self.scalar(tp, raw, key)

    def mapping(self, tp: Any, raw: Any, key: str) -> Any:
        (_, item_type) = typing.get_args(tp)
        if not isinstance(raw, dict):
            raise ConfigError(key, f"must be a mapping, got {type(raw).__name__}")
        items: dict[str, Any] = {}
        for name, item in raw.items():
            if name is None or str(name) == "":
                raise ConfigError(key, "keys must not be empty")
            item_key = f"{key}[{str(name)!r}]"
            items[str(name)] = self.value(item_type, {} if item is None else item, item_key)
        return MappingProxyType(items)

    def scalar(self, tp: Any, raw: Any, key: str) -> Any:
        if isinstance(raw, str):
            if tp is Secret and _ENV_VAR_ONLY.sub("", raw):
                self.inline_secrets.append(key)
            raw = _interpolate(raw, key, self.environ)
        if tp is bool:
            if isinstance(raw, bool):
                return raw
        elif tp is int:
            if isinstance(raw, int) and not isinstance(raw, bool):
                return raw
        elif tp is float:
            if isinstance(raw, int | float) and not isinstance(raw, bool):
                try:
                    number = float(raw)
                except OverflowError:  # an integer beyond any float
                    number = math.inf
                if not math.isfinite(number):  # .inf, .nan: no timeout or interval is
                    raise ConfigError(key, "must be a finite number")
                return number
        elif tp in (str, Secret, Path):
            if isinstance(raw, str) and raw:
                if tp is Path:
                    return self.path(raw, key)
                return tp(raw)
            if isinstance(raw, str):
                raise ConfigError(key, "must not be empty")
        else:  # pragma: no cover - a schema bug, not a user error
            raise TypeError(f"unsupported config type {tp!r}")
        shown = "a secret value" if tp is Secret else repr(raw)
        raise ConfigError(key, f"must be {_type_name(tp)}, got {shown}")

    def path(self, raw: str, key: str) -> Path:
        # Refused here, not where the path is first used: os calls raise ValueError for these.
        if "\x00" in raw:
            raise ConfigError(key, "must not contain a NUL character")
        try:
            os.fsencode(raw)
            path = Path(raw).expanduser()
        except UnicodeEncodeError:
            raise ConfigError(key, "holds characters no file name can have") from None
        except RuntimeError:  # ~name of an unknown user, or no home folder at all
            raise ConfigError(key, "cannot expand '~': unknown user or no home folder") from None
        return path if path.is_absolute() else self.base_dir / path

    def list_or_keyword(self, options: list[Any], keywords: list[Any], raw: Any, key: str) -> Any:
        """A value that is either a list or one keyword, e.g. ``workspaces: all``."""
        allowed = [value for keyword in keywords for value in typing.get_args(keyword)]
        others = [o for o in options if o not in keywords]
        if isinstance(raw, str):
            text = _interpolate(raw, key, self.environ)
            if text in allowed:
                return text
        elif len(others) == 1 and not isinstance(raw, int | float | bool):
            return self.value(others[0], raw, key)
        words = " or ".join([*(repr(v) for v in allowed), *(_type_name(o) for o in others)])
        shown = repr(raw) if isinstance(raw, str | int | float | bool) else type(raw).__name__
        raise ConfigError(key, f"must be {words}, got {shown}")

    def tagged_union(self, options: list[Any], raw: Any, key: str) -> Any:
        if not isinstance(raw, dict):
            raise ConfigError(key, f"must be a mapping, got {type(raw).__name__}")
        by_tag = {typing.get_args(_type_hints(o)["type"])[0]: o for o in options}
        tag = raw.get("type")
        if not isinstance(tag, str) or tag not in by_tag:
            allowed = ", ".join(repr(t) for t in by_tag)
            raise ConfigError(f"{key}.type", f"must be one of {allowed}, got {tag!r}")
        return self.dataclass(by_tag[tag], raw, key)

    def dataclass(self, cls: Any, raw: Any, key: str) -> Any:
        if not isinstance(raw, dict):
            raise ConfigError(key, f"must be a mapping, got {type(raw).__name__}")
        hints = _type_hints(cls)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        for name in raw:
            if name not in fields:
                known = ", ".join(fields)
                raise ConfigError(_join(key, str(name)), f"unknown key (known keys: {known})")
        values: dict[str, Any] = {}
        for name, spec in fields.items():
            sub_key = _join(key, name)
            if name not in raw:
                required = spec.default_factory is dataclasses.MISSING
                if spec.default is dataclasses.MISSING and required:
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
        if isinstance(source.auth, PasswordAuthConfig) and not (
            source.auth.iam_endpoint or source.region
        ):
            raise ConfigError(
                f"{key}.auth.iam_endpoint", "is required when the source has no region"
            )
        if source.restore.obs_bucket and not source.restore.obs_endpoint and not source.region:
            raise ConfigError(f"{key}.restore.obs_endpoint", "is required when region is not set")
        _validate_discovery(source, key)
        if not source.workspaces:
            raise ConfigError(f"{key}.workspaces", "must list at least one workspace")
        folders: set[str] = set()
        for j, workspace in enumerate(source.listed_workspaces):
            if workspace.folder in folders:
                raise ConfigError(
                    f"{key}.workspaces[{j}]", f"folder {workspace.folder!r} is used twice"
                )
            folders.add(workspace.folder)
            problem = _folder_name(workspace.folder)
            if problem:
                raise ConfigError(f"{key}.workspaces[{j}].id", problem)
    if config.state_dir is not None:
        repo = _resolved(config.repository.path, "repository.path")
        state = _resolved(config.state_dir, "state_dir")
        inside = state == repo or state.is_relative_to(repo)
        if inside and not state.is_relative_to(repo / ".git"):
            raise ConfigError("state_dir", "must be outside the working tree (or inside .git)")
    if config.staging_dir is not None:
        repo = _resolved(config.repository.path, "repository.path")
        staging = _resolved(config.staging_dir, "staging_dir")
        if staging == repo or staging.is_relative_to(repo):
            raise ConfigError("staging_dir", "must be outside the repository working tree")


def _resolved(path: Path, key: str) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError) as error:  # RuntimeError: a symlink loop (Python 3.11)
        raise ConfigError(key, f"cannot be resolved: {error}") from None


def _validate_discovery(source: SourceConfig, key: str) -> None:
    if source.discovers:
        if not source.region and not source.management_endpoint:
            raise ConfigError(key, "'workspaces: all' needs 'region' or 'management_endpoint'")
        return
    for name in ("instance_id", "include", "exclude"):
        if getattr(source, name):
            raise ConfigError(f"{key}.{name}", "only applies with 'workspaces: all'")


def _parse(data: Any, base_dir: Path, environ: Mapping[str, str] | None) -> tuple[Config, _Loader]:
    loader = _Loader(base_dir, os.environ if environ is None else environ)
    if not isinstance(data, dict):
        raise ConfigError("", "the file must hold a mapping at the top level")
    config: Config = loader.dataclass(Config, data, "")
    _validate_config(config)
    return config, loader


def parse_config(data: Any, *, base_dir: Path, environ: Mapping[str, str] | None = None) -> Config:
    """Validate already-parsed YAML data; relative paths are taken from ``base_dir``."""
    return _parse(data, base_dir, environ)[0]


def _warn_inline_secrets(path: Path, keys: list[str]) -> None:
    """Warn about secrets written into a config file that others may read (never the value)."""
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        return
    if not mode & 0o044:
        return
    for key in keys:
        log(
            logger,
            "config.inline_secret",
            level=logging.WARNING,
            file=str(path),
            key=key,
            mode=f"{mode:04o}",
            hint="the file is readable by group or others: chmod 600 it, or move the secret to "
            "a *_file, a *_credential or ${ENV_VAR}",
        )


_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def _one_line(text: str, limit: int) -> str:
    """``text`` with line breaks and control characters escaped, cut to ``limit`` characters
    (a message may quote a value, and a value may be a megabyte long)."""
    text = _UNPRINTABLE.sub(lambda match: repr(match.group())[1:-1], text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def load_config(path: Path, *, environ: Mapping[str, str] | None = None) -> Config:
    """Read and validate a config file; every problem is a ConfigError naming the key or line.

    Nothing else escapes, whatever the file holds: an internal error exits 1, which systemd
    answers with a restart every 30 s, while a ConfigError exits 78 and stops the service.
    """
    try:
        config, loader = _parse(read_yaml(path), path.resolve().parent, environ)
    except ConfigError as error:
        key, problem = _one_line(error.key, 200), _one_line(error.problem, 500)
        if (key, problem) == (error.key, error.problem):
            raise
        raise ConfigError(key, problem) from None
    except Exception as error:  # a bug here; still a file this backupd cannot use
        logger.debug("traceback", exc_info=True)
        problem = f"{path}: cannot be loaded ({type(error).__name__}: {error}); please report this"
        raise ConfigError("", _one_line(problem, 500)) from None
    _warn_inline_secrets(path, loader.inline_secrets)
    _warn_deprecated(config)
    return config


def _warn_deprecated(config: Config) -> None:
    """Keys that still work but have a better replacement: one warning each."""
    for index, source in enumerate(config.sources):
        for name in ("requests_per_second", "exports_per_second"):
            if getattr(source, name) is not None:
                log(
                    logger,
                    "config.deprecated",
                    level=logging.WARNING,
                    key=f"sources[{index}].{name}",
                    hint="each API has a rate of its own now: set sources[].rates "
                    "(jobs_list, scripts_list, resources_list, export, …) instead",
                )
