"""Config → collaborators: authentication, TLS, the DataArts client, snapshot options,
author identities, volatile rules and the workspace targets of each source.

The commands and the daemon build what they need here; nothing below this module reads the
config's raw shape.
"""

from __future__ import annotations

import dataclasses
import functools
import ssl
import threading
import time
from collections.abc import Callable, Iterable

import httpx

from backupd.config import (
    AkSkAuthConfig,
    Config,
    PasswordAuthConfig,
    SourceConfig,
    TokenAuthConfig,
)
from backupd.credentials import read_secret
from backupd.dataarts.auth import AkSkAuth, IamTokenAuth, StaticTokenAuth
from backupd.dataarts.client import ClientSettings, DataArtsClient
from backupd.dataarts.retry import RetryPolicy
from backupd.errors import ConfigError
from backupd.model import (
    ApiObserver,
)
from backupd.snapshot.options import SnapshotOptions
from backupd.store.archive import ArchiveLimits
from backupd.store.authors import default_identity
from backupd.store.gitrepo import Identity
from backupd.store.volatile import VolatileRules

ClientFactory = Callable[[SourceConfig], DataArtsClient]


class AuthCache:
    """The IAM token auth of each source, kept between runs so a token serves its whole life.

    A daemon holds one and passes it to every :func:`run_snapshots`; without it each run logs in
    once. An entry is rebuilt when anything it was built from changes (config, password file).
    """

    def __init__(self) -> None:
        self._entries: dict[str, tuple[object, httpx.Auth]] = {}
        self._lock = threading.Lock()

    def get(self, source: str, fingerprint: object, build: Callable[[], httpx.Auth]) -> httpx.Auth:
        with self._lock:
            entry = self._entries.get(source)
            if entry is not None and entry[0] == fingerprint:
                return entry[1]
            auth = build()
            self._entries[source] = (fingerprint, auth)
            return auth


_LOADING_CAS = threading.Lock()  # one load of the public CAs at a time (see _public_cas)


def _public_cas() -> ssl.SSLContext:
    """The CAs httpx trusts by default, loaded once: loading them takes 50-60 ms, and every
    client (each source, each run of a daemon) would load them again. A context is meant
    to be shared between connections; nothing changes it once made. A caller that comes
    while ``load_cas_ahead``'s thread loads them waits for that load."""
    with _LOADING_CAS:
        return _loaded_public_cas()


@functools.cache
def _loaded_public_cas() -> ssl.SSLContext:
    return httpx.create_ssl_context()


def _uses_tls(source: SourceConfig) -> bool:
    """Whether any host the source's client talks to is reached over TLS."""
    hosts = [source.dlf_endpoint]
    if source.discovers:
        hosts.append(source.management_api_endpoint)
    if isinstance(source.auth, PasswordAuthConfig):
        hosts.append(source.iam_endpoint)
    return any(not host.lower().startswith("http://") for host in hosts)


def load_cas_ahead(sources: Iterable[SourceConfig]) -> None:
    """Start loading the public CAs in a thread of their own when a source will need them:
    OpenSSL reads them without holding the interpreter lock, so the 50 ms pass beside
    opening the repository instead of before the first call."""
    if any(source.ca_bundle is None and _uses_tls(source) for source in sources):
        threading.Thread(target=_public_cas, name="load-cas", daemon=True).start()


def tls_verify(source: SourceConfig) -> bool | ssl.SSLContext:
    """Certificate checking for the source: always on; ``ca_bundle`` adds trusted CAs. A
    source whose every host is plain http gets a context that trusts no CA at all (nothing
    to load; a TLS connection would fail its check, never pass unchecked)."""
    if source.ca_bundle is None:
        return _public_cas() if _uses_tls(source) else ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context = httpx.create_ssl_context()  # the public CAs httpx trusts by default
    try:
        context.load_verify_locations(cafile=source.ca_bundle)
    except (OSError, ssl.SSLError) as error:
        raise ConfigError(
            f"sources[{source.name}].ca_bundle",
            f"cannot load {source.ca_bundle} as PEM certificates: {error}",
        ) from None
    return context


def make_auth(
    source: SourceConfig, *, verify: bool | ssl.SSLContext = True, cache: AuthCache | None = None
) -> httpx.Auth:
    """The httpx.Auth the source's config asks for; secrets are read now (files may rotate)."""
    auth = source.auth
    key = f"sources[{source.name}].auth"
    if isinstance(auth, AkSkAuthConfig):
        return _aksk_auth(auth, key)
    if isinstance(auth, PasswordAuthConfig):
        return _iam_auth(source, auth, key, verify, cache)
    return _token_auth(auth, key)


