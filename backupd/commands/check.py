"""`backupd check`: try everything a snapshot needs, once, and say what is wrong and where.

Per source: its secret can be read, its endpoint answers and accepts the credentials; per
workspace: one listing call (limit 1), one batch export of one job into a temporary file and
one call to the (optional) resource list; then the repository (writable?), the staging and
state folders, the remote (`git ls-remote`, bounded) and an alert command. Nothing is written
to the repository and nothing is retried: a check reports what the first try met. Each line
says OK, WARN (works, but snapshots will be partial), FAIL (with what to do) or SKIP.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import shutil
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from backupd import proc
from backupd.config import AkSkAuthConfig, Config, SourceConfig, load_config
from backupd.dataarts.client import DataArtsClient
from backupd.dataarts.retry import RetryPolicy
from backupd.errors import (
    EXIT_FAILED,
    EXIT_OK,
    ApiError,
    AuthError,
    BackupdError,
    CertificateError,
    ClockSkewError,
    CredentialError,
    CredentialsRejected,
    TransportError,
    UserError,
)
from backupd.model import WorkspaceTarget
from backupd.snapshot.discovery import preview
from backupd.snapshot.optional import unavailable_reason
from backupd.snapshot.publish import auth_problem, remote_auth
from backupd.store.gitrepo import LOCK_FILE
from backupd.store.remote import GitAccess, git_access, redact_url
from backupd.wiring import make_client

Verdict = Literal["OK", "WARN", "FAIL", "SKIP"]
ONCE = RetryPolicy(attempts=1)  # a check reports the first answer; retries would hide it


@dataclass(frozen=True)
class CheckLine:
    subject: str  # "config", "prod", "prod/sales", "repository", …
    check: str  # what was tried
    verdict: Verdict
    detail: str

    @property
    def failed(self) -> bool:
        return self.verdict == "FAIL"


def _size(count: int) -> str:
    return f"{count / 1024:.1f} kB" if count >= 1024 else f"{count} bytes"


class _SourceFailed(Exception):
    """The source's endpoint or credentials failed: its other workspaces are not tried."""


class _SourceCheck:
    """The checks of one source, in order; stops at a failure every workspace would share."""

    def __init__(self, config: Config, index: int, source: SourceConfig) -> None:
        self.config = config
        self.index = index
        self.source = source
        self.key = f"sources[{index}]"
        self.lines: list[CheckLine] = []
        self._connected = False

    def add(self, subject: str, check: str, verdict: Verdict, detail: str) -> None:
        self.lines.append(CheckLine(subject, check, verdict, detail))

    def run(self) -> list[CheckLine]:
        name = self.source.name
        try:
            client = make_client(self.source, retry=ONCE)
        except (CredentialError, UserError) as error:
            self.add(name, "secret", "FAIL", f"{error} — fix {self.key}.auth")
            return self.lines
        self.add(name, "secret", "OK", f"{self.source.auth.type} credentials read")
        with client:
            try:
                for number, target in self._targets(client):
                    self._workspace(client, number, target)
            except _SourceFailed:
                pass
        return self.lines

    def _targets(self, client: DataArtsClient) -> Iterator[tuple[int | None, WorkspaceTarget]]:
        source = self.source
        if not source.discovers:
            for number, workspace in enumerate(source.listed_workspaces):
                yield number, WorkspaceTarget(source.name, workspace.id, workspace.folder)
            return
        try:
            found = preview(client, self.config.repository.path, source)
        except BackupdError as error:
            self._connection(error, source.management_api_endpoint)
            self.add(
                source.name,
                "discover",
                "FAIL",
                f"{error} — the IAM user needs DataArtsStudio:instance:list and "
                f"DataArtsStudio:workspace:list; set {self.key}.instance_id if there are several",
            )
            raise _SourceFailed from None
        chosen = found.targets()
        self.add(
            source.name,
            "discover",
            "OK",
            f"instance {found.instance_id}: {len(found.workspaces)} workspaces, "
            f"{len(chosen)} backed up",
        )
        for target in chosen:
            yield None, target

    def _connection(self, error: BackupdError, endpoint: str) -> None:
        """Turn an error every call of this source would meet into its line, and stop."""
        name = self.source.name
        if isinstance(error, CertificateError):
            self.add(name, "endpoint", "FAIL", f"{endpoint}: {error}")
        elif isinstance(error, TransportError):
            self.add(
                name,
                "endpoint",
                "FAIL",
                f"cannot reach {endpoint}: {error} — check {self.key}.endpoint / region, DNS, "
                "proxy and firewall",
            )
        elif isinstance(error, ClockSkewError):
            self.add(name, "credentials", "FAIL", f"clock problem: {error}")
        elif isinstance(error, CredentialsRejected):
            self.add(
                name,
                "credentials",
                "FAIL",
                f"{error} — fix {self.key}.auth (the AK and its SK, the password, or "
                "renew the token)",
            )
        else:
            return
        raise _SourceFailed

    def _connected_once(self) -> None:
        if not self._connected:
            self._connected = True
            auth = self.source.auth
            shown = f"AK …{auth.ak[-4:]}" if isinstance(auth, AkSkAuthConfig) else auth.type
            self.add(self.source.name, "endpoint", "OK", f"{self.source.dlf_endpoint} answers")
            self.add(self.source.name, "credentials", "OK", f"accepted ({shown})")

    def _workspace(
        self, client: DataArtsClient, number: int | None, target: WorkspaceTarget
    ) -> None:
        label = target.label
        where = f"{self.key}.workspaces[{number}].id" if number is not None else "the workspace"
        try:
            total, job = client.probe_jobs(target.workspace_id)
        except BackupdError as error:
            self._connection(error, self.source.dlf_endpoint)
            self.add(label, "list", "FAIL", _workspace_problem(error, target, where, "list"))
            self.add(label, "export", "SKIP", "not tried: listing failed")
            return
        self._connected_once()
        self.add(label, "list", "OK", f"{total} jobs")
        self._resources(client, target)
        if job is None:
            self.add(label, "export", "SKIP", "no job to try (the workspace has none)")
            return
        with tempfile.TemporaryDirectory(prefix="backupd-check-", dir=self._staging()) as folder:
            zip_path = Path(folder) / "check.zip"
            try:
                size = client.export_jobs(
                    target.workspace_id, [job], zip_path, export_depend=self.source.export_depend
                )
            except BackupdError as error:
                self._connection(error, self.source.dlf_endpoint)
                self.add(
                    label, "export", "FAIL", _workspace_problem(error, target, where, "export")
                )
                return
            if not zipfile.is_zipfile(zip_path):
                self.add(label, "export", "FAIL", f"export of {job!r} is not a zip archive")
                return
        self.add(label, "export", "OK", f"job {job!r} exported ({_size(size)} zip)")

    def _resources(self, client: DataArtsClient, target: WorkspaceTarget) -> None:
        """The resource list is optional: absent or forbidden is a warning, not a failure."""
        label = target.label
        if not self.source.resources:
            self.add(label, "resources", "SKIP", "turned off (resources: false)")
            return
        try:
            total = client.probe_resources(target.workspace_id)
        except ApiError as error:
            reason = unavailable_reason(error)
            if reason is None:
                self.add(label, "resources", "FAIL", str(error))
            else:
                self.add(
                    label,
                    "resources",
                    "WARN",
                    f"resource definitions will not be backed up: {reason}; snapshots will "
                    f"be partial — set {self.key}.resources: false if that is expected",
                )
            return
        self.add(label, "resources", "OK", f"{total} resource definitions")

    def _staging(self) -> Path | None:
        staging = self.config.staging_dir
        if staging is not None:
            staging.mkdir(parents=True, exist_ok=True)
        return staging


