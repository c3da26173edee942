"""The shipped Prometheus alert rules and Grafana dashboard: well formed, and asking only
for metrics that backupd exports (collected from its registries, daemon and textfile).

The pure-Python checks always run; `promtool check rules` and `promtool test rules`
(backupd.rules.test.yml: each alert fires, or stays quiet, on made-up series) run where
promtool is installed (Debian: apt-get install prometheus).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from backupd.model import SnapshotResult, WorkspaceTarget
from backupd.service.metrics import Metrics, WorkspaceState, render_textfile
from backupd.service.status import WorkspaceStatus

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "contrib" / "prometheus" / "backupd.rules.yml"
RULE_TESTS = ROOT / "contrib" / "prometheus" / "backupd.rules.test.yml"
DASHBOARD = ROOT / "contrib" / "grafana" / "backupd.json"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool is not installed")

# Labels an expression may group or match by: backupd's own, and the scrape's.
KNOWN_LABELS = {"workspace", "result", "source", "status", "version", "python", "job", "instance"}
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
PROMQL_WORDS |= {"and", "or", "unless", "bool", "offset"}


def exported_names() -> set[str]:
    """Every series name backupd serves: the daemon's /metrics with each metric fed once,
    and a one-shot run's textfile."""
    metrics = Metrics()
    target = WorkspaceTarget("prod", "0" * 32, "a")
    now = datetime.now(UTC)
    record = WorkspaceStatus("prod/a", last_attempt=now, last_success=now, duration=1, jobs=2)
    metrics.exported(target, 1, 1, 2, 100)
    metrics.finished(SnapshotResult(target, ok=True, jobs=2, duration=1.0))
    metrics.push_finished(False)
    api = metrics.api("prod")
    api.response(429)
    api.retry(RuntimeError("throttled"))
    metrics.workspace(record, stale=False)
    textfile = render_textfile(
        [WorkspaceState(record, False, now + timedelta(hours=2))],
        result="ok",
        ended=now,
        duration=1.0,
    )
    names: set[str] = set()
    for text in (metrics.render().decode(), textfile.decode()):
        for family in text_string_to_metric_families(text):
            names.add(family.name)
            names.update(sample.name for sample in family.samples)
    return names


def metric_names(expression: str) -> set[str]:
    """The metric names a PromQL expression selects (functions and keywords left out)."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expression)  # strings
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range selectors
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names: set[str] = set()
    for match in re.finditer(r"([A-Za-z_:][A-Za-z0-9_:]*)\s*(\(?)", text):
        if match[2] or match[1] in PROMQL_WORDS:
            continue  # a function or aggregation, or a keyword
        names.add(match[1])
    return names


def grouping_labels(expression: str) -> set[str]:
    labels: set[str] = set()
    for group in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expression):
        labels.update(label.strip() for label in group.split(",") if label.strip())
    return labels


def rules() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = list(dashboard["panels"])
    for panel in dashboard["panels"]:
        panels += panel.get("panels", [])
    return [target["expr"] for panel in panels for target in panel.get("targets", [])]


def test_metric_name_extraction_skips_functions_keywords_and_labels() -> None:
    expression = (
        'count by (job) (a_total{x="y"}[5m] == 0) and on (job) max(b) > bool 1 or vector(0)'
    )
    assert metric_names(expression) == {"a_total", "b"}
    assert grouping_labels(expression) == {"job"}


def test_every_rule_is_complete() -> None:
    found = rules()
    assert {rule["alert"] for rule in found} >= {
        "BackupdWorkspaceStale",
        "BackupdWorkspaceFailing",
        "BackupdSnapshotPartial",
        "BackupdAllWorkspacesFailing",
        "BackupdNoRecentSuccess",
    }
    for rule in found:
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, rule["alert"]
        assert re.fullmatch(r"Backupd[A-Za-z]+", rule["alert"])
        assert re.fullmatch(r"\d+[smhd]", str(rule["for"])), rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        used = re.findall(r"\$labels\.(\w+)", json.dumps(rule["annotations"]))
        assert set(used) <= grouping_labels(rule["expr"]) | {"workspace"}, rule["alert"]


def test_rules_and_dashboard_ask_only_for_metrics_backupd_exports() -> None:
    exported = exported_names()
    assert {"backupd_build_info", "process_resident_memory_bytes"} <= exported
    assert not any(name.endswith("_created") for name in exported)
    for rule in rules():
        used = metric_names(rule["expr"])
        assert used, rule["alert"]
        assert used <= exported, f"{rule['alert']}: {used - exported}"
        assert grouping_labels(rule["expr"]) <= KNOWN_LABELS, rule["alert"]
    expressions = dashboard_expressions()
    assert len(expressions) >= 10
    for expression in expressions:
        used = metric_names(expression)
        assert used and used <= exported, f"{expression}: {used - exported}"
        assert grouping_labels(expression) <= KNOWN_LABELS, expression


def test_dashboard_is_importable_json_with_its_variables() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    variables = {variable["name"] for variable in dashboard["templating"]["list"]}
    assert variables == {"datasource", "job", "instance"}
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for expression in dashboard_expressions():
        assert 'instance=~"$instance"' in expression, expression


def promtool(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PROMTOOL), *args], capture_output=True, text=True, timeout=120, cwd=cwd, check=False
    )


@needs_promtool
def test_promtool_accepts_the_rules_and_their_unit_tests_pass() -> None:
    checked = promtool("check", "rules", RULES.name, cwd=RULES.parent)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", RULE_TESTS.name, cwd=RULES.parent)
    assert tested.returncode == 0, tested.stdout + tested.stderr


@needs_promtool
def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    """Each panel's PromQL as a recording rule (dashboard variables filled in)."""
    recording = [
        {
            "record": f"backupd:dashboard_query_{index}",
            "expr": expression.replace("$job", ".*").replace("$instance", ".*"),
        }
        for index, expression in enumerate(dashboard_expressions())
    ]
    path = tmp_path / "dashboard.rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recording}]}))
    checked = promtool("check", "rules", path.name, cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
