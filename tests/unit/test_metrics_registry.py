"""The daemon's registry: build_info, process metrics (also under ProcSubset=pid), no
_created series, and workspace gauges fed from status records."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from backupd import version
from backupd.model import SnapshotResult, WorkspaceTarget
from backupd.service.metrics import Metrics, _ProcessCollector
from backupd.service.status import WorkspaceStatus


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_daemon_registry_has_build_info_process_metrics_and_no_created_series() -> None:
    metrics = Metrics()
    target = WorkspaceTarget("prod", "0" * 32, "a")
    metrics.finished(SnapshotResult(target, ok=True, jobs=1, duration=2.0))
    found = samples(metrics)
    (build,) = [labels for name, labels in found if name == "backupd_build_info"]
    assert dict(build)["version"] == version() and dict(build)["python"]
    assert found[("process_resident_memory_bytes", ())] > 0
    assert not [name for name, _ in found if name.endswith("_created")]


def test_process_metrics_survive_a_proc_without_stat(tmp_path: Path) -> None:
    """systemd's ProcSubset=pid: /proc/self is there, /proc/stat (boot time) is not."""
    (tmp_path / "self").symlink_to("/proc/self")
    collector = _ProcessCollector(proc=str(tmp_path), registry=None)
    families = {family.name: family for family in collector.collect()}
    started = families["process_start_time_seconds"].samples[0].value
    assert time.time() - 365 * 86400 < started <= time.time()
    assert families["process_resident_memory_bytes"].samples[0].value > 0


def test_workspace_gauges_follow_the_record_and_forget_a_gone_workspace() -> None:
    metrics = Metrics()
    now = datetime.now(UTC)
    failing = WorkspaceStatus(
        "prod/a", last_attempt=now, failing_since=now, failures=3, duration=4.0, last_error="x"
    )
    metrics.workspace(failing, stale=True)
    found = samples(metrics)
    label = (("workspace", "prod/a"),)
    assert found[("backupd_last_snapshot_ok", label)] == 0
    assert found[("backupd_consecutive_failures", label)] == 3
    assert found[("backupd_workspace_stale", label)] == 1
    assert ("backupd_last_success_timestamp_seconds", label) not in found

    metrics.workspace(WorkspaceStatus("prod/a", last_attempt=now, gone=True), stale=False)
    assert not [key for key in samples(metrics) if key[1] == label]