def _aksk_auth(auth: AkSkAuthConfig, key: str) -> AkSkAuth:
    sk = read_secret(
        key=f"{key}.sk", value=auth.sk, file=auth.sk_file, credential=auth.sk_credential
    )
    token_sources = (auth.security_token, auth.security_token_file, auth.security_token_credential)
    token = None
    if any(item is not None for item in token_sources):
        token = read_secret(
            key=f"{key}.security_token",
            value=auth.security_token,
            file=auth.security_token_file,
            credential=auth.security_token_credential,
        )
    return AkSkAuth(auth.ak, sk, security_token=token)


def _iam_auth(
    source: SourceConfig,
    auth: PasswordAuthConfig,
    key: str,
    verify: bool | ssl.SSLContext,
    cache: AuthCache | None,
) -> httpx.Auth:
    password = read_secret(
        key=f"{key}.password",
        value=auth.password,
        file=auth.password_file,
        credential=auth.password_credential,
    )
    build = functools.partial(
        IamTokenAuth,
        iam_url=source.iam_endpoint,
        user=auth.user,
        domain=auth.domain,
        password=password,
        project_id=source.project_id,
        timeout=source.timeout,
        verify=verify,
    )
    if cache is None:
        return build()
    fingerprint = (auth, password, source.iam_endpoint, source.project_id, source.ca_bundle)
    return cache.get(source.name, fingerprint, build)


def _token_auth(auth: TokenAuthConfig, key: str) -> StaticTokenAuth:
    token = read_secret(
        key=f"{key}.token", value=auth.token, file=auth.token_file, credential=auth.token_credential
    )
    return StaticTokenAuth(token)


def make_client(
    source: SourceConfig,
    *,
    auth_cache: AuthCache | None = None,
    api_observer: ApiObserver | None = None,
    retry: RetryPolicy | None = None,
    cancel: threading.Event | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> DataArtsClient:
    """The API client for one source, authenticated as its config says.

    ``retry`` replaces the default policy (`backupd check` asks once and reports);
    ``cancel``, once set, stops the client from starting calls (a stopping process);
    ``clock`` and ``sleep`` pace its calls and retries (tests give a virtual clock).
    """
    verify = tls_verify(source)
    settings = ClientSettings(
        endpoint=source.dlf_endpoint,
        project_id=source.project_id,
        page_size=source.page_size,
        timeout=source.timeout,
        verify=verify,
        rates=source.rates.as_budgets(),
        requests_per_second=source.requests_per_second,
        exports_per_second=source.exports_per_second,
        management_endpoint=source.management_api_endpoint if source.discovers else None,
        max_concurrent=source.max_concurrent_requests,
        retry=RetryPolicy(
            attempts=source.retry.attempts,
            base_delay=source.retry.base_delay,
            max_delay=source.retry.max_delay,
            max_retry_after=source.retry.max_retry_after,
        ),
    )
    if retry is not None:
        settings = dataclasses.replace(settings, retry=retry)
    auth = make_auth(source, verify=verify, cache=auth_cache)
    return DataArtsClient(
        settings, auth, observer=api_observer, cancel=cancel, clock=clock, sleep=sleep
    )


def snapshot_options(
    config: Config, source: SourceConfig, *, allow_mass_delete: bool
) -> SnapshotOptions:
    limits = config.limits
    return SnapshotOptions(
        export_depend=source.export_depend,
        resources=source.resources,
        incremental=source.incremental,
        full_every=source.full_every,
        export_window=source.max_concurrent_requests,
        batch_size=source.batch_size,
        archive_limits=ArchiveLimits(
            max_entries=limits.max_entries, max_total_bytes=limits.max_uncompressed_bytes
        ),
        max_archive_bytes=limits.max_archive_bytes,
        staging_root=config.staging_dir,
        max_delete_fraction=config.safety.max_delete_fraction,
        allow_mass_delete=allow_mass_delete or config.safety.allow_mass_delete,
        archive_attempts=source.retry.archive_attempts,
        volatile=volatile_rules(config),
        commit_per_author=config.history.commit_per_author,
        authors=author_identities(config),
    )


def author_identities(config: Config) -> dict[str, Identity]:
    """Git identities of the DataArts users listed in history.authors (gaps filled in)."""
    identities: dict[str, Identity] = {}
    for user, entry in config.history.authors.items():
        default = default_identity(user)
        identities[user] = Identity(entry.name or default.name, entry.email or default.email)
    return identities


def volatile_rules(config: Config) -> VolatileRules:
    fields = config.history.volatile_fields
    return VolatileRules.from_texts({".job": fields.job, ".script": fields.script})