def _workspace_problem(error: BackupdError, target: WorkspaceTarget, where: str, what: str) -> str:
    if isinstance(error, AuthError):
        role = "a workspace role (developer or admin)" if what == "export" else "a workspace role"
        return (
            f"no permission: {error} — give the IAM user {role} in workspace {target.workspace_id}"
        )
    if isinstance(error, ApiError) and error.status in (400, 404):
        return (
            f"workspace {target.workspace_id} not found: {error} — check {where} (the id is in "
            "the console URL, workspace=…)"
        )
    return str(error)


# --- local checks -----------------------------------------------------------------------------


def _probe_write(folder: Path) -> str | None:
    """None if a file can be created (and removed) in ``folder``, else why not."""
    try:
        handle, name = tempfile.mkstemp(prefix=".backupd-check-", dir=folder)
        os.close(handle)
        Path(name).unlink()
    except OSError as error:
        return f"{error.strerror or error}"
    return None


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_repository(config: Config) -> CheckLine:
    path = config.repository.path
    advice = "backupd must be able to write there: check the owner, mode and mounts"
    if not path.exists():
        parent = _nearest_existing(path.parent)
        problem = _probe_write(parent) if parent.is_dir() else f"{parent} is not a folder"
        if problem:
            return CheckLine(
                "repository", "writable", "FAIL", f"cannot create {path}: {problem} — {advice}"
            )
        return CheckLine("repository", "writable", "OK", f"{path} will be created")
    if not path.is_dir():
        return CheckLine("repository", "writable", "FAIL", f"{path} is not a folder")
    git_dir = path / ".git"
    if not git_dir.is_dir():
        if any(path.iterdir()):
            return CheckLine(
                "repository",
                "writable",
                "FAIL",
                f"{path} is not empty and not a git repository — point repository.path at "
                "an empty or new folder",
            )
        git_dir = path
    for folder in dict.fromkeys((path, git_dir)):
        problem = _probe_write(folder)
        if problem:
            return CheckLine(
                "repository", "writable", "FAIL", f"cannot write in {folder}: {problem} — {advice}"
            )
    return CheckLine("repository", "writable", "OK", f"{path}{_lock_holder(path)}")


