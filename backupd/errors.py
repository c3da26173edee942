"""One exception tree for backupd.

BackupdError                      anything backupd raises on purpose
├── UserError                     shown as one line, no traceback
│   ├── ConfigError               bad configuration (exit 78)
│   ├── CredentialError           a secret could not be read
│   ├── UsageError                the command line names something that does not fit (exit 2)
│   ├── SnapshotRefused           a safety rule stopped a snapshot (mass deletion, …)
│   ├── LockedError               another backupd holds the repository
│   ├── RestoreError              a restore cannot be built or imported as asked
│   └── UsageError                command-line options that do not fit together (exit 2)
├── ApiError                      DataArts answered with an error (or not at all)
│   ├── AuthError                 401/403: credentials wrong or not allowed
│   │   └── CredentialsRejected   401 / IAM refused: no call with these credentials can succeed
│   │       └── ClockSkewError    the signature was rejected for its date
│   ├── ThrottledError            429 / APIGW.0308
│   ├── ServerError               5xx
│   ├── TransportError            connect error, timeout, truncated body
│   └── CertificateError          the server's TLS certificate is not trusted (not retried)
├── ArchiveError                  an export zip was rejected
├── RepoError                     git failed
└── SnapshotCancelled             the daemon is stopping: snapshot abandoned before apply
"""

from __future__ import annotations


class BackupdError(Exception):
    """Base of every error backupd raises on purpose."""


class UserError(BackupdError):
    """An error whose message is the whole story: shown without a traceback."""


class ConfigError(UserError):
    """The configuration is invalid; ``key`` is the path of the offending key."""

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"config: {key}: {problem}" if key else f"config: {problem}")


class CredentialError(UserError):
    """A secret could not be read (never carries the secret itself)."""


class UsageError(UserError):
    """Command-line arguments that cannot work together or name nothing configured (exit 2)."""


class SnapshotRefused(UserError):
    """A safety rule refused to record a snapshot (for example a mass deletion)."""


class LockedError(UserError):
    """Another backupd process holds the repository lock."""


class RestoreError(UserError):
    """A restore cannot be done as asked (unknown job, no snapshot at that time, …)."""


class ApiError(BackupdError):
    """An error from the DataArts API, with everything needed to look it up."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        request_id: str | None = None,
        operation: str = "",
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        self.operation = operation
        parts = [operation] if operation else []
        if status is not None:
            parts.append(f"HTTP {status}")
        if code:
            parts.append(code)
        parts.append(message)
        text = ": ".join(parts)
        if request_id:
            text += f" (request id {request_id})"
        super().__init__(text)


class AuthError(ApiError, UserError):
    """Credentials were rejected or lack permission: retrying cannot help."""


class CredentialsRejected(AuthError):
    """The credentials themselves were refused (HTTP 401 or IAM): true for every workspace.

    Unlike a 403 on one workspace (a missing workspace role), this ends a source's run.
    """


class ClockSkewError(CredentialsRejected):
    """The gateway rejected the request's X-Sdk-Date: the local clock is off."""


class ThrottledError(ApiError):
    """The API gateway throttled us (HTTP 429, APIGW.0308)."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: object) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)  # type: ignore[arg-type]


class ServerError(ApiError):
    """The service failed (HTTP 5xx)."""


class TransportError(ApiError):
    """No usable answer: connection failed, timed out, or the body was cut short."""


class CertificateError(ApiError):
    """The server's TLS certificate failed verification: retrying cannot help."""


class ArchiveError(BackupdError):
    """An export archive is unsafe or broken; nothing from it was written."""


class RepoError(BackupdError):
    """A git operation failed."""


class SnapshotCancelled(BackupdError):
    """A stopping daemon abandoned a snapshot before it touched the repository."""


def describe_os_error(error: OSError) -> str:
    """An OSError as one line: its reason and the file it concerns."""
    where = f" ({error.filename})" if error.filename else ""
    return f"{error.strerror or error}{where}"


# Exit codes of the command line (cli.py turns errors into them; commands return them).
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_PARTIAL = 3  # committed, but some items or deletions could not be recorded
EXIT_CONFIG = 78  # EX_CONFIG from sysexits.h; systemd's RestartPreventExitStatus= uses it
