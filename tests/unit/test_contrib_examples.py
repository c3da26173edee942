"""The container image and Kubernetes examples in contrib/ say what backupd expects: a valid
config per job, one source and one remote branch per CronJob, the default schedule, and the
documented venv path."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from backupd.config import load_config
from backupd.service.plan import DEFAULT_CRON

ROOT = Path(__file__).resolve().parents[2]
CRONJOB = ROOT / "contrib" / "kubernetes" / "cronjob.yaml"
CONTAINERFILE = ROOT / "contrib" / "container" / "Containerfile"


def documents() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(CRONJOB.read_text()) if doc]


def test_each_cronjob_runs_one_source_pushing_to_its_own_branch(tmp_path: Path) -> None:
    by_kind: dict[str, dict[str, dict[str, Any]]] = {}
    for doc in documents():
        by_kind.setdefault(doc["kind"], {})[doc["metadata"]["name"]] = doc
    assert by_kind["CronJob"]
    for name, cronjob in by_kind["CronJob"].items():
        spec = cronjob["spec"]
        assert spec["schedule"] == DEFAULT_CRON and spec["concurrencyPolicy"] == "Forbid"
        pod = spec["jobTemplate"]["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["args"][0] == "snapshot"
        volumes = {volume["name"]: volume for volume in pod["volumes"]}
        configmap = by_kind["ConfigMap"][volumes["config"]["configMap"]["name"]]
        secret = by_kind["Secret"][volumes["secrets"]["secret"]["secretName"]]
        path = tmp_path / f"{name}.yaml"
        path.write_text(configmap["data"]["config.yaml"])
        config = load_config(path, environ={"BACKUPD_HEARTBEAT_URL": "https://hc.example/x"})
        (source,) = config.sources
        assert config.remote is not None and config.remote.branch == source.name
        # Every credential the config names is a file of the mounted Secret.
        named = {source.auth.sk_credential, config.remote.ssh_key_credential}  # type: ignore[union-attr]
        mounted = {item["path"] for item in volumes["secrets"]["secret"]["items"]}
        assert named <= mounted <= set(secret["stringData"])
        env = {item["name"]: item for item in container["env"]}
        mount = next(m for m in container["volumeMounts"] if m["name"] == "secrets")
        assert env["CREDENTIALS_DIRECTORY"]["value"] == mount["mountPath"]


def test_the_image_runs_backupd_from_the_documented_venv() -> None:
    text = CONTAINERFILE.read_text()
    assert "python -m venv /opt/backupd" in text
    assert re.search(r'^ENTRYPOINT \[.*"/opt/backupd/bin/backupd"\]$', text, flags=re.MULTILINE)
    assert re.search(r"^USER 10001", text, flags=re.MULTILINE)