def _lock_holder(path: Path) -> str:
    lock = path / ".git" / LOCK_FILE
    try:
        with open(lock) as handle:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return f" (in use by backupd pid {handle.read().strip() or '?'})"
    except OSError:
        pass
    return ""


def check_folder(subject: str, path: Path) -> CheckLine:
    folder = _nearest_existing(path)
    problem = _probe_write(folder) if folder.is_dir() else f"{folder} is not a folder"
    if problem:
        return CheckLine(subject, "writable", "FAIL", f"cannot write in {folder}: {problem}")
    return CheckLine(subject, "writable", "OK", str(path))


def check_remote(config: Config) -> CheckLine | None:
    remote = config.remote
    if remote is None:
        return None
    shown = redact_url(remote.url)
    try:
        auth = remote_auth(remote)
    except CredentialError as error:
        return CheckLine("remote", "reachable", "FAIL", str(error))
    if (problem := auth_problem(auth)) is not None:
        return CheckLine("remote", "reachable", "FAIL", problem)
    branch = remote.branch or config.repository.branch
    timeout = min(remote.timeout, 60.0)
    try:
        with git_access(remote.url, auth, timeout) as access:
            answer = _ls_remote(remote.url, branch, access, timeout)
    except CredentialError as error:
        return CheckLine("remote", "reachable", "FAIL", str(error))
    if answer is None:
        return CheckLine("remote", "reachable", "FAIL", f"{shown}: no answer within {timeout:g}s")
    returncode, stdout, stderr = answer
    if returncode != 0:
        reason = " ".join(stderr.replace(remote.url, shown).split())[:300] or "git ls-remote failed"
        return CheckLine(
            "remote",
            "reachable",
            "FAIL",
            f"{shown}: {reason} — check remote.url, its password or SSH key, and known_hosts",
        )
    there = "exists" if stdout.strip() else "does not exist yet (the first push creates it)"
    return CheckLine("remote", "reachable", "OK", f"{shown}: branch {branch} {there}")


def _ls_remote(
    url: str, branch: str, access: GitAccess, timeout: float
) -> tuple[int, str, str] | None:
    """``git ls-remote --heads``: exit code, output and errors; None after the timeout."""
    command = ["git", *access.options, "ls-remote", "--heads", url, branch]
    done = proc.run(command, timeout=timeout, env=access.environment)
    if done.returncode is None:
        return None
    return (
        done.returncode,
        done.stdout.decode("utf-8", "replace"),
        done.stderr.decode("utf-8", "replace"),
    )


def check_alert_command(config: Config) -> CheckLine | None:
    command = config.alerts.command
    if not command:
        return None
    program = command[0]
    found = shutil.which(program) if "/" not in program else program
    if found is None or not os.access(found, os.X_OK) or not Path(found).is_file():
        return CheckLine(
            "alerts", "command", "FAIL", f"{program} is not an executable file (alerts.command)"
        )
    return CheckLine("alerts", "command", "OK", f"{found} is executable")


def run_checks(config: Config) -> list[CheckLine]:
    lines: list[CheckLine] = []
    for index, source in enumerate(config.sources):
        lines += _SourceCheck(config, index, source).run()
    lines.append(check_repository(config))
    lines.append(check_folder("staging", config.staging_dir or Path(tempfile.gettempdir())))
    if config.state_dir is not None:
        lines.append(check_folder("state", config.state_dir))
    for extra in (check_remote(config), check_alert_command(config)):
        if extra is not None:
            lines.append(extra)
    return lines


def cmd_check(args: argparse.Namespace) -> int:
    from backupd.commands.check import run_checks
    from backupd.commands.table import render_table

    config = load_config(args.config)
    sources = len(config.sources)
    listed = sum(len(s.listed_workspaces) for s in config.sources)
    found = f"{sources} source(s), {listed} listed workspace(s)"
    if any(s.discovers for s in config.sources):
        found += " and discovered ones"
    lines = run_checks(config)
    rows = [
        ("RESULT", "WHAT", "CHECK", "DETAIL"),
        ("OK", "config", "valid", f"{args.config}: {found}"),
    ]
    rows += [(line.verdict, line.subject, line.check, line.detail) for line in lines]
    for text in render_table(rows):
        print(text)  # noqa: T201
    failed = [line for line in lines if line.failed]
    if failed:
        print(f"backupd check: {len(failed)} of {len(rows) - 1} checks FAILED", file=sys.stderr)  # noqa: T201
        return EXIT_FAILED
    warned = [line for line in lines if line.verdict == "WARN"]
    if warned:
        print(  # noqa: T201
            f"backupd check: {len(rows) - 1} checks passed, {len(warned)} with a WARNING",
            file=sys.stderr,
        )
        return EXIT_OK
    print(f"backupd check: all {len(rows) - 1} checks passed")  # noqa: T201
    return EXIT_OK
