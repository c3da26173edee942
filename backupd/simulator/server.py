"""A local DataArts Studio (DataArts Factory / DLF v1) over real HTTP on loopback.

It powers the test-suite and ``backupd demo``. Everything is in memory, deterministic for a
given seed and sequence of operations, and served by a stdlib ``ThreadingHTTPServer`` in a
daemon thread. Only the calls backupd makes are modelled (see ``docs/dlf-api.md``):

* ``GET  /v1/{project_id}/jobs``               job list, one ``jobType`` per call, paged
* ``GET  /v1/{project_id}/jobs/{job_name}``    job detail; 400 DLF.0100 proves a job is gone
* ``GET  /v1/{project_id}/scripts``            script list with full definitions, paged
* ``GET  /v1/{project_id}/scripts/{name}``     one script (400 DLF.6201 when there is none)
* ``POST /v1/{project_id}/jobs/batch-export``  zip of ``jobs/<job>/<job>.job`` (+ scripts)
* ``POST /v3/auth/tokens``                     IAM: a password login → a project-scoped token
* ``POST /v1/{project_id}/jobs/check-file``    what an import zip in OBS holds
* ``POST /v1/{project_id}/jobs/import``        import a zip from OBS (asynchronous: a task id)
* ``GET  /v1/{project_id}/system-tasks/{id}``  the import task: RUNNING → SUCCESSFUL | FAILED
  (its per-job list as ``subtasks`` or, like the SDKs, ``subTasks``: ``Simulator.imports``)
* ``PUT  /obs/{bucket}/{key}``                 OBS object upload (path-style, OBS signature)
* ``GET  /v1/{project_id}/resources``          resource definitions, paged
* ``GET  /v1/{project_id}/resources/{id}``     one resource (400 DLF.6241 when there is none)
* ``GET  /v1/{project_id}/instances``          DataArts Studio instances (management API)
* ``GET  /v1/{project_id}/workspaces/{id}``    the workspaces of one instance (management API)

One server answers both hosts (``dayu-dlf.<region>`` and the management host ``dayu.<region>``);
set ``management_hostname`` to tell them apart by the Host header, as the real gateway does.

DLF calls must be authenticated like on the real API Gateway: an AK/SK signature (checked with
``auth.verify`` on the simulator's own, skewable clock), an IAM token this simulator issued, or
the fixed ``DEFAULT_TOKEN``; see ``sim_auth.py``. The default ``Simulator()`` knows
``DEFAULT_AK``/``DEFAULT_SK`` and the IAM user ``DEFAULT_IAM_USER``; ``simulator.auth`` holds the
knobs (``clock_offset``, ``token_lifetime``, ``expire_tokens()``) and logs (token requests,
refused calls).

There is also a control API under ``/_sim/`` (no auth) so that tests driving backupd as a
subprocess can change the state and read the call log.

The real service varies (dlf-api.md §12): zip layout, member-name encoding, extra files,
paging, optional APIs, glitches. Each variety is an option of ``Simulator`` (``configure``,
``POST /_sim/options``) or a ``Faults`` field (``Glitch``); ``VARIANTS`` names each variety
in one line so that a contract suite can run the pipeline on every one (``variant(name)``,
``POST /_sim/variants``, ``--variant``). ``content(workspace)`` (``GET /_sim/content``) is
what a backup of a workspace should hold.

Layout of this module, top to bottom: public records, in-memory state, the generator of
realistic definitions, the ``Simulator`` (state API, then HTTP API), the HTTP plumbing, ``serve``.

Seams for later additions: every HTTP request goes through ``Simulator._dispatch`` which
resolves a ``_Route`` from a table and turns its ``_Response`` into bytes in one place -- fault
injection (5xx, 429, truncated bodies, delays, empty listings) belongs there; the ``authenticate``
hook replaces the built-in check; new endpoints are new rows in ``_dlf_routes``.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import email.utils
import hashlib
import hmac
import json
import logging
import pickle
import random
import re
import ssl
import sys
import threading
import time
import unicodedata
import uuid
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from io import BytesIO
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from backupd.dataarts.limits import (
    MAX_EXPORT_NAMES,
    MAX_RESOURCE_LIMIT,
    MAX_SCRIPT_LIMIT,
    MAX_WORKSPACE_LIMIT,
)
from backupd.simulator.gateway import (
    DEFAULT_AK,
    DEFAULT_IAM_DOMAIN,
    DEFAULT_IAM_PASSWORD,
    DEFAULT_IAM_USER,
    DEFAULT_SK,
    DEFAULT_TOKEN,
    DEFAULT_TOKEN_LIFETIME,
    AccessKey,
    AuthRequest,
    IamUser,
    SimulatedAuth,
)

logger = logging.getLogger(__name__)

DEFAULT_PROJECT_ID = "0123456789abcdef0123456789abcdef"
IAM_TOKENS_PATH = "/v3/auth/tokens"
# Fake OBS credentials the simulator's object store accepts (AK → SK).
DEFAULT_OBS_AK = "SIMOBSAK00000000000A"
DEFAULT_OBS_SK = "sim-obs-secret-key-0000000000000000000000"  # public and fake
OBS_PATH_PREFIX = "/obs"  # the simulator serves OBS path-style under this prefix
IMPORT_MAX_BYTES = 10 * 1024**2  # DataArts imports job files of at most 10 MB
_TARGET_STATUSES = ("SAVED", "SUBMITTED", "PRODUCTION")  # jobs/import 'targetStatus'
DEMO_BUCKET = "backupd-restore"  # created by `backupd simulator`
DEFAULT_INSTANCE_ID = "5157a9d0c0de4e11a5ce00000000da7a"
DEFAULT_INSTANCE_NAME = "dataarts-sim"

CLOCK_START_MS = 1764547200000  # 2025-12-01T00:00:00Z; moves +1000 ms per mutation
# The documented limits (dlf-api.md), as the service enforces them.
BATCH_EXPORT_MAX_NAMES = MAX_EXPORT_NAMES
SCRIPT_LIST_MAX_LIMIT = MAX_SCRIPT_LIMIT
RESOURCE_LIST_MAX_LIMIT = MAX_RESOURCE_LIMIT
WORKSPACE_LIST_MAX_LIMIT = MAX_WORKSPACE_LIMIT
MANAGEMENT_DEFAULT_LIMIT = 20
RESOURCE_TYPES = ("archive", "file", "jar")
DEFAULT_LIMIT = 10
JOB_TYPES = ("BATCH", "REAL_TIME")

Json = dict[str, Any]

# How the simulated service varies (dlf-api.md §12); see ``Simulator.configure`` and ``VARIANTS``.
OffsetMode = Literal["page", "record"]
PageSizePolicy = Literal["reject", "clamp"]
Layout = Literal["folders", "documented", "flat"]
NameEncoding = Literal["auto", "utf-8", "gb18030"]
ApiAvailability = Literal["ok", "missing", "forbidden"]
NameSet = Literal["plain", "chinese", "hostile"]


# --------------------------------------------------------------------------------------------
# Public records


@dataclass(frozen=True)
class CallRecord:
    """One authenticated DLF API call, as the simulator answered it."""

    method: str
    path: str
    query: dict[str, str]
    workspace: str | None
    job_names: tuple[str, ...]  # batch-export: the jobList sent; otherwise ()
    status: int


@dataclass(frozen=True)
class ServedRecord:
    """Every DLF API request received, including injected faults and rejected credentials."""

    method: str
    path: str
    status: int
    received: float  # time.monotonic() when the request arrived
    answered: float  # time.monotonic() when its answer was ready
    api: str | None = None  # the API it called, as ``API_NAMES`` names them (None: no DLF route)


Authenticator = Callable[[AuthRequest], str | None]


# --------------------------------------------------------------------------------------------
# In-memory state


@dataclass
class _Job:
    definition: Json  # exactly what the .job file holds, in insertion order
    create_time: int
    create_user: str
    last_update_time: int
    status: str
    # Resources the job uses: their definitions ride along in exports when ``extra_files``.
    resources: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return str(self.definition["name"])

    @property
    def job_type(self) -> str:
        return str(self.definition["processType"])


@dataclass
class _Workspace:
    id: str
    name: str
    jobs: dict[str, _Job] = field(default_factory=dict)
    scripts: dict[str, Json] = field(default_factory=dict)
    instance_id: str = DEFAULT_INSTANCE_ID
    resources: dict[str, Json] = field(default_factory=dict)
    create_time: int = CLOCK_START_MS
    name_sets: set[str] = field(default_factory=set)  # fixed name sets already added


@dataclass
class _Instance:
    id: str
    name: str
    status: int  # 1 not effective, 2 effective, 3 deleted, 4 frozen, 5 grace period, 6 deleting


@dataclass
class _SystemTask:
    """An import as ``GET /system-tasks/{id}`` reports it; RUNNING for the first polls."""

    id: str
    name: str
    start_time: int
    status: str  # the final status, shown once ``polls_left`` reaches 0
    message: str
    subtasks: list[Json]
    polls_left: int


@dataclass
class ImportAnswers:
    """How the simulated import answers, and what it was sent (``Simulator.imports``).

    Change the fields at will; ``requests`` is the record to read.
    """

    # The key of the per-job list in GET /system-tasks/{id}: 'subtasks' as on the API page,
    # or 'subTasks' as in the SDKs' ListSystemTasksResponse.
    subtask_key: Literal["subtasks", "subTasks"] = "subtasks"
    # Jobs whose import fails (subtask FAILED, the job left as it was; the task FAILED).
    fail_jobs: list[str] = field(default_factory=list)
    # Job → its subtask's 'name' instead of "Import the <job> job." (None: no name at all).
    subtask_names: dict[str, Any] = field(default_factory=dict)
    # Every import request body as received (path, sameNamePolicy, targetStatus, approvers).
    requests: list[Json] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Realistic definitions

_USERS = ("alice", "bob", "carol", "dave", "王伟", "li.na")
_DOMAINS = ("sales", "finance", "orders", "users", "inventory", "marketing", "logistics")
_LAYERS = ("ods", "dwd", "dws", "ads", "dim")
_ACTIONS = ("daily", "hourly", "sync", "load", "agg", "clean", "report")
_CHINESE_JOBS = ("每日销售汇总", "订单清洗", "库存同步", "财务月报", "用户画像更新", "渠道日报")
_CHINESE_SCRIPTS = ("清洗脚本", "汇总查询", "数据校验", "维表加载", "指标计算")
_ASCII_SEPARATORS = ("_", "_", "_", "-", ".")
_POPULATED_SCRIPT_TYPES = ("HiveSQL", "HiveSQL", "DWSSQL", "SparkSQL", "DLISQL", "Shell", "PYTHON")
_SCRIPT_NODE_TYPES = {
    "HiveSQL": "HiveSQL",
    "DWSSQL": "DWSSQL",
    "SparkSQL": "SparkSQL",
    "DLISQL": "DLISQL",
    "Shell": "Shell",
    "PYTHON": "Python",
}
_CONNECTIONS = {
    "HiveSQL": "mrs_hive_prod",
    "DWSSQL": "dws_cluster_prod",
    "SparkSQL": "mrs_spark_prod",
    "DLISQL": "",
    "Shell": "ecs_etl_host",
    "PYTHON": "ecs_etl_host",
}
_SCRIPT_SUFFIXES = {
    "HiveSQL": "sql",
    "DWSSQL": "sql",
    "SparkSQL": "sql",
    "DLISQL": "sql",
    "Shell": "sh",
    "PYTHON": "py",
}
_BIZDATE = '#{DateUtil.format(DateUtil.addDays(Job.planTime,-1),"yyyyMMdd")}'


def _sql_content(rng: random.Random, domain: str, chinese: bool) -> str:
    table = f"{rng.choice(_LAYERS)}_{domain}_{rng.choice(_ACTIONS)}"
    source = f"dwd_{domain}_detail"
    comment = f"-- {rng.choice(_CHINESE_JOBS)} 按天汇总\n" if chinese else f"-- {domain} rollup\n"
    return (
        f"{comment}"
        f"INSERT OVERWRITE TABLE {table} PARTITION (dt = '${{bizdate}}')\n"
        f"SELECT shop_id,\n"
        f"       COUNT(DISTINCT order_id) AS orders,\n"
        f"       SUM(amount)              AS amount\n"
        f"FROM {source}\n"
        f"WHERE dt = '${{bizdate}}'\n"
        f"  AND amount > {rng.randint(0, 50)}\n"
        f"GROUP BY shop_id;\n"
    )


def _shell_content(rng: random.Random, domain: str, chinese: bool) -> str:
    comment = "# 拉取上游文件\n" if chinese else "# fetch upstream files\n"
    return (
        "#!/bin/bash\n"
        "set -euo pipefail\n"
        f"{comment}"
        f"SRC=obs://landing-{domain}/$1\n"
        f"DST=/data/{domain}/$1\n"
        'mkdir -p "$DST"\n'
        f'obsutil cp -r -f "$SRC" "$DST" --parallel={rng.randint(2, 16)}\n'
        'echo "done: $(ls "$DST" | wc -l) files"\n'
    )


def _python_content(rng: random.Random, domain: str, chinese: bool) -> str:
    comment = "# 校验行数\n" if chinese else "# check row counts\n"
    return (
        "import sys\n"
        "\n"
        f"{comment}"
        f"THRESHOLD = {rng.randint(100, 10000)}\n"
        "\n"
        "\n"
        "def main(argv):\n"
        "    rows = int(argv[1])\n"
        f"    if rows < THRESHOLD:\n"
        f'        print("{domain}: too few rows", rows)\n'
        "        return 1\n"
        "    return 0\n"
        "\n"
        "\n"
        'if __name__ == "__main__":\n'
        "    sys.exit(main(sys.argv))\n"
    )


def _script_definition(
    rng: random.Random, name: str, script_type: str, content: str, domain: str
) -> Json:
    is_dli = script_type == "DLISQL"
    is_sql = script_type.endswith("SQL")
    return {
        "name": name,
        "type": script_type,
        "content": content,
        "directory": f"/scripts/{domain}",
        "connectionName": _CONNECTIONS.get(script_type, ""),
        "database": f"{domain}_dw" if is_sql and not is_dli else ("default" if is_dli else ""),
        "queueName": "default" if is_dli else "",
        "configuration": {"spark.sql.shuffle.partitions": str(rng.choice((50, 200)))}
        if is_dli
        else {},
        "description": f"{domain} {script_type} script",
    }


def _generated_script(
    rng: random.Random, name: str, script_type: str, domain: str, chinese: bool
) -> Json:
    if script_type == "Shell":
        content = _shell_content(rng, domain, chinese)
    elif script_type == "PYTHON":
        content = _python_content(rng, domain, chinese)
    else:
        content = _sql_content(rng, domain, chinese)
    return _script_definition(rng, name, script_type, content, domain)


def _location(rng: random.Random, index: int) -> dict[str, str]:
    return {"x": f"{-45.5 + 180 * index:.1f}", "y": f"{rng.randint(40, 260)}.0"}


def _lineage(rng: random.Random, domain: str) -> str:
    lineage = {
        "inputTables": [{"database": f"{domain}_dw", "table": f"dwd_{domain}_detail"}],
        "outputTables": [
            {"database": f"{domain}_dw", "table": f"dws_{domain}_{rng.randint(1, 9)}"}
        ],
    }
    return json.dumps(lineage, separators=(",", ":"))


def _node(
    rng: random.Random,
    *,
    name: str,
    node_type: str,
    index: int,
    previous: str | None,
    properties: list[Json],
    domain: str,
) -> Json:
    return {
        "name": name,
        "type": node_type,
        "location": _location(rng, index),
        "preNodeName": [previous] if previous else [],
        "conditions": [],
        "properties": properties,
        "pollingInterval": 20,
        "maxExecutionTime": rng.choice((60, 120, 360)),
        "retryTimes": rng.randint(0, 3),
        "retryInterval": 120,
        "failPolicy": rng.choice(("FAIL", "FAIL", "IGNORE", "FAIL_CHILD")),
        "execTimeOutRetry": "false",
        "lineageInfo": _lineage(rng, domain) if node_type in _SCRIPT_NODE_TYPES.values() else "",
        "resouces": [],
    }


def _script_node_properties(script: Json) -> list[Json]:
    script_type = str(script["type"])
    properties: list[Json] = [{"name": "scriptName", "value": script["name"]}]
    if script_type in ("Shell", "PYTHON"):
        properties.append({"name": "connectionName", "value": script["connectionName"]})
        properties.append({"name": "arguments", "value": "${bizdate}"})
        interpreter = "BASH" if script_type == "Shell" else "python3"
        properties.append({"name": "interpreter", "value": interpreter})
        return properties
    if script_type == "DLISQL":
        properties.append({"name": "database", "value": script["database"]})
        properties.append({"name": "queueName", "value": script["queueName"]})
    else:
        properties.append({"name": "connectionName", "value": script["connectionName"]})
        properties.append({"name": "database", "value": script["database"]})
    properties.append({"name": "scriptArgs", "value": "bizdate=${bizdate}"})
    return properties


def _extra_node(rng: random.Random, kind: str, domain: str) -> list[Json]:
    if kind == "CDMJob":
        return [
            {"name": "clusterName", "value": "cdm-prod"},
            {"name": "jobName", "value": f"{domain}_mysql_to_obs_{rng.randint(1, 99)}"},
        ]
    if kind == "RESTAPI":
        return [
            {"name": "url", "value": f"https://hooks.example.com/dlf/{domain}"},
            {"name": "method", "value": "POST"},
            {"name": "headers", "value": "Content-Type:application/json"},
            {"name": "body", "value": '{"job":"${job_name}","date":"${bizdate}"}'},
        ]
    return []


def _nodes(rng: random.Random, scripts: Sequence[Json], domain: str) -> list[Json]:
    plan: list[tuple[str, str, list[Json]]] = []
    if not scripts or rng.random() < 0.3:
        plan.append(("start", "Dummy", []))
    if not scripts or rng.random() < 0.25:
        plan.append(("extract", "CDMJob", _extra_node(rng, "CDMJob", domain)))
    for script in scripts:
        node_type = _SCRIPT_NODE_TYPES.get(str(script["type"]), str(script["type"]))
        plan.append((str(script["name"]), node_type, _script_node_properties(script)))
    if rng.random() < 0.2:
        plan.append(("notify", "RESTAPI", _extra_node(rng, "RESTAPI", domain)))
    nodes: list[Json] = []
    previous: str | None = None
    for index, (name, node_type, properties) in enumerate(plan):
        nodes.append(
            _node(
                rng,
                name=name,
                node_type=node_type,
                index=index,
                previous=previous,
                properties=properties,
                domain=domain,
            )
        )
        previous = name
    return nodes


def _schedule(rng: random.Random, job_type: str, depend_on: Sequence[str]) -> Json:
    if job_type == "REAL_TIME" or rng.random() < 0.15:
        return {"type": "EXECUTE_ONCE"}
    hour, minute = rng.randint(0, 6), rng.choice((0, 10, 15, 30, 45))
    return {
        "type": "CRON",
        "cron": {
            "startTime": "2025-01-01T00:00:00+08",
            "endTime": "2099-12-31T23:59:59+08",
            "expression": f"0 {minute} {hour} * * ?",
            "expressionTimeZone": "Asia/Shanghai",
            "period": "1 days",
            "dependPrePeriod": False,
            "dependJobs": {
                "jobs": list(depend_on),
                "dependPeriod": "SAME_PERIOD",
                "dependFailPolicy": "FAIL",
                "sameWorkSpaceJobs": [],
                "otherWorkSpaceJobs": [],
            },
            "concurrent": 1,
            "intervalType": 0,
            "calendarScheduling": False,
        },
    }


def _job_definition(
    rng: random.Random,
    *,
    name: str,
    job_type: str,
    scripts: Sequence[Json],
    user: str,
    job_id: int,
    domain: str,
    depend_on: Sequence[str],
    workspace_id: str,
) -> Json:
    nodes = _nodes(rng, scripts, domain)
    if job_type == "REAL_TIME":
        for node in nodes:
            node["cronTrigger"] = {
                "startTime": "2025-01-01T00:00:00+08",
                "expression": f"0 */{rng.choice((5, 10, 15))} * * * ?",
                "expressionTimeZone": "Asia/Shanghai",
                "concurrent": 1,
            }
    return {
        "name": name,
        "nodes": nodes,
        "schedule": _schedule(rng, job_type, depend_on),
        "params": [
            {"name": "bizdate", "value": _BIZDATE, "type": "variable"},
            {
                "name": "batch_size",
                "value": str(rng.choice((500, 1000, 5000))),
                "type": "constants",
            },
        ],
        "directory": f"/{domain}/{rng.choice(_ACTIONS)}",
        "processType": job_type,
        "id": job_id,
        "lastUpdateUser": user,
        "logPath": f"obs://dlf-log-{workspace_id[:8]}/",
        "basicConfig": {
            "owner": user,
            "priority": rng.randint(0, 2),
            "executeUser": "",
            "instanceTimeout": rng.choice((0, 0, 120)),
            "customFields": {"team": domain} if rng.random() < 0.5 else {},
            "agency": "",
            "isIgnoreWaiting": 0,
        },
        "emptyRunningJob": "0",
        "singleNodeJobFlag": len(nodes) == 1,
        "cleanOverdueDays": 60,
        "cleanWaitingJob": "clean",
        "version": 1,
    }


def _change_definition(definition: Json) -> None:
    """A real edit, alternating between the cron expression and a parameter value."""
    schedule = definition.get("schedule", {})
    if schedule.get("type") == "CRON" and int(definition.get("version", 1)) % 2 == 1:
        seconds, minute, rest = schedule["cron"]["expression"].split(" ", 2)
        schedule["cron"]["expression"] = f"{seconds} {(int(minute) + 7) % 60} {rest}"
        return
    params: list[Json] = definition.setdefault("params", [])
    for param in params:
        if param.get("name") == "batch_size":
            param["value"] = str(int(param["value"]) + 100)
            return
    params.append({"name": "batch_size", "value": "1000", "type": "constants"})


def _resource_definition(
    rng: random.Random,
    workspace_id: str,
    name: str,
    resource_type: str,
    *,
    location: str | None = None,
    depend_files: Sequence[str] = (),
    desc: str = "",
    directory: str = "/resources",
) -> Json:
    """A resource row as the resource list returns it (the OBS object itself is not here)."""
    extension = {"jar": "jar", "file": "properties", "archive": "zip"}[resource_type]
    bucket = f"obs://dlf-resources-{workspace_id[:8]}"
    return {
        "id": f"{rng.getrandbits(128):032x}",
        "name": name,
        "type": resource_type,
        "location": location or f"{bucket}{directory.rstrip('/')}/{name}.{extension}",
        "dependFiles": list(depend_files),
        "desc": desc,
        "directory": directory,
    }


def _job_scripts(definition: Json) -> list[str]:
    names: list[str] = []
    for node in definition.get("nodes", []):
        for prop in node.get("properties", []):
            value = prop.get("value")
            if prop.get("name") == "scriptName" and value and value not in names:
                names.append(str(value))
    return names


def _to_json_bytes(value: Any) -> bytes:
    """Serialise the way a server does: compact, insertion order, raw UTF-8."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _cdm_jobs(definition: Json) -> list[tuple[str, str]]:
    """(cluster, CDM job name) of each CDMJob node, in node order, without repeats."""
    found: list[tuple[str, str]] = []
    for node in definition.get("nodes", []):
        if node.get("type") != "CDMJob":
            continue
        properties = {p.get("name"): p.get("value") for p in node.get("properties", [])}
        cdm = (str(properties.get("clusterName") or ""), str(properties.get("jobName") or ""))
        if cdm[1] and cdm not in found:
            found.append(cdm)
    return found


def _cdm_definition(cluster: str, job_name: str) -> bytes:
    """A CDM job definition as an export may carry it (format undocumented): pretty-printed
    with CRLF line ends and no final newline, so only a byte-for-byte copy keeps it."""
    value = {
        "jobs": [
            {
                "job_type": "NORMAL_JOB",
                "name": job_name,
                "from-connector-name": "generic-jdbc-connector",
                "from-link-name": "mysql_link",
                "from-config-values": {
                    "configs": [
                        {
                            "name": "fromJobConfig",
                            "inputs": [
                                {"name": "fromJobConfig.schemaName", "value": "prod"},
                                {"name": "fromJobConfig.tableName", "value": job_name},
                            ],
                        }
                    ]
                },
                "to-connector-name": "obs-connector",
                "to-link-name": "obs_link",
                "to-config-values": {
                    "configs": [
                        {
                            "name": "toJobConfig",
                            "inputs": [
                                {"name": "toJobConfig.bucketName", "value": "landing"},
                                {"name": "toJobConfig.outputDirectory", "value": f"/{job_name}/"},
                            ],
                        }
                    ]
                },
                "driver-config-values": {
                    "configs": [
                        {
                            "name": "throttlingConfig",
                            "inputs": [{"name": "throttlingConfig.numExtractors", "value": "4"}],
                        }
                    ]
                },
                "cluster": cluster,
            }
        ]
    }
    return json.dumps(value, indent=4, ensure_ascii=False).replace("\n", "\r\n").encode("utf-8")


# ---- fixed name sets: what ``populate`` adds with ``names="chinese"`` or ``names="hostile"``

LONG_CJK_JOB = ("数据仓库每日订单汇总" * 13)[:127] + "甲"  # 128 characters, 384 UTF-8 bytes
LONG_CJK_JOB_TWIN = LONG_CJK_JOB[:-1] + "乙"  # differs from LONG_CJK_JOB in its last character
LONG_CJK_SCRIPT = "清洗脚本汇总查询" * 16  # 128 characters, 384 UTF-8 bytes
LONG_CJK_RESOURCE = "资源文件" * 8  # 32 characters, the longest resource name
CAFE_NFC = unicodedata.normalize("NFC", "café")
CAFE_NFD = unicodedata.normalize("NFD", "café")
RESUME_NFC = unicodedata.normalize("NFC", "résumé")
RESUME_NFD = unicodedata.normalize("NFD", "résumé")


@dataclass(frozen=True)
class _FixedJob:
    name: str
    job_type: str
    scripts: tuple[str, ...] = ()
    resources: tuple[str, ...] = ()


# Every class of awkward name dlf-api.md §8 and §12 list, for jobs, scripts and resources.
_HOSTILE_JOBS: tuple[_FixedJob, ...] = (
    _FixedJob(LONG_CJK_JOB, "BATCH", (LONG_CJK_SCRIPT, "nul.sql"), (LONG_CJK_RESOURCE,)),
    _FixedJob(LONG_CJK_JOB_TWIN, "BATCH", (LONG_CJK_SCRIPT,)),
    _FixedJob("CON", "BATCH", ("PRN",), ("CON",)),
    _FixedJob("aux", "REAL_TIME"),
    _FixedJob("COM1", "BATCH", ("nul.sql",)),
    _FixedJob("aux.daily", "BATCH", ("aux.sql",)),
    _FixedJob("trailing.", "BATCH", ("trailing_script.",)),
    _FixedJob("Daily_Orders", "BATCH", ("Orders_SQL", "orders_sql"), ("Lib_Jar", "lib_jar")),
    _FixedJob("daily_orders", "BATCH", ("orders_sql",)),
    _FixedJob(CAFE_NFC, "BATCH", (RESUME_NFC,)),
    _FixedJob(CAFE_NFD, "BATCH", (RESUME_NFD,)),
    _FixedJob("tab\there", "BATCH", ("tab\tscript",)),
    _FixedJob("back\\slash", "BATCH", ("back\\slash_script",)),
    _FixedJob("a b", "REAL_TIME", ("a b script",)),
    _FixedJob("it's", "BATCH", ("it's.sql",)),
    _FixedJob("x#1", "BATCH", ("x#1",)),
    _FixedJob("a+b", "BATCH", ("a+b",)),
    _FixedJob("50%", "BATCH", ("50%",)),
    _FixedJob("a%2Fb", "BATCH"),
    _FixedJob(".git", "BATCH", (".gitignore",)),
    _FixedJob("ods_uses_hostile_scripts", "BATCH", (LONG_CJK_SCRIPT, "it's.sql", "a b script")),
)
_HOSTILE_STANDALONE_SCRIPTS: tuple[str, ...] = (
    "aux",
    "standalone #1 + 50% 's",
    "独立脚本 (standalone)",
)
_HOSTILE_RESOURCES: tuple[str, ...] = (LONG_CJK_RESOURCE, "CON", "Lib_Jar", "lib_jar")

HOSTILE_NAME_CLASSES: dict[str, tuple[str, ...]] = {
    "long-cjk": (LONG_CJK_JOB, LONG_CJK_JOB_TWIN, LONG_CJK_SCRIPT, LONG_CJK_RESOURCE),
    "windows-reserved": ("CON", "aux", "COM1", "aux.daily", "nul.sql", "PRN", "aux.sql"),
    "trailing-dot": ("trailing.", "trailing_script."),
    "case-pair": ("Daily_Orders", "daily_orders", "Orders_SQL", "orders_sql", "Lib_Jar", "lib_jar"),
    "unicode-normalisation": (CAFE_NFC, CAFE_NFD, RESUME_NFC, RESUME_NFD),
    "control-character": ("tab\there", "tab\tscript"),
    "backslash": ("back\\slash", "back\\slash_script"),
    "url-special": (
        "a b",
        "a b script",
        "it's",
        "it's.sql",
        "x#1",
        "a+b",
        "50%",
        "a%2Fb",
        *_HOSTILE_STANDALONE_SCRIPTS[1:],
    ),
    "dot-prefix": (".git", ".gitignore"),
}
"""The names ``populate_hostile`` creates, by class (a name may be a job, script or resource)."""

# Short Chinese names in the documented charset; 誠 is 0xD5 0x5C in GB18030 (0x5C is '\\').
_CHINESE_JOBS_FIXED: tuple[_FixedJob, ...] = (
    _FixedJob("每日销售汇总", "BATCH", ("清洗脚本", "汇总查询"), ("维表资源",)),
    _FixedJob("订单清洗", "REAL_TIME", ("清洗脚本",)),
    _FixedJob("库存同步", "BATCH"),
    _FixedJob("誠信報表", "BATCH", ("誠信查詢",)),
)
_CHINESE_STANDALONE_SCRIPTS: tuple[str, ...] = ("数据校验",)
_CHINESE_RESOURCES: tuple[str, ...] = ("维表资源",)


# --------------------------------------------------------------------------------------------
# HTTP request/response values


@dataclass(frozen=True)
class _Request:
    method: str
    raw_path: str
    headers: dict[str, str]
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.raw_path).path

    @property
    def query(self) -> dict[str, str]:
        return dict(parse_qsl(urlsplit(self.raw_path).query, keep_blank_values=True))

    def header(self, name: str) -> str | None:
        wanted = name.lower()
        for key, value in self.headers.items():
            if key.lower() == wanted:
                return value
        return None


@dataclass
class _Response:
    status: int
    body: bytes
    content_type: str = "application/json;charset=UTF-8"
    headers: dict[str, str] = field(default_factory=dict)
    # Send only this many bytes of the body (Content-Length still announces all), then hang up.
    truncate_to: int | None = None
    api: str | None = None  # the API that answered (``API_NAMES``), for the served record


GLITCH_LISTS = ("BATCH", "REAL_TIME", "jobs", "scripts", "resources", "instances", "workspaces")
GLITCH_KINDS = ("empty", "total", "drop")


@dataclass
class Glitch:
    """One list answer that misbehaves once (or ``times`` times), then is used up.

    A glitch fires on a successful answer of the list it names (of one workspace, when it
    names one) and rewrites that answer:
    ``"empty"`` -> no rows and a total of 0 (``{"total":0,"jobs":[]}``); ``"total"`` -> the
    rows as they are, the total replaced by ``total``; ``"drop"`` -> the first ``rows`` rows
    left out, the total unchanged. Armed glitches are tried in order; at most one fires per
    answer. As JSON (``POST /_sim/faults``): ``{"glitches": [{"list": "REAL_TIME", ...}]}``.
    """

    # "BATCH" / "REAL_TIME" (the job list of that jobType; no jobType is BATCH), "jobs" (either
    # type), "scripts", "resources", "instances" or "workspaces".
    list: str
    kind: str = "empty"  # "empty", "total" or "drop"
    offset: int | None = None  # only an answer to this offset parameter (1: the offset probe)
    skip: int = 0  # let this many matching answers through first (1: the second call)
    total: int = 0  # kind "total": the total the answer reports
    rows: int = 1  # kind "drop": how many rows, from the page's start, are left out
    times: int = 1  # how many answers it spoils before it is used up
    workspace: str | None = None  # only answers for this workspace id (None: any)

    def __post_init__(self) -> None:
        if self.list not in GLITCH_LISTS:
            raise ValueError(f"glitch list must be one of {GLITCH_LISTS}, not {self.list!r}")
        if self.kind not in GLITCH_KINDS:
            raise ValueError(f"glitch kind must be one of {GLITCH_KINDS}, not {self.kind!r}")
        if self.times < 1 or self.skip < 0 or self.rows < 0 or self.total < 0:
            raise ValueError("glitch times must be >= 1; skip, rows and total >= 0")


@dataclass
class Faults:
    """Misbehaviour of the simulated service, for robustness tests. Change fields at will
    (Python) or with ``POST /_sim/faults`` (JSON object of the same fields)."""

    latency: float = 0.0  # seconds added to every DLF call
    export_latency: float = 0.0  # further seconds added to every batch-export call
    export_cost_per_job: float = 0.0  # further seconds per job named in a batch-export call
    error_rate: float = 0.0  # fraction of DLF calls answered 500/503
    throttle_rps: float = 0.0  # above this many DLF calls/second: 429 APIGW.0308 (0 = off)
    export_throttle_rps: float = 0.0  # the same, for batch-export calls on their own
    # Per-user limits of each API (dlf-api.md §7.1: every API has a budget of its own), by
    # the names of ``API_NAMES``: {"jobs_list": 30, "scripts_list": 30, "export": 10, ...};
    # an API not named here is not limited on its own.
    throttle_per_api: dict[str, float] = field(default_factory=dict)
    truncate_rate: float = 0.0  # fraction of export bodies cut short mid-transfer
    empty_listings: int = 0  # the next N job-list calls answer an empty list (total 0)
    # Workspaces the caller has no role in: authenticated calls get 403 DLF.6888.
    forbidden_workspaces: list[str] = field(default_factory=list)
    retry_after: float = 1.0  # seconds announced in the Retry-After header of a 429
    # Jobs deleted right after the next job-list call of the workspace holding them has been
    # answered: a job that vanishes between listing and export.
    delete_after_listing: list[str] = field(default_factory=list)
    # Each job-list call answered creates a job (a workspace being bulk-edited): the total
    # the pages report never holds still.
    create_while_listing: bool = False
    # One-shot misbehaving list answers (an empty job type, an empty later page, a lowered
    # total, missing rows, an empty offset probe), each used up when it fires; see ``Glitch``.
    glitches: list[Glitch] = field(default_factory=list)
    seed: int = 0


class Gate:
    """Holds calls while closed: a test keeps a stage in progress for exactly as long as it
    needs, and knows when a call is held, where a latency would only make an order likely.

    Open by default. ``hold()`` closes it; ``allow(n)`` lets ``n`` more calls through;
    ``open()`` lets every call through again (the simulator opens it when it stops).
    """

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._permits: int | None = None  # None: open
        self._waiting = 0
        self._passed = 0

    def hold(self) -> None:
        with self._changed:
            self._permits = 0

    def allow(self, count: int = 1) -> None:
        with self._changed:
            if self._permits is not None:
                self._permits += count
                self._changed.notify_all()

    def open(self) -> None:
        with self._changed:
            self._permits = None
            self._changed.notify_all()

    @property
    def passed(self) -> int:
        """Calls that went through so far."""
        with self._changed:
            return self._passed

    def wait_for_held(self, count: int = 1, *, timeout: float = 15) -> None:
        """Until ``count`` calls are held at the gate (AssertionError after ``timeout``)."""
        with self._changed:
            if not self._changed.wait_for(lambda: self._waiting >= count, timeout):
                raise AssertionError(f"{self._waiting} of {count} calls held within {timeout} s")

    def pass_through(self) -> None:
        """Called by the call itself: returns once the gate lets it through."""
        with self._changed:
            self._waiting += 1
            self._changed.notify_all()
            self._changed.wait_for(lambda: self._permits is None or self._permits > 0)
            if self._permits is not None:
                self._permits -= 1
            self._waiting -= 1
            self._passed += 1
            self._changed.notify_all()


@dataclass
class _Call:
    """One DLF API call being answered: the request plus what the route learned."""

    request: _Request
    params: dict[str, str]  # path parameters, percent-decoded
    workspace: _Workspace
    job_names: tuple[str, ...] = ()


class _DlfError(Exception):
    """Raised by route handlers; turned into a DLF error body."""

    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


_T = TypeVar("_T")


def _copied(value: _T) -> _T:
    """A deep copy of JSON-like data (a pickle round trip: several times faster than
    ``copy.deepcopy``, which tests that read the simulator's state call thousands of times)."""
    copied: _T = pickle.loads(pickle.dumps(value, pickle.HIGHEST_PROTOCOL))  # noqa: S301 (our own bytes)
    return copied


def _json_response(status: int, value: Any) -> _Response:
    return _Response(status, _to_json_bytes(value))


def _error_response(status: int, code: str, message: str) -> _Response:
    return _json_response(status, {"error_code": code, "error_msg": message})


_INVALID_PARAMETER = ("DLF.3051", "The request parameter is invalid.")
_FORBIDDEN = ("DLF.6888", "Invalid account permissions.")


def _invalid_parameter() -> _DlfError:
    return _DlfError(*_INVALID_PARAMETER)


_API_NOT_FOUND = (
    "APIGW.0101",
    "The API does not exist or has not been published in the environment.",
)


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]  # matched against the path after /v1/{project_id}
    handler: Callable[[_Call], _Response]
    needs_workspace: bool = True
    management: bool = False  # served by the management host (dayu.<region>), not dayu-dlf
    list_kind: str | None = None  # a paged list ("jobs", "scripts", …): glitches apply
    optional_api: Literal["resources", "management"] | None = None  # may be missing/forbidden
    api: str = ""  # its name in ``API_NAMES``: the budget ``Faults.throttle_per_api`` keys


# The APIs the simulator serves, named as ``Faults.throttle_per_api`` and ``ServedRecord.api``
# name them; the service limits each on its own (dlf-api.md §7.1, §12).
API_NAMES = (
    "jobs_list",
    "job_detail",
    "export",
    "scripts_list",
    "script_detail",
    "check_file",
    "import",
    "system_task",
    "resources_list",
    "resource_detail",
    "instances_list",
    "workspaces_list",
)


_UNPUBLISHED_API = (
    "APIG.0101",
    "The API does not exist or has not been published in the environment",
)


def _iam_forbidden(action: str) -> _Response:
    """What the management API answers when an IAM policy denies ``action`` (nested body)."""
    message = f"Policy doesn't allow {action} to be performed."
    return _json_response(403, {"error": {"code": 403, "message": message, "title": "Forbidden"}})


# --------------------------------------------------------------------------------------------
# The simulator


class Simulator:
    """A DataArts Studio in memory, served over HTTP on loopback. Thread-safe."""

    def __init__(
        self,
        *,
        project_id: str = DEFAULT_PROJECT_ID,
        token: str | None = DEFAULT_TOKEN,
        offset_mode: OffsetMode = "page",
        max_page_size: int = 1000,
        page_size_policy: PageSizePolicy = "reject",
        layout: Layout = "folders",
        directory_entries: bool = False,
        utf8_flag: bool = True,
        name_encoding: NameEncoding = "auto",
        extra_files: bool = False,
        resources_api: ApiAvailability = "ok",
        management_api: ApiAvailability = "ok",
        names: NameSet = "plain",
        seed: int = 0,
        authenticate: Authenticator | None = None,
        require_auth: bool = True,
        access_keys: Sequence[AccessKey] = (AccessKey(DEFAULT_AK, DEFAULT_SK),),
        iam_users: Sequence[IamUser] = (
            IamUser(DEFAULT_IAM_DOMAIN, DEFAULT_IAM_USER, DEFAULT_IAM_PASSWORD),
        ),
        token_lifetime: timedelta = DEFAULT_TOKEN_LIFETIME,
        clock_offset: timedelta = timedelta(0),
        rate_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``token``: a fixed X-Auth-Token also accepted (None: only issued tokens and AK/SK);
        ``rate_clock``: what the throttles count their one-second windows in (a test gives
        the clock its client is paced by, to throttle in virtual time);
        ``authenticate``: replaces the built-in check; ``require_auth=False``: no check at all.

        How the service varies (dlf-api.md §12; change later with ``configure``):

        * ``offset_mode``: ``"page"`` = ``offset`` is a page number, ``"record"`` = a row offset.
        * ``max_page_size``: the largest ``limit`` of the job list (script, resource and
          workspace lists: at most 100 as well).
        * ``page_size_policy``: a larger ``limit`` is ``"reject"``-ed (400 DLF.3051) or
          ``"clamp"``-ed silently to the maximum.
        * ``layout`` of a batch-export zip: ``"folders"`` = ``jobs/<job>/<job>.job`` with the
          job's scripts beside it; ``"documented"`` = the same, but a job that carries no
          script sits at ``jobs/<job>.job``; ``"flat"`` = ``jobs/<job>.job`` and each script
          once at ``scripts/<name>.script``.
        * ``directory_entries``: the zip also holds an entry for every folder (``jobs/``, …).
        * ``utf8_flag``: member names are flagged UTF-8 (general-purpose bit 11), every one of
          them; False: no name is flagged.
        * ``name_encoding`` of member names: ``"auto"`` = UTF-8 when flagged, GB18030 when not;
          ``"utf-8"`` / ``"gb18030"`` (GB18030 cannot be flagged).
        * ``extra_files``: exports (with ``exportDepend``) also carry the definitions of the
          resources a job uses (``<name>.resource``) and of its CDM jobs (``<cdm job>.json``,
          CRLF, pretty-printed): beside the job when it has a folder, else under top-level
          ``resources/`` and ``cdm/``.
        * ``resources_api`` / ``management_api``: ``"ok"``, ``"missing"`` (404 APIG.0101, as
          an unpublished API) or ``"forbidden"`` (403: DLF.6888 for resources, an IAM-style
          ``{"error": {...}}`` body for instances/workspaces).
        * ``names``: ``"plain"``; ``"chinese"``/``"hostile"`` = ``populate`` also adds (once per
          workspace) the fixed set of ``populate_chinese`` / ``populate_hostile``.
        """
        self._lock = threading.RLock()
        self.project_id = project_id
        self.token = token
        # The instance list's array; one older doc revision calls it 'commodity_order_lists'.
        self.instance_list_key = "commodity_orders"
        self.offset_mode: OffsetMode = "page"
        self.max_page_size = 1000
        self.page_size_policy: PageSizePolicy = "reject"
        self.layout: Layout = "folders"
        self.directory_entries = False
        self.utf8_flag = True
        self.name_encoding: NameEncoding = "auto"
        self.extra_files = False
        self.resources_api: ApiAvailability = "ok"
        self.management_api: ApiAvailability = "ok"
        self.names: NameSet = "plain"
        self.configure(
            offset_mode=offset_mode,
            max_page_size=max_page_size,
            page_size_policy=page_size_policy,
            layout=layout,
            directory_entries=directory_entries,
            utf8_flag=utf8_flag,
            name_encoding=name_encoding,
            extra_files=extra_files,
            resources_api=resources_api,
            management_api=management_api,
            names=names,
        )
        self.require_auth = require_auth
        # The API Gateway's and IAM's view of the account: keys, users, tokens, clock.
        self.auth = SimulatedAuth(
            project_id=project_id,
            static_token=token,
            access_keys=access_keys,
            iam_users=iam_users,
            token_lifetime=token_lifetime,
            clock_offset=clock_offset,
        )
        self._authenticate = authenticate
        # Test seam: rewrites every export zip before it is sent (hostile or broken archives).
        self.export_hook: Callable[[bytes], bytes] | None = None
        # When set, the management API answers only requests whose Host is this name and the
        # DLF API answers only the others (APIGW.0101 otherwise), as on Huawei Cloud.
        self.management_hostname: str | None = None
        self._instances: dict[str, _Instance] = {
            DEFAULT_INSTANCE_ID: _Instance(DEFAULT_INSTANCE_ID, DEFAULT_INSTANCE_NAME, 2)
        }
        self.faults = Faults()
        # Test seam: batch-export calls wait here (after any latency) while it is held.
        self.export_gate = Gate()
        self._fault_rng = random.Random(seed + 2)
        self._recent_calls: list[float] = []
        self._recent_exports: list[float] = []
        self._recent_by_api: dict[str, list[float]] = {}
        self._served: list[ServedRecord] = []
        self._rng = random.Random(seed)  # definitions: depends only on the mutation sequence
        self._noise = random.Random(seed + 1)  # list-call noise: never affects exports
        self._clock_ms = CLOCK_START_MS
        self._rate_clock = rate_clock
        self._next_job_id = 100_000 + seed % 1000 * 1000
        self._workspaces: dict[str, _Workspace] = {}
        self._calls: list[CallRecord] = []
        self._server: _Server | None = None
        self._scheme = "http"
        self._thread: threading.Thread | None = None
        self._dlf_routes: tuple[_Route, ...] = (
            _Route("GET", re.compile(r"/jobs"), self._list_jobs, list_kind="jobs", api="jobs_list"),
            _Route("POST", re.compile(r"/jobs/batch-export"), self._batch_export, api="export"),
            _Route(
                "GET", re.compile(r"/jobs/(?P<job_name>[^/]+)"), self._show_job, api="job_detail"
            ),
            _Route(
                "GET",
                re.compile(r"/scripts"),
                self._list_scripts,
                list_kind="scripts",
                api="scripts_list",
            ),
            _Route(
                "GET",
                re.compile(r"/scripts/(?P<script_name>[^/]+)"),
                self._show_script,
                api="script_detail",
            ),
            _Route("POST", re.compile(r"/jobs/check-file"), self._check_file, api="check_file"),
            _Route("POST", re.compile(r"/jobs/import"), self._import_jobs, api="import"),
            _Route(
                "GET",
                re.compile(r"/system-tasks/(?P<task_id>[^/]+)"),
                self._system_task,
                needs_workspace=False,
                api="system_task",
            ),
            _Route(
                "GET",
                re.compile(r"/resources"),
                self._list_resources,
                list_kind="resources",
                optional_api="resources",
                api="resources_list",
            ),
            _Route(
                "GET",
                re.compile(r"/resources/(?P<resource_id>[^/]+)"),
                self._show_resource,
                optional_api="resources",
                api="resource_detail",
            ),
            _Route(
                "GET",
                re.compile(r"/instances"),
                self._list_instances,
                needs_workspace=False,
                management=True,
                list_kind="instances",
                optional_api="management",
                api="instances_list",
            ),
            _Route(
                "GET",
                re.compile(r"/workspaces/(?P<instance_id>[^/]+)"),
                self._list_workspaces,
                needs_workspace=False,
                management=True,
                list_kind="workspaces",
                optional_api="management",
                api="workspaces_list",
            ),
        )
        # Restore: an OBS object store (bucket → key → bytes) and the import tasks.
        self.obs_credentials: dict[str, str] = {DEFAULT_OBS_AK: DEFAULT_OBS_SK}
        self.import_polls = 1  # polls that see RUNNING before an import task finishes
        self.imports = ImportAnswers()
        self._buckets: dict[str, dict[str, bytes]] = {}
        self._tasks: dict[str, _SystemTask] = {}
        self._control_routes: dict[tuple[str, str], Callable[[_Request], _Response]] = {
            ("POST", "/_sim/mutate"): self._control_mutate,
            ("GET", "/_sim/state"): self._control_state,
            ("GET", "/_sim/calls"): self._control_calls,
            ("POST", "/_sim/faults"): self._control_faults,
            ("GET", "/_sim/auth"): self._control_auth,
            ("POST", "/_sim/auth"): self._control_auth,
            ("GET", "/_sim/resources"): self._control_resources,
            ("GET", "/_sim/workspaces"): self._control_workspaces,
            ("GET", "/_sim/content"): self._control_content,
            ("GET", "/_sim/options"): self._control_options,
            ("POST", "/_sim/options"): self._control_options,
            ("GET", "/_sim/variants"): self._control_variants,
            ("POST", "/_sim/variants"): self._control_variants,
        }

    # ---- variety -----------------------------------------------------------------------------

    def configure(self, **options: Any) -> None:
        """Change how the service varies: any keyword of the constructor's second group
        (``offset_mode`` … ``names``), plus ``instance_list_key``. Checked before any is set."""
        choices: dict[str, Sequence[object]] = {
            "offset_mode": ("page", "record"),
            "page_size_policy": ("reject", "clamp"),
            "layout": ("folders", "documented", "flat"),
            "name_encoding": ("auto", "utf-8", "gb18030"),
            "resources_api": ("ok", "missing", "forbidden"),
            "management_api": ("ok", "missing", "forbidden"),
            "names": ("plain", "chinese", "hostile"),
            "instance_list_key": ("commodity_orders", "commodity_order_lists"),
            "directory_entries": (True, False),
            "utf8_flag": (True, False),
            "extra_files": (True, False),
        }
        for name, value in options.items():
            if name == "max_page_size":
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ValueError(f"max_page_size must be a positive int, not {value!r}")
            elif name in choices:
                allowed = choices[name]
                # True == 1 in Python: booleans must be booleans, literals must be strings.
                if isinstance(value, bool) != isinstance(allowed[0], bool) or value not in allowed:
                    raise ValueError(f"{name} must be one of {tuple(allowed)}, not {value!r}")
            else:
                raise ValueError(f"unknown simulator option {name!r}")
        merged = {**self.options(), **options}
        if merged["utf8_flag"] and merged["name_encoding"] == "gb18030":
            raise ValueError("GB18030 names cannot carry the UTF-8 flag (utf8_flag=False)")
        with self._lock:
            for name, value in options.items():
                setattr(self, name, value)

    def options(self) -> dict[str, Any]:
        """The current values of everything ``configure`` accepts."""
        return {
            "offset_mode": self.offset_mode,
            "max_page_size": self.max_page_size,
            "page_size_policy": self.page_size_policy,
            "layout": self.layout,
            "directory_entries": self.directory_entries,
            "utf8_flag": self.utf8_flag,
            "name_encoding": self.name_encoding,
            "extra_files": self.extra_files,
            "resources_api": self.resources_api,
            "management_api": self.management_api,
            "names": self.names,
            "instance_list_key": self.instance_list_key,
        }

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(
        self, *, host: str = "127.0.0.1", port: int = 0, tls: ssl.SSLContext | None = None
    ) -> str:
        """Bind (an ephemeral port by default), serve in a daemon thread, return the base URL.

        ``tls``: a server-side context (certificate loaded) to serve HTTPS instead of HTTP.
        """
        if self._server is not None:
            raise RuntimeError("simulator already started")
        server = _Server((host, port), self)
        if tls is not None:
            # The handshake happens in the request thread, not in the accept loop.
            server.socket = tls.wrap_socket(
                server.socket, server_side=True, do_handshake_on_connect=False
            )
        self._scheme = "https" if tls is not None else "http"
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="dataarts-simulator",
            daemon=True,
        )
        thread.start()
        self._server, self._thread = server, thread
        return self.url

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None:
            return
        self.export_gate.open()  # no request thread left waiting on a test that ended
        server.shutdown()
        server.server_close()
        if thread is not None:
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Simulator:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("simulator not started")
        host, port = self._server.server_address[:2]
        return f"{self._scheme}://{host!s}:{port}"

    # ---- state: mutations --------------------------------------------------------------------

    def add_instance(self, instance_id: str, name: str, *, status: int = 2) -> None:
        """Add a DataArts Studio instance (status 2 = effective, see dlf-api.md §1.4)."""
        with self._lock:
            if instance_id in self._instances:
                raise ValueError(f"instance {instance_id!r} already exists")
            self._instances[instance_id] = _Instance(instance_id, name, status)

    def set_instance_status(self, instance_id: str, status: int) -> None:
        """E.g. 4 (frozen) or 3 (deleted): only status 2 counts as effective."""
        with self._lock:
            if instance_id not in self._instances:
                raise KeyError(f"unknown instance {instance_id!r}")
            self._instances[instance_id].status = status

    def add_workspace(
        self, workspace_id: str, name: str, *, instance_id: str = DEFAULT_INSTANCE_ID
    ) -> None:
        with self._lock:
            if workspace_id in self._workspaces:
                raise ValueError(f"workspace {workspace_id!r} already exists")
            if instance_id not in self._instances:
                raise ValueError(f"unknown instance {instance_id!r}")
            self._workspaces[workspace_id] = _Workspace(
                workspace_id, name, instance_id=instance_id, create_time=self._clock_ms
            )

    def remove_workspace(self, workspace_id: str) -> None:
        """Delete a workspace with everything in it."""
        with self._lock:
            self._workspace(workspace_id)
            del self._workspaces[workspace_id]
            self._tick()

    def rename_workspace(self, workspace_id: str, name: str) -> None:
        """Rename a workspace; its id (the 'workspace' header) stays the same."""
        with self._lock:
            self._workspace(workspace_id).name = name
            self._tick()

    def populate(
        self,
        workspace_id: str,
        jobs: int,
        *,
        realtime_fraction: float = 0.2,
        chinese_fraction: float = 0.1,
        scripts: int | None = None,
        resources: int = 0,
    ) -> list[str]:
        """Add ``jobs`` realistic jobs and their scripts (and ``resources`` resource
        definitions); return the new job names.

        At least one script is shared by the first two jobs (when there are two) and about a
        fifth of the scripts are standalone (used by no job). Every other new job uses one of
        the new resources (round robin). With ``names="chinese"``/``"hostile"`` the fixed
        name set is added too, the first time only (its new jobs are returned as well).
        """
        with self._lock:
            workspace = self._workspace(workspace_id)
            rng = self._rng
            script_count = (
                scripts if scripts is not None else (max(2, jobs * 3 // 5) if jobs else 0)
            )
            pool = [
                self._new_populated_script(workspace, rng.random() < chinese_fraction)
                for _ in range(script_count)
            ]
            standalone = max(1, script_count // 5) if script_count >= 2 else 0
            usable = pool[: script_count - standalone]
            names: list[str] = []
            for index in range(jobs):
                chosen = self._pick_scripts(usable, shared_first=index < 2)
                name = self._new_name(
                    workspace.jobs, rng.random() < chinese_fraction, _CHINESE_JOBS, job=True
                )
                job_type = "REAL_TIME" if rng.random() < realtime_fraction else "BATCH"
                depend_on = [names[-1]] if names and rng.random() < 0.2 else []
                self._create_job(
                    workspace, name, job_type, chosen, rng.choice(_USERS), depend_on=depend_on
                )
                names.append(name)
            added = [self._new_populated_resource(workspace) for _ in range(resources)]
            if added:  # which job uses which resource: no draw, so the rest stays as it was
                for index, name in enumerate(names[::2]):
                    workspace.jobs[name].resources.append(added[index % len(added)])
            if self.names == "chinese":
                names += self._add_fixed_names(workspace, "chinese")
            elif self.names == "hostile":
                names += self._add_fixed_names(workspace, "hostile")
            return names

    def populate_hostile(self, workspace_id: str) -> list[str]:
        """Add jobs, scripts and resources named with every class of ``HOSTILE_NAME_CLASSES``
        (long CJK, Windows device names, trailing dot, case and NFC/NFD pairs, a tab, a
        backslash, URL-special characters, ``.git``); jobs use hostile scripts and resources,
        a few scripts are standalone. Only the first call per workspace adds anything; returns
        the new job names."""
        with self._lock:
            return self._add_fixed_names(self._workspace(workspace_id), "hostile")

    def populate_chinese(self, workspace_id: str) -> list[str]:
        """Add a few short Chinese-named jobs, scripts and a resource (one name holds a byte
        0x5C in GB18030). Only the first call per workspace adds anything; returns the new
        job names."""
        with self._lock:
            return self._add_fixed_names(self._workspace(workspace_id), "chinese")

    def add_job(
        self,
        workspace_id: str,
        name: str,
        *,
        job_type: str = "BATCH",
        scripts: Sequence[str] = (),
        user: str = "alice",
        resources: Sequence[str] = (),
    ) -> None:
        """Add a job; scripts (HiveSQL) and resources (jar) that do not exist yet are created."""
        if job_type not in JOB_TYPES:
            raise ValueError(f"job_type must be one of {JOB_TYPES}, not {job_type!r}")
        with self._lock:
            workspace = self._workspace(workspace_id)
            if name in workspace.jobs:
                raise ValueError(f"job {name!r} already exists")
            for script in scripts:
                if script not in workspace.scripts:
                    domain = self._rng.choice(_DOMAINS)
                    workspace.scripts[script] = _generated_script(
                        self._rng, script, "HiveSQL", domain, chinese=False
                    )
            for resource in resources:
                if resource not in workspace.resources:
                    workspace.resources[resource] = _resource_definition(
                        self._rng, workspace_id, resource, "jar"
                    )
            self._create_job(workspace, name, job_type, list(scripts), user, depend_on=[])
            workspace.jobs[name].resources = list(dict.fromkeys(resources))

    def modify_job(self, workspace_id: str, name: str, *, user: str = "bob") -> None:
        """A real definition change; bumps lastUpdateTime, lastUpdateUser and version."""
        with self._lock:
            job = self._job(workspace_id, name)
            _change_definition(job.definition)
            self._touch(job, user)

    def delete_job(self, workspace_id: str, name: str) -> None:
        with self._lock:
            self._job(workspace_id, name)
            del self._workspaces[workspace_id].jobs[name]
            self._tick()

    def rename_job(self, workspace_id: str, old: str, new: str, *, user: str = "bob") -> None:
        with self._lock:
            workspace = self._workspace(workspace_id)
            job = self._job(workspace_id, old)
            if new in workspace.jobs:
                raise ValueError(f"job {new!r} already exists")
            del workspace.jobs[old]
            job.definition["name"] = new
            workspace.jobs[new] = job
            self._touch(job, user)

    def set_script(
        self, workspace_id: str, name: str, content: str, *, script_type: str = "HiveSQL"
    ) -> None:
        """Create or change a script. Jobs using it keep their lastUpdateTime (as on DataArts)."""
        with self._lock:
            workspace = self._workspace(workspace_id)
            script = workspace.scripts.get(name)
            if script is None:
                domain = self._rng.choice(_DOMAINS)
                workspace.scripts[name] = _script_definition(
                    self._rng, name, script_type, content, domain
                )
            else:
                script["type"] = script_type
                script["content"] = content
            self._tick()

    def delete_script(self, workspace_id: str, name: str) -> None:
        """Delete a script (jobs that use it keep their node pointing at the name)."""
        with self._lock:
            scripts = self._workspace(workspace_id).scripts
            if name not in scripts:
                raise KeyError(f"unknown script {name!r} in workspace {workspace_id!r}")
            del scripts[name]
            self._tick()

    def clear_workspace(self, workspace_id: str) -> None:
        """Delete every job and script of a workspace (a disaster, for restore tests)."""
        with self._lock:
            workspace = self._workspace(workspace_id)
            workspace.jobs.clear()
            workspace.scripts.clear()
            self._tick()

    def stop_job(self, workspace_id: str, name: str) -> None:
        """Stop a job's schedule (an import may overwrite only stopped jobs)."""
        with self._lock:
            self._job(workspace_id, name).status = "STOPPED"

    def add_bucket(self, name: str) -> None:
        with self._lock:
            self._buckets.setdefault(name, {})

    def add_resource(
        self,
        workspace_id: str,
        name: str,
        *,
        resource_type: str = "jar",
        location: str | None = None,
        depend_files: Sequence[str] = (),
        desc: str = "",
        directory: str = "/resources",
    ) -> None:
        """Add a resource definition (the OBS object it points to is not simulated)."""
        if resource_type not in RESOURCE_TYPES:
            raise ValueError(f"resource_type must be one of {RESOURCE_TYPES}")
        with self._lock:
            workspace = self._workspace(workspace_id)
            if name in workspace.resources:
                raise ValueError(f"resource {name!r} already exists")
            workspace.resources[name] = _resource_definition(
                self._rng,
                workspace_id,
                name,
                resource_type,
                location=location,
                depend_files=depend_files,
                desc=desc,
                directory=directory,
            )
            self._tick()

    def modify_resource(
        self,
        workspace_id: str,
        name: str,
        *,
        location: str | None = None,
        depend_files: Sequence[str] | None = None,
        desc: str | None = None,
    ) -> None:
        """Change a resource; with no changes given, point it at a new version of its file."""
        with self._lock:
            resource = self._resource(workspace_id, name)
            now = self._tick()
            if location is None and depend_files is None and desc is None:
                stem, dot, extension = str(resource["location"]).rpartition(".")
                location = f"{stem}-{now}.{extension}" if dot else f"{extension}-{now}"
            if location is not None:
                resource["location"] = location
            if depend_files is not None:
                resource["dependFiles"] = list(depend_files)
            if desc is not None:
                resource["desc"] = desc

    def delete_resource(self, workspace_id: str, name: str) -> None:
        with self._lock:
            self._resource(workspace_id, name)
            del self._workspaces[workspace_id].resources[name]
            self._tick()

    # ---- state: queries (deep copies) --------------------------------------------------------

    def resources(self, workspace_id: str) -> dict[str, dict[str, Any]]:
        with self._lock:
            return _copied(self._workspace(workspace_id).resources)

    def workspaces(self, instance_id: str | None = None) -> dict[str, str]:
        """Workspace id → name (of one instance, or of all)."""
        with self._lock:
            return {
                workspace.id: workspace.name
                for workspace in self._workspaces.values()
                if instance_id is None or workspace.instance_id == instance_id
            }

    # ---- state: queries (deep copies) --------------------------------------------------------

    def get_object(self, bucket: str, key: str) -> bytes:
        with self._lock:
            return self._buckets[bucket][key]

    def objects(self, bucket: str) -> list[str]:
        with self._lock:
            return sorted(self._buckets[bucket])

    def job_status(self, workspace_id: str, name: str) -> str:
        with self._lock:
            return self._job(workspace_id, name).status

    def jobs(self, workspace_id: str) -> dict[str, dict[str, Any]]:
        with self._lock:
            workspace = self._workspace(workspace_id)
            return {name: _copied(job.definition) for name, job in workspace.jobs.items()}

    def scripts(self, workspace_id: str) -> dict[str, dict[str, Any]]:
        with self._lock:
            return _copied(self._workspace(workspace_id).scripts)

    def job_scripts(self, workspace_id: str, name: str) -> list[str]:
        with self._lock:
            return _job_scripts(self._job(workspace_id, name).definition)

    def job_rows(self, workspace_id: str, job_type: str) -> list[Json]:
        """Every job of one type as the job list answers it (no paging, no faults)."""
        with self._lock:
            selected = sorted(
                (j for j in self._workspace(workspace_id).jobs.values() if j.job_type == job_type),
                key=lambda job: job.name,
            )
            return [self._job_row(job) for job in selected]

    def export_archive(
        self, workspace_id: str, names: Sequence[str], *, export_depend: bool = True
    ) -> bytes:
        """The zip a batch export of ``names`` answers, under the current options (no faults);
        KeyError for a job that does not exist."""
        with self._lock:
            files = self.export_files(workspace_id, names, export_depend=export_depend)
            stamp = self._clock_ms
            options = self.options()
        encoding = options["name_encoding"]
        if encoding == "auto":
            encoding = "utf-8" if options["utf8_flag"] else "gb18030"
        archive = _zip(
            files,
            stamp,
            utf8_flag=options["utf8_flag"],
            name_encoding=encoding,
            directory_entries=options["directory_entries"],
        )
        return archive if self.export_hook is None else self.export_hook(archive)

    def instances(self) -> list[tuple[str, str, int]]:
        """(id, name, status) of every instance, by id."""
        with self._lock:
            return [
                (i.id, i.name, i.status)
                for i in sorted(self._instances.values(), key=lambda i: i.id)
            ]

    def export_files(
        self, workspace_id: str, names: Sequence[str], *, export_depend: bool = True
    ) -> dict[str, bytes]:
        """The file entries (path -> bytes, in zip order) a batch export of ``names`` holds,
        laid out as ``layout`` says (directory entries are not listed here).

        A dependency (script, resource, CDM job) sits beside its job when the job has a
        folder, else once under a top-level ``scripts/``, ``resources/`` or ``cdm/``.
        """
        with self._lock:
            workspace = self._workspace(workspace_id)
            files: dict[str, bytes] = {}
            for name in dict.fromkeys(names):
                job = self._job(workspace_id, name)
                scripts, resources, cdm_jobs = [], [], []
                if export_depend:
                    scripts = [s for s in _job_scripts(job.definition) if s in workspace.scripts]
                    if self.extra_files:
                        resources = [r for r in job.resources if r in workspace.resources]
                        cdm_jobs = _cdm_jobs(job.definition)
                in_folder = self.layout == "folders" or (self.layout == "documented" and scripts)
                folder = f"jobs/{name}/" if in_folder else ""
                files[f"{folder or 'jobs/'}{name}.job"] = _to_json_bytes(job.definition)
                for script in scripts:
                    path = f"{folder or 'scripts/'}{script}.script"
                    files[path] = _to_json_bytes(workspace.scripts[script])
                for resource in resources:
                    path = f"{folder or 'resources/'}{resource}.resource"
                    files[path] = _to_json_bytes(workspace.resources[resource])
                for cluster, cdm_job in cdm_jobs:
                    files[f"{folder or 'cdm/'}{cdm_job}.json"] = _cdm_definition(cluster, cdm_job)
            return files

    def content(self, workspace_id: str) -> dict[str, Any]:
        """Everything of one workspace a backup should hold, as plain data (deep copies):

        ``jobs`` (name -> definition, as the ``.job`` file holds it), ``job_types`` (name ->
        BATCH/REAL_TIME), ``job_scripts`` / ``job_resources`` (job -> names it uses that
        exist), ``scripts`` and ``resources`` (name -> definition, as the lists return them),
        and ``export``: path -> bytes of a full export of every job (``exportDepend``) under
        the current layout and options -- the union of any chunked exports.
        """
        with self._lock:
            workspace = self._workspace(workspace_id)
            jobs = sorted(workspace.jobs)
            return {
                "workspace": {"id": workspace.id, "name": workspace.name},
                "jobs": {name: _copied(workspace.jobs[name].definition) for name in jobs},
                "job_types": {name: workspace.jobs[name].job_type for name in jobs},
                "job_scripts": {
                    name: [
                        script
                        for script in _job_scripts(workspace.jobs[name].definition)
                        if script in workspace.scripts
                    ]
                    for name in jobs
                },
                "job_resources": {
                    name: [r for r in workspace.jobs[name].resources if r in workspace.resources]
                    for name in jobs
                },
                "scripts": _copied(workspace.scripts),
                "resources": _copied(workspace.resources),
                "export": self.export_files(workspace_id, jobs),
            }

    @property
    def calls(self) -> list[CallRecord]:
        with self._lock:
            return list(self._calls)

    @property
    def served(self) -> list[ServedRecord]:
        with self._lock:
            return list(self._served)

    def clear_calls(self) -> None:
        with self._lock:
            self._calls.clear()
            self._served.clear()

    # ---- state: helpers (caller holds the lock) ----------------------------------------------

    def _workspace(self, workspace_id: str) -> _Workspace:
        try:
            return self._workspaces[workspace_id]
        except KeyError:
            raise KeyError(f"unknown workspace {workspace_id!r}") from None

    def _resource(self, workspace_id: str, name: str) -> Json:
        try:
            return self._workspace(workspace_id).resources[name]
        except KeyError:
            raise KeyError(f"unknown resource {name!r} in workspace {workspace_id!r}") from None

    def _add_fixed_names(self, workspace: _Workspace, which: str) -> list[str]:
        """Add the fixed name set ``which`` ("hostile"/"chinese") unless it was added before."""
        if which in workspace.name_sets:
            return []
        workspace.name_sets.add(which)
        if which == "hostile":
            jobs, standalone, resources = (
                _HOSTILE_JOBS,
                _HOSTILE_STANDALONE_SCRIPTS,
                _HOSTILE_RESOURCES,
            )
        else:
            jobs, standalone = _CHINESE_JOBS_FIXED, _CHINESE_STANDALONE_SCRIPTS
            resources = _CHINESE_RESOURCES
        rng = self._rng
        for resource in resources:
            if resource not in workspace.resources:
                workspace.resources[resource] = _resource_definition(
                    rng, workspace.id, resource, "jar", desc=f"{which} name", directory="/lib"
                )
        used = [script for job in jobs for script in job.scripts]
        for script in dict.fromkeys([*used, *standalone]):
            if script not in workspace.scripts:
                script_type = rng.choice(_POPULATED_SCRIPT_TYPES)
                chinese = not script.isascii()
                workspace.scripts[script] = _generated_script(
                    rng, script, script_type, rng.choice(_DOMAINS), chinese
                )
        names: list[str] = []
        for job in jobs:
            if job.name in workspace.jobs:
                continue
            user = rng.choice(_USERS)
            self._create_job(workspace, job.name, job.job_type, job.scripts, user, depend_on=[])
            workspace.jobs[job.name].resources = list(job.resources)
            names.append(job.name)
        return names

    def _new_populated_resource(self, workspace: _Workspace) -> str:
        rng = self._rng
        resource_type = rng.choice(("jar", "jar", "file", "archive"))
        domain = rng.choice(_DOMAINS)
        number = len(workspace.resources) + 1
        while f"{domain}_{resource_type}_{number}" in workspace.resources:
            number += 1
        name = f"{domain}_{resource_type}_{number}"
        depends = [f"obs://dlf-lib/{domain}/common-{rng.randint(1, 9)}.jar"]
        workspace.resources[name] = _resource_definition(
            rng,
            workspace.id,
            name,
            resource_type,
            depend_files=depends if resource_type == "jar" else (),
            desc=f"{domain} {resource_type}",
            directory=f"/resources/{domain}",
        )
        return name

    def _job(self, workspace_id: str, name: str) -> _Job:
        try:
            return self._workspace(workspace_id).jobs[name]
        except KeyError:
            raise KeyError(f"unknown job {name!r} in workspace {workspace_id!r}") from None

    def _tick(self) -> int:
        self._clock_ms += 1000
        return self._clock_ms

    def _touch(self, job: _Job, user: str) -> None:
        job.last_update_time = self._tick()
        job.definition["lastUpdateUser"] = user
        job.definition["version"] = int(job.definition.get("version", 0)) + 1

    def _new_name(
        self, taken: dict[str, Any], chinese: bool, chinese_words: Sequence[str], *, job: bool
    ) -> str:
        rng = self._rng
        while True:
            number = len(taken) + rng.randint(1, 99)
            if chinese:
                candidate = f"{rng.choice(chinese_words)}_{number}"
            elif job:
                sep = rng.choice(_ASCII_SEPARATORS)
                domain, action = rng.choice(_DOMAINS), rng.choice(_ACTIONS)
                candidate = f"{rng.choice(_LAYERS)}_{domain}{sep}{action}_{number}"
            else:
                candidate = f"{rng.choice(_LAYERS)}_{rng.choice(_DOMAINS)}_{number}"
            if candidate not in taken:
                return candidate

    def _new_populated_script(self, workspace: _Workspace, chinese: bool) -> str:
        rng = self._rng
        script_type = rng.choice(_POPULATED_SCRIPT_TYPES)
        base = self._new_name(workspace.scripts, chinese, _CHINESE_SCRIPTS, job=False)
        name = base if chinese else f"{base}_{_SCRIPT_SUFFIXES[script_type]}"
        while name in workspace.scripts:
            name += "_x"
        domain = rng.choice(_DOMAINS)
        workspace.scripts[name] = _generated_script(rng, name, script_type, domain, chinese)
        return name

    def _pick_scripts(self, usable: Sequence[str], *, shared_first: bool) -> list[str]:
        if not usable:
            return []
        count = min(len(usable), self._rng.choice((0, 1, 1, 2, 2, 3)))
        chosen = self._rng.sample(list(usable), count)
        if shared_first and usable[0] not in chosen:
            chosen.insert(0, usable[0])
        return chosen

    def _create_job(
        self,
        workspace: _Workspace,
        name: str,
        job_type: str,
        script_names: Sequence[str],
        user: str,
        *,
        depend_on: Sequence[str],
    ) -> None:
        now = self._tick()
        self._next_job_id += 1
        definition = _job_definition(
            self._rng,
            name=name,
            job_type=job_type,
            scripts=[workspace.scripts[script] for script in script_names],
            user=user,
            job_id=self._next_job_id,
            domain=self._rng.choice(_DOMAINS),
            depend_on=depend_on,
            workspace_id=workspace.id,
        )
        if job_type == "REAL_TIME":
            status = "NORMAL"
        else:
            status = "SCHEDULING" if definition["schedule"]["type"] == "CRON" else "STOPPED"
        workspace.jobs[name] = _Job(definition, now, user, now, status)

    # ---- HTTP: dispatch ----------------------------------------------------------------------

    def _dispatch(self, request: _Request) -> _Response:
        """Answer one HTTP request. The single place to add fault injection later."""
        received = time.monotonic()
        try:
            response = self._route(request)
        except Exception:
            logger.exception("simulator: unhandled error for %s %s", request.method, request.path)
            response = _error_response(500, "DLF.0000", "Internal server error.")
        response.headers.setdefault("X-Request-Id", uuid.uuid4().hex)
        if request.path.startswith("/v1/"):
            record = ServedRecord(
                request.method,
                request.path,
                response.status,
                received,
                time.monotonic(),
                response.api,
            )
            with self._lock:
                self._served.append(record)
        return response

    def _route(self, request: _Request) -> _Response:
        path = request.path
        if path.startswith("/_sim/"):
            control = self._control_routes.get((request.method, path))
            if control is None:
                return _json_response(404, {"ok": False, "error": f"no control route {path}"})
            return control(request)
        if path == IAM_TOKENS_PATH and request.method == "POST":
            answer = self.auth.issue_token(request.body)
            return _Response(answer.status, _to_json_bytes(answer.body), headers=answer.headers)
        if path.startswith(OBS_PATH_PREFIX + "/"):
            return self._obs(request)
        match = re.fullmatch(r"/v1/([^/]+)(/.*)", path)
        if match is None or match[1] != self.project_id:
            return _error_response(404, *_API_NOT_FOUND)
        for route in self._dlf_routes:
            params = route.pattern.fullmatch(match[2])
            if route.method == request.method and params is not None:
                if not self._right_host(route, request):
                    return _error_response(404, *_API_NOT_FOUND)
                if self._availability(route) == "missing":
                    return _error_response(404, *_UNPUBLISHED_API)
                response = self._injected_fault(route)
                if response is None:
                    response = self._answer_dlf(route, request, params.groupdict())
                    response = self._maybe_glitch(route, request, response)
                    response = self._maybe_truncate(route, response)
                response.api = route.api
                return response
        return _error_response(404, *_API_NOT_FOUND)

    def _availability(self, route: _Route) -> ApiAvailability:
        if route.optional_api == "resources":
            return self.resources_api
        if route.optional_api == "management":
            return self.management_api
        return "ok"

    def _right_host(self, route: _Route, request: _Request) -> bool:
        if self.management_hostname is None:
            return True
        host = urlsplit(f"//{request.header('Host') or ''}").hostname or ""
        return (host == self.management_hostname.lower()) == route.management

    # ---- faults ------------------------------------------------------------------------------

    def _injected_fault(self, route: _Route) -> _Response | None:
        """Latency, throttling and server errors, decided before the real answer."""
        faults = self.faults
        exporting = route.handler == self._batch_export
        throttled = self._throttled(route.api, exporting)  # counted as they arrive
        delay = faults.latency + (faults.export_latency if exporting else 0.0)
        if delay > 0:
            time.sleep(delay)
        if exporting:
            self.export_gate.pass_through()
        if throttled is not None:
            return throttled
        with self._lock:
            if faults.error_rate > 0 and self._fault_rng.random() < faults.error_rate:
                status = self._fault_rng.choice((500, 503))
                return _error_response(status, "DLF.0000", "Internal server error.")
            if route.handler == self._list_jobs and faults.empty_listings > 0:
                faults.empty_listings -= 1
                return _json_response(200, {"total": 0, "jobs": []})
        return None

    def _throttled(self, api: str, exporting: bool) -> _Response | None:
        """429 when a limit's one-second window is full (rejected calls do not count): the
        limit of all calls, of exports, and the API's own (``throttle_per_api``)."""
        faults = self.faults
        with self._lock:
            now = self._rate_clock()
            windows = [(faults.throttle_rps, self._recent_calls)]
            if exporting:
                windows.append((faults.export_throttle_rps, self._recent_exports))
            own = faults.throttle_per_api.get(api, 0.0)
            if own > 0:
                windows.append((own, self._recent_by_api.setdefault(api, [])))
            for limit, recent in windows:
                if limit <= 0:
                    continue
                while recent and now - recent[0] >= 1.0:
                    del recent[0]
                if len(recent) >= limit:
                    response = _error_response(
                        429,
                        "APIGW.0308",
                        "The throttling threshold has been reached: policy user over ratelimit",
                    )
                    response.headers["Retry-After"] = f"{faults.retry_after:g}"
                    return response
            for limit, recent in windows:
                if limit > 0:
                    recent.append(now)
        return None

    def _maybe_glitch(self, route: _Route, request: _Request, response: _Response) -> _Response:
        """Spoil a successful list answer with the first armed ``Glitch`` that matches it."""
        if route.list_kind is None or response.status != 200:
            return response
        query = request.query
        lists = {route.list_kind}
        if route.list_kind == "jobs":
            lists.add(query.get("jobType") or "BATCH")
        try:
            offset = int(query.get("offset") or 0)
        except ValueError:
            return response
        with self._lock:
            glitch = self._take_glitch(lists, offset, request.header("workspace"))
        if glitch is None:
            return response
        body = json.loads(response.body)
        rows_key, total_key = {
            "jobs": ("jobs", "total"),
            "scripts": ("scripts", "total"),
            "resources": ("resources", "total"),
            "instances": (self.instance_list_key, "count"),
            "workspaces": ("data", "count"),
        }[route.list_kind]
        if glitch.kind == "empty":
            body[rows_key], body[total_key] = [], 0
            if "total_page" in body:
                body["total_page"] = 0
        elif glitch.kind == "total":
            body[total_key] = glitch.total
        else:
            body[rows_key] = body[rows_key][glitch.rows :]
        return _Response(200, _to_json_bytes(body), headers=response.headers)

    def _take_glitch(self, lists: set[str], offset: int, workspace: str | None) -> Glitch | None:
        """The glitch that fires for this answer, used up by one (caller holds the lock)."""
        armed = self.faults.glitches
        for glitch in list(armed):
            if glitch.list not in lists or glitch.offset not in (None, offset):
                continue
            if glitch.workspace not in (None, workspace):
                continue
            if glitch.skip > 0:
                glitch.skip -= 1
                continue
            glitch.times -= 1
            if glitch.times <= 0:
                armed.remove(glitch)
            return glitch
        return None

    def _maybe_truncate(self, route: _Route, response: _Response) -> _Response:
        if route.handler != self._batch_export or response.status != 200:
            return response
        with self._lock:
            cut = self.faults.truncate_rate > 0 and (
                self._fault_rng.random() < self.faults.truncate_rate
            )
        if cut:
            response.truncate_to = len(response.body) // 2
        return response

    def _answer_dlf(
        self, route: _Route, request: _Request, raw_params: dict[str, str]
    ) -> _Response:
        auth_error = self._check_auth(request)
        if auth_error is not None:
            self.auth.record_failure(_auth_request(request), auth_error)
            return _error_response(401, "APIGW.0301", auth_error)
        workspace_id = request.header("workspace")
        call: _Call | None = None
        with self._lock:
            workspace = self._workspaces.get(workspace_id or "")
        availability = self._availability(route)
        if availability == "forbidden" and route.optional_api == "management":
            response = _iam_forbidden(
                "DataArtsStudio:instance:list"
                if route.handler == self._list_instances
                else "DataArtsStudio:workspace:list"
            )
        elif availability == "forbidden":
            response = _error_response(403, *_FORBIDDEN)
        elif workspace is None and route.needs_workspace:
            response = _error_response(400, *_INVALID_PARAMETER)
        elif workspace_id in self.faults.forbidden_workspaces:
            response = _error_response(403, *_FORBIDDEN)
        else:
            call = _Call(
                request=request,
                params={key: unquote(value) for key, value in raw_params.items()},
                workspace=workspace or _Workspace("", ""),
            )
            try:
                response = route.handler(call)
            except _DlfError as error:
                response = _error_response(error.status, error.code, error.message)
        self._record(request, workspace_id, call.job_names if call else (), response.status)
        return response

    def _check_auth(self, request: _Request) -> str | None:
        if self._authenticate is not None:
            return self._authenticate(_auth_request(request))
        if not self.require_auth:
            return None
        return self.auth.check(_auth_request(request))

    def _record(
        self, request: _Request, workspace: str | None, job_names: tuple[str, ...], status: int
    ) -> None:
        record = CallRecord(
            method=request.method,
            path=request.path,
            query=request.query,
            workspace=workspace,
            job_names=job_names,
            status=status,
        )
        with self._lock:
            self._calls.append(record)

    # ---- HTTP: DLF routes --------------------------------------------------------------------

    def _page_limit(self, query: dict[str, str], max_limit: int, default: int) -> int:
        """The page size this answer uses: ``limit`` as asked, or clamped to ``max_limit``."""
        limit = _int_param(query, "limit", default)
        if limit < 1 or (limit > max_limit and self.page_size_policy == "reject"):
            raise _invalid_parameter()
        return min(limit, max_limit)

    def _page(
        self,
        rows: Sequence[Any],
        query: dict[str, str],
        max_limit: int,
        default: int = DEFAULT_LIMIT,
    ) -> list[Any]:
        limit = self._page_limit(query, max_limit, default)
        offset = _int_param(query, "offset", 0)
        if offset < 0:
            raise _invalid_parameter()
        start = offset * limit if self.offset_mode == "page" else offset
        return list(rows[start : start + limit])

    def _list_jobs(self, call: _Call) -> _Response:
        query = call.request.query
        job_type = query.get("jobType", "BATCH")
        if job_type not in JOB_TYPES:
            raise _invalid_parameter()
        with self._lock:
            selected = sorted(
                (job for job in call.workspace.jobs.values() if job.job_type == job_type),
                key=lambda job: job.name,
            )
            page = self._page(selected, query, self.max_page_size)
            rows = [self._job_row(job) for job in page]
            self._vanish_listed(call.workspace)
            if self.faults.create_while_listing:
                name = f"created_while_listing_{len(call.workspace.jobs)}"
                self._create_job(call.workspace, name, job_type, [], "alice", depend_on=[])
        return _json_response(200, {"total": len(selected), "jobs": rows})

    def _vanish_listed(self, workspace: _Workspace) -> None:
        """Apply ``faults.delete_after_listing`` to this workspace (caller holds the lock)."""
        pending = self.faults.delete_after_listing
        doomed = [name for name in pending if name in workspace.jobs]
        for name in doomed:
            del workspace.jobs[name]
            self._tick()
        self.faults.delete_after_listing = [name for name in pending if name not in doomed]

    def _job_row(self, job: _Job) -> Json:
        definition = job.definition
        basic = definition.get("basicConfig", {})
        row: Json = {
            "name": job.name,
            "jobType": job.job_type,
            "owner": basic.get("owner", job.create_user),
            "priority": basic.get("priority", 0),
            "status": job.status,
            "createUser": job.create_user,
            "createTime": job.create_time,
            "lastUpdateTime": job.last_update_time,
            "lastUpdateUser": definition.get("lastUpdateUser", job.create_user),
            "path": definition.get("directory", "/"),
            "singleNodeJobFlag": bool(definition.get("singleNodeJobFlag", False)),
        }
        if job.job_type == "BATCH":  # these change with every run of the job
            row["lastInstanceStatus"] = self._noise.choice(
                ("success", "success", "fail", "running")
            )
            row["lastInstanceEndTime"] = self._clock_ms + self._noise.randint(1, 86_400) * 1000
        return row

    def _show_job(self, call: _Call) -> _Response:
        """Job detail: the definition, or 400 DLF.0100 -- the proof that a job is gone."""
        name = call.params["job_name"]
        call.job_names = (name,)
        with self._lock:
            job = call.workspace.jobs.get(name)
            if job is None:
                raise _DlfError("DLF.0100", "The job does not exist.")
            return _json_response(200, job.definition)

    def _show_script(self, call: _Call) -> _Response:
        with self._lock:
            script = call.workspace.scripts.get(call.params["script_name"])
            if script is None:
                raise _DlfError("DLF.6201", "The script does not exist.")
            return _json_response(200, script)

    def _show_resource(self, call: _Call) -> _Response:
        resource_id = call.params["resource_id"]
        with self._lock:
            for resource in call.workspace.resources.values():
                if resource.get("id") == resource_id:
                    return _json_response(200, resource)
        raise _DlfError("DLF.6241", "The resource does not exist.")

    def _list_scripts(self, call: _Call) -> _Response:
        with self._lock:
            scripts = [call.workspace.scripts[name] for name in sorted(call.workspace.scripts)]
            page = self._page(
                scripts, call.request.query, min(SCRIPT_LIST_MAX_LIMIT, self.max_page_size)
            )
            body = _to_json_bytes({"total": len(scripts), "scripts": page})
        return _Response(200, body)

    def _list_resources(self, call: _Call) -> _Response:
        with self._lock:
            resources = [call.workspace.resources[n] for n in sorted(call.workspace.resources)]
            limit = min(RESOURCE_LIST_MAX_LIMIT, self.max_page_size)
            page = self._page(resources, call.request.query, limit)
            body = _to_json_bytes({"total": len(resources), "resources": page})
        return _Response(200, body)

    def _list_instances(self, call: _Call) -> _Response:
        query = dict(call.request.query)
        query.setdefault("limit", str(MANAGEMENT_DEFAULT_LIMIT))
        with self._lock:
            instances = [self._instances[i] for i in sorted(self._instances)]
            page = self._page(instances, query, self.max_page_size)
            rows = [
                {
                    "resource_id": instance.id,
                    "resource_name": instance.name,
                    "project_id": self.project_id,
                    "region_id": "sim-region-1",
                    "status": instance.status,
                    "resource_spec_code": "dayu.starter",
                    "eps_id": "0",
                    "create_time": CLOCK_START_MS,
                    "expire_time": CLOCK_START_MS + 365 * 86_400_000,
                }
                for instance in page
            ]
            key = self.instance_list_key
        return _json_response(200, {"billing_check": True, "count": len(instances), key: rows})

    def _list_workspaces(self, call: _Call) -> _Response:
        instance_id = call.params["instance_id"]
        query = dict(call.request.query)
        query.setdefault("limit", str(MANAGEMENT_DEFAULT_LIMIT))
        with self._lock:
            if instance_id not in self._instances:
                raise _invalid_parameter()
            # In creation order, as the console shows them.
            selected = [w for w in self._workspaces.values() if w.instance_id == instance_id]
            limit = self._page_limit(query, WORKSPACE_LIST_MAX_LIMIT, MANAGEMENT_DEFAULT_LIMIT)
            page = self._page(selected, query, WORKSPACE_LIST_MAX_LIMIT)
            rows = [self._workspace_row(workspace) for workspace in page]
        return _json_response(
            200, {"count": len(selected), "total_page": -(-len(selected) // limit), "data": rows}
        )

    def _workspace_row(self, workspace: _Workspace) -> Json:
        return {
            "id": workspace.id,
            "name": workspace.name,
            "description": "",
            "is_default": 1 if workspace.name == "default" else 0,
            "instance_id": workspace.instance_id,
            "project_id": self.project_id,
            "domain_id": "d0" * 16,
            "eps_id": "0",
            "owner_name": "admin",
            "create_user": "admin",
            "create_time": workspace.create_time,
            "update_user": "admin",
            "update_time": workspace.create_time,
            "member_num": 3,
            "job_log_location_name": f"obs://dlf-log-{workspace.id[:8]}/",
            "bad_record_location_name": "",
        }

    def _batch_export(self, call: _Call) -> _Response:
        names, export_depend = _parse_export_body(call.request.body)
        call.job_names = names
        if self.faults.export_cost_per_job > 0:
            time.sleep(self.faults.export_cost_per_job * len(names))
        with self._lock:
            missing = [name for name in names if name not in call.workspace.jobs]
            if missing:
                raise _DlfError("DLF.0100", "The job does not exist.")
            archive = self.export_archive(call.workspace.id, names, export_depend=export_depend)
        return _Response(
            200,
            archive,
            content_type="application/octet-stream",
            headers={"Content-Disposition": "attachment; filename=jobs.zip"},
        )

    # ---- HTTP: import (restore) ---------------------------------------------------------------

    def _read_import_file(self, body: bytes) -> tuple[str, bytes]:
        """(OBS path, zip bytes) named by an import/check-file body, or the DLF error."""
        try:
            payload = json.loads(body or b"{}")
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise _invalid_parameter() from None
        path = payload.get("path") if isinstance(payload, dict) else None
        match = re.fullmatch(r"obs://([^/]+)/(.+)", path) if isinstance(path, str) else None
        if match is None:
            raise _DlfError("DLF.0803", "The OBS path is invalid.")
        with self._lock:
            bucket = self._buckets.get(match[1])
            if bucket is None:
                raise _DlfError("DLF.1242", "The OBS bucket does not exist.")
            data = bucket.get(match[2])
        if data is None:
            raise _DlfError("DLF.0815", "Failed to read the OBS file.")
        if len(data) > IMPORT_MAX_BYTES:
            raise _DlfError("DLF.0815", "The job file exceeds 10 MB.")
        return path, data  # type: ignore[return-value]

    def _check_file(self, call: _Call) -> _Response:
        _, data = self._read_import_file(call.request.body)
        jobs, scripts = _parse_import_zip(data)
        return _json_response(
            200,
            {
                "jobs": [
                    {"name": name, "path": job.get("directory", "/"), "params": {}}
                    for name, job in jobs.items()
                ],
                "scripts": [
                    {"name": name, "path": script.get("directory", "/")}
                    for name, script in scripts.items()
                ],
            },
        )

    def _import_jobs(self, call: _Call) -> _Response:
        path, data = self._read_import_file(call.request.body)
        payload = json.loads(call.request.body)
        policy = payload.get("sameNamePolicy", "SKIP")
        if policy not in ("SKIP", "OVERWRITE"):
            raise _invalid_parameter()
        approvers = payload.get("approvers", [])
        named = isinstance(approvers, list) and all(
            isinstance(a, dict) and isinstance(a.get("approverName"), str) for a in approvers
        )
        if not named or payload.get("targetStatus", "SAVED") not in _TARGET_STATUSES:
            raise _invalid_parameter()
        jobs, scripts = _parse_import_zip(data)
        call.job_names = tuple(jobs)
        with self._lock:
            self.imports.requests.append(payload)
            workspace = call.workspace
            now = self._tick()
            for name, script in scripts.items():
                if name not in workspace.scripts or policy == "OVERWRITE":
                    workspace.scripts[name] = _copied(script)
            subtasks = [
                self._import_job(workspace, name, definition, policy, now)
                for name, definition in jobs.items()
            ]
            failed = any(sub["status"] == "FAILED" for sub in subtasks)
            task = _SystemTask(
                id=uuid.uuid4().hex,
                name=f"Import the job from {path}.",
                start_time=now,
                status="FAILED" if failed else "SUCCESSFUL",
                message="Some jobs failed to be imported." if failed else "",
                subtasks=subtasks,
                polls_left=self.import_polls,
            )
            self._tasks[task.id] = task
        return _json_response(200, {"taskId": task.id})

    def _import_job(
        self, workspace: _Workspace, name: str, definition: Json, policy: str, now: int
    ) -> Json:
        subtask: Json = {
            "id": uuid.uuid4().hex,
            "name": f"Import the {name} job.",
            "lastUpdate": now,
            "status": "SUCCESSFUL",
        }
        if name in self.imports.subtask_names:
            if self.imports.subtask_names[name] is None:
                del subtask["name"]
            else:
                subtask["name"] = self.imports.subtask_names[name]
        existing = workspace.jobs.get(name)
        if name in self.imports.fail_jobs:
            subtask["status"] = "FAILED"
            subtask["message"] = "The job is locked by another user."
        elif existing is not None and policy == "SKIP":
            subtask["message"] = "Skipped: a job with the same name exists."
        elif existing is not None and existing.status in ("SCHEDULING", "NORMAL", "STARTING"):
            # As on DataArts: only a stopped job can be overwritten.
            subtask["status"] = "FAILED"
            subtask["message"] = "The job is running. Stop it before overwriting it."
        else:
            user = str(definition.get("lastUpdateUser") or "import")
            created = existing.create_time if existing else now
            workspace.jobs[name] = _Job(_copied(definition), created, user, now, "STOPPED")
        return subtask

    def _system_task(self, call: _Call) -> _Response:
        with self._lock:
            task = self._tasks.get(call.params["task_id"])
            if task is None:
                raise _DlfError("DLF.0810", "The system task does not exist.")
            running = task.polls_left > 0
            task.polls_left = max(0, task.polls_left - 1)
            status = "RUNNING" if running else task.status
            body: Json = {
                "id": task.id,
                "name": task.name,
                "startTime": task.start_time,
                "lastUpdate": task.start_time,
                "status": status,
                "projectId": self.project_id,
                self.imports.subtask_key: [
                    {**sub, "status": "RUNNING"} if running else dict(sub) for sub in task.subtasks
                ],
            }
            if not running:
                body["endTime"] = task.start_time
                if task.message:
                    body["message"] = task.message
        return _json_response(200, body)

    # ---- HTTP: OBS (restore uploads) ----------------------------------------------------------

    def _obs(self, request: _Request) -> _Response:
        """PUT of one object, path-style, checked like OBS checks an ``OBS AK:signature``."""
        bucket, _, raw_key = request.path[len(OBS_PATH_PREFIX) + 1 :].partition("/")
        if request.method != "PUT" or not bucket or not raw_key:
            return _obs_error(405, "MethodNotAllowed", "Only object uploads are simulated.")
        key = unquote(raw_key)
        problem = self._obs_auth_problem(request, bucket, key)
        if problem is not None:
            return _obs_error(403, *problem)
        digest = request.header("Content-MD5")
        actual = base64.b64encode(hashlib.md5(request.body).digest()).decode()  # noqa: S324
        if digest is not None and digest != actual:
            return _obs_error(400, "BadDigest", "The Content-MD5 you specified did not match.")
        with self._lock:
            objects = self._buckets.get(bucket)
            if objects is None:
                return _obs_error(404, "NoSuchBucket", "The specified bucket does not exist.")
            objects[key] = request.body
        etag = hashlib.md5(request.body).hexdigest()  # noqa: S324 -- OBS ETags are MD5
        return _Response(200, b"", content_type="text/plain", headers={"ETag": f'"{etag}"'})

    def _obs_auth_problem(self, request: _Request, bucket: str, key: str) -> tuple[str, str] | None:
        """(code, message) when the request's OBS signature is not valid, else None."""
        match = re.fullmatch(r"OBS ([^:\s]+):(\S+)", request.header("Authorization") or "")
        if match is None:
            return "AccessDenied", "Missing or malformed OBS Authorization header."
        secret = self.obs_credentials.get(match[1])
        if secret is None:
            return "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist."
        headers = {name.lower(): value for name, value in request.headers.items()}
        sent_date = headers.get("x-obs-date") or headers.get("date") or ""
        try:
            signed_at = email.utils.parsedate_to_datetime(sent_date)
        except (TypeError, ValueError):
            return "AccessDenied", "The request has no valid Date."
        if abs(time.time() - signed_at.timestamp()) > 15 * 60:
            return (
                "RequestTimeTooSkewed",
                "The difference between the request time and the server's time is too large.",
            )
        obs_headers = sorted(
            (name, value.strip()) for name, value in headers.items() if name.startswith("x-obs-")
        )
        string_to_sign = "\n".join(
            [
                request.method,
                headers.get("content-md5", ""),
                headers.get("content-type", ""),
                "" if "x-obs-date" in headers else headers.get("date", ""),
                *(f"{name}:{value}" for name, value in obs_headers),
                f"/{bucket}/{quote(key, safe='/~')}",
            ]
        )
        expected = base64.b64encode(
            hmac.new(secret.encode(), string_to_sign.encode("utf-8"), hashlib.sha1).digest()
        ).decode()
        if not hmac.compare_digest(expected, match[2]):
            return (
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        return None

    # ---- HTTP: control routes (no auth) ------------------------------------------------------

    def _mutations(self) -> dict[str, Callable[..., Any]]:
        return {
            "add_workspace": self.add_workspace,
            "populate": self.populate,
            "add_job": self.add_job,
            "modify_job": self.modify_job,
            "delete_job": self.delete_job,
            "rename_job": self.rename_job,
            "set_script": self.set_script,
            "delete_script": self.delete_script,
            "clear_workspace": self.clear_workspace,
            "stop_job": self.stop_job,
            "add_bucket": self.add_bucket,
            "add_instance": self.add_instance,
            "set_instance_status": self.set_instance_status,
            "remove_workspace": self.remove_workspace,
            "rename_workspace": self.rename_workspace,
            "add_resource": self.add_resource,
            "modify_resource": self.modify_resource,
            "delete_resource": self.delete_resource,
            "populate_hostile": self.populate_hostile,
            "populate_chinese": self.populate_chinese,
        }

    def _control_mutate(self, request: _Request) -> _Response:
        try:
            payload = json.loads(request.body or b"{}")
            operation = self._mutations()[payload["op"]]
            args = payload.get("args", {})
            if not isinstance(args, dict):
                raise TypeError("args must be an object")
            result = operation(**args)
        except (KeyError, TypeError, ValueError) as error:
            return _json_response(400, {"ok": False, "error": f"{type(error).__name__}: {error}"})
        return _json_response(200, {"ok": True, "result": result})

    def _control_state(self, request: _Request) -> _Response:
        workspace_id = request.query.get("workspace", "")
        try:
            state = {"jobs": self.jobs(workspace_id), "scripts": self.scripts(workspace_id)}
        except KeyError as error:
            return _json_response(404, {"ok": False, "error": str(error)})
        return _json_response(200, state)

    def _control_faults(self, request: _Request) -> _Response:
        try:
            changes = json.loads(request.body or b"{}")
            known = {f.name for f in dataclasses.fields(Faults)}
            if not isinstance(changes, dict) or not set(changes) <= known:
                raise ValueError(f"fields must be among {sorted(known)}")
            if "glitches" in changes:
                raw = changes["glitches"]
                if not isinstance(raw, list) or not all(isinstance(g, dict) for g in raw):
                    raise ValueError("glitches must be a list of objects")
                changes["glitches"] = [Glitch(**glitch) for glitch in raw]
            if "throttle_per_api" in changes:
                limits = changes["throttle_per_api"]
                if not isinstance(limits, dict) or not set(limits) <= set(API_NAMES):
                    raise ValueError(f"throttle_per_api keys must be among {list(API_NAMES)}")
            with self._lock:
                for name, value in changes.items():
                    setattr(self.faults, name, value)
                if "seed" in changes:
                    self._fault_rng = random.Random(changes["seed"])
        except (ValueError, TypeError) as error:
            return _json_response(400, {"ok": False, "error": str(error)})
        return _json_response(200, {"ok": True, "result": dataclasses.asdict(self.faults)})

    def _control_content(self, request: _Request) -> _Response:
        """``content()`` as JSON; export files as UTF-8 text (every file the simulator makes
        is UTF-8)."""
        try:
            content = self.content(request.query.get("workspace", ""))
        except KeyError as error:
            return _json_response(404, {"ok": False, "error": str(error)})
        content["export"] = {path: data.decode("utf-8") for path, data in content["export"].items()}
        return _json_response(200, content)

    def _control_options(self, request: _Request) -> _Response:
        """GET: ``options()``; POST: ``configure(**body)``, then the options."""
        if request.method == "POST":
            try:
                changes = json.loads(request.body or b"{}")
                if not isinstance(changes, dict):
                    raise ValueError("expected a JSON object")
                self.configure(**changes)
            except (ValueError, TypeError) as error:
                return _json_response(400, {"ok": False, "error": str(error)})
        return _json_response(200, self.options())

    def _control_variants(self, request: _Request) -> _Response:
        """GET: name -> description of ``VARIANTS``; POST ``{"variants": [names]}``: apply them
        in order, then answer the options."""
        if request.method == "GET":
            return _json_response(200, {n: v.description for n, v in VARIANTS.items()})
        try:
            payload = json.loads(request.body or b"{}")
            names = payload.get("variants") if isinstance(payload, dict) else None
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise ValueError('expected {"variants": [names]}')
            unknown = [name for name in names if name not in VARIANTS]
            if unknown:
                raise ValueError(f"unknown variants {unknown}; known: {sorted(VARIANTS)}")
            for name in names:
                VARIANTS[name].apply(self)
        except ValueError as error:
            return _json_response(400, {"ok": False, "error": str(error)})
        return _json_response(200, self.options())

    def _control_resources(self, request: _Request) -> _Response:
        try:
            resources = self.resources(request.query.get("workspace", ""))
        except KeyError as error:
            return _json_response(404, {"ok": False, "error": str(error)})
        return _json_response(200, resources)

    def _control_workspaces(self, request: _Request) -> _Response:
        return _json_response(200, self.workspaces(request.query.get("instance") or None))

    def _control_calls(self, request: _Request) -> _Response:
        return _json_response(200, [dataclasses.asdict(call) for call in self.calls])

    def _control_auth(self, request: _Request) -> _Response:
        """GET: knobs, token requests, refused calls; POST: change clock_offset_seconds,
        token_lifetime_seconds, or expire_tokens (true)."""
        if request.method == "POST":
            try:
                changes = json.loads(request.body or b"{}")
                if not isinstance(changes, dict):
                    raise ValueError("expected a JSON object")
                self.auth.update(changes)
            except (ValueError, TypeError) as error:
                return _json_response(400, {"ok": False, "error": str(error)})
        return _json_response(200, self.auth.settings())


def _auth_request(request: _Request) -> AuthRequest:
    return AuthRequest(request.method, request.raw_path, dict(request.headers), request.body)


def _int_param(query: dict[str, str], name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise _invalid_parameter() from None


def _parse_export_body(body: bytes) -> tuple[tuple[str, ...], bool]:
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _invalid_parameter() from None
    if not isinstance(payload, dict):
        raise _invalid_parameter()
    names = payload.get("jobList")
    export_depend = payload.get("exportDepend", True)
    if (
        not isinstance(names, list)
        or not 1 <= len(names) <= BATCH_EXPORT_MAX_NAMES
        or not all(isinstance(name, str) and name for name in names)
        or not isinstance(export_depend, bool)
    ):
        raise _invalid_parameter()
    return tuple(names), export_depend


_IMPORT_ENTRY = re.compile(
    r"jobs/(?P<folder>[^/]+)/(?P<name>[^/]+)\.(?P<kind>job|script)"
    r"|jobs/(?P<flat_job>[^/]+)\.job|scripts/(?P<script>[^/]+)\.script"
)
# Entries an import reads past: resource definitions and CDM job definitions (and any other
# .json) beside a job or in a top-level folder, as exports with exportDepend carry them.
_IMPORT_EXTRA = re.compile(r"jobs/[^/]+/[^/]+|resources/.+|cdm/.+|.+\.json")


def _import_entry_name(info: zipfile.ZipInfo) -> str:
    """The member name as DataArts reads it: UTF-8 when flagged, else UTF-8 or GB18030 bytes
    (zipfile decodes unflagged names as cp437, which turns both into mojibake)."""
    if info.flag_bits & _UTF8_FLAG:
        return info.filename
    raw = info.orig_filename.encode("cp437")
    for encoding in ("utf-8", "gb18030"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return info.filename


def _parse_import_zip(data: bytes) -> tuple[dict[str, Json], dict[str, Json]]:
    """(jobs, scripts) of an import file, checked as strictly as the job/script names allow."""

    def bad(reason: str) -> _DlfError:
        return _DlfError("DLF.0815", f"The job file is invalid: {reason}")

    try:
        archive = zipfile.ZipFile(BytesIO(data))
        entries = [(_import_entry_name(info), archive.read(info)) for info in archive.infolist()]
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise bad(f"not a readable zip ({error})") from None
    jobs: dict[str, Json] = {}
    scripts: dict[str, Json] = {}
    for name, content in entries:
        if name.endswith("/"):
            continue
        match = _IMPORT_ENTRY.fullmatch(name)
        if match is None:
            segments = name.split("/")
            if _IMPORT_EXTRA.fullmatch(name) and not {"", ".", ".."} & set(segments):
                continue
            raise bad(f"unexpected entry {name}")
        try:
            definition = json.loads(content.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise bad(f"{name} is not JSON") from None
        if not isinstance(definition, dict):
            raise bad(f"{name} is not a JSON object")
        if match["kind"] == "job" or match["flat_job"]:
            job = match["flat_job"] or match["name"]
            if match["folder"] not in (None, job) or definition.get("name") != job:
                raise bad(f"{name} does not hold job {job}")
            jobs[job] = definition
        else:
            script = match["script"] or match["name"]
            if definition.get("name") != script:
                raise bad(f"{name} does not hold script {script}")
            scripts.setdefault(script, definition)
    if not jobs and not scripts:
        raise bad("it holds no job")
    return jobs, scripts


def _obs_error(status: int, code: str, message: str) -> _Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        f"<RequestId>{uuid.uuid4().hex[:16].upper()}</RequestId></Error>"
    )
    return _Response(status, body.encode(), content_type="application/xml")


_UTF8_FLAG = 0x800  # general-purpose bit 11: the member name is UTF-8


class _Utf8ZipInfo(zipfile.ZipInfo):
    """Flags every name as UTF-8 (general-purpose bit 11), as Java's ZipOutputStream does.

    ``zipfile`` only sets the flag for non-ASCII names and resets ``flag_bits`` on write, so the
    name encoding hook is the one place to do it.
    """

    def _encodeFilenameFlags(self) -> tuple[bytes, int]:
        return self.filename.encode("utf-8"), self.flag_bits | _UTF8_FLAG


class _UnflaggedZipInfo(zipfile.ZipInfo):
    """Writes the name in ``name_encoding`` and never sets the UTF-8 flag, as zip tools on a
    Chinese Windows (GB18030) or old Java (UTF-8 bytes, unflagged) do. Readers see the bytes
    as cp437 unless told the encoding (``ZipFile(metadata_encoding=...)``)."""

    name_encoding = "gb18030"

    def _encodeFilenameFlags(self) -> tuple[bytes, int]:
        return self.filename.encode(self.name_encoding), self.flag_bits & ~_UTF8_FLAG


def _zip(
    files: dict[str, bytes],
    stamp_ms: int,
    *,
    utf8_flag: bool = True,
    name_encoding: str = "utf-8",
    directory_entries: bool = False,
) -> bytes:
    """A deflated zip with a timestamp from the simulated clock; names flagged UTF-8, or
    unflagged in ``name_encoding``; with ``directory_entries``, each folder gets an entry
    before its first member."""
    moment = datetime.fromtimestamp(stamp_ms / 1000, tz=UTC)
    date_time = (moment.year, moment.month, moment.day, moment.hour, moment.minute, moment.second)

    def info(name: str) -> zipfile.ZipInfo:
        if utf8_flag:
            return _Utf8ZipInfo(name, date_time=date_time)
        unflagged = _UnflaggedZipInfo(name, date_time=date_time)
        unflagged.name_encoding = name_encoding
        return unflagged

    buffer = BytesIO()
    folders: set[str] = set()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            parts = name.split("/")[:-1]
            for depth in range(1, len(parts) + 1):
                folder = "/".join(parts[:depth]) + "/"
                if directory_entries and folder not in folders:
                    folders.add(folder)
                    entry = info(folder)
                    entry.CRC = entry.compress_size = entry.file_size = 0
                    entry.external_attr = (0o40755 << 16) | 0x10  # a directory, MS-DOS too
                    archive.mkdir(entry)
            member = info(name)
            member.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(member, data)
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------
# HTTP plumbing


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], simulator: Simulator) -> None:
        self.simulator = simulator
        super().__init__(address, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client hanging up or refusing the certificate is routine here, not a traceback.
        error = sys.exc_info()[1]
        if isinstance(error, ssl.SSLError | ConnectionError):
            logger.debug("simulator: connection from %s failed: %s", client_address, error)
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    server_version = "APIG-sim"
    disable_nagle_algorithm = True  # headers and body go out in two writes
    sys_version = ""

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        request = _Request(self.command, self.path, dict(self.headers.items()), body)
        response = self.server.simulator._dispatch(request)
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if response.truncate_to is not None:
            self.wfile.write(response.body[: response.truncate_to])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(response.body)

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("simulator: " + format, *args)


# --------------------------------------------------------------------------------------------
# Variants: the field's variety (dlf-api.md §12), one name each, for a contract suite


@dataclass(frozen=True)
class Variant:
    """A named way the real service differs: ``Simulator.configure`` options plus one-shot
    glitches. Apply it (``variant.apply(sim)`` or ``variant(sim)``) before ``populate``:
    name sets are added by ``populate``; glitches are armed anew (copies) on every apply."""

    name: str
    description: str
    options: Mapping[str, Any] = field(default_factory=dict)
    glitches: tuple[Glitch, ...] = ()

    def apply(self, simulator: Simulator) -> Simulator:
        simulator.configure(**self.options)
        with simulator._lock:
            simulator.faults.glitches.extend(dataclasses.replace(g) for g in self.glitches)
        return simulator

    def __call__(self, simulator: Simulator) -> Simulator:
        return self.apply(simulator)


_HOSTILE = {"names": "hostile"}
_CHINESE_GB18030 = {"utf8_flag": False, "name_encoding": "gb18030", "names": "chinese"}

VARIANTS: dict[str, Variant] = {
    variant.name: variant
    for variant in (
        Variant(
            "folders",
            "today's defaults: jobs/<job>/<job>.job with the job's scripts beside it, every name "
            "UTF-8 flagged, no directory entries, page-number offsets, limit > 1000 -> 400",
        ),
        Variant(
            "documented",
            "the API page read literally: a job carrying no script at jobs/<job>.job, the "
            "others in folders; with directory entries",
            {"layout": "documented", "directory_entries": True},
        ),
        Variant(
            "flat",
            "jobs/<job>.job and each script once at scripts/<name>.script",
            {"layout": "flat"},
        ),
        Variant(
            "flat-gb18030",
            "flat; member names GB18030 without the UTF-8 flag; Chinese names populated",
            {"layout": "flat", **_CHINESE_GB18030},
        ),
        Variant(
            "folders-gb18030",
            "folders with directory entries; member names GB18030, unflagged; Chinese names",
            {"directory_entries": True, **_CHINESE_GB18030},
        ),
        Variant(
            "unflagged-utf8",
            "folders; member names UTF-8 bytes without the flag (cp437 to a naive reader); "
            "Chinese names populated",
            {"utf8_flag": False, "name_encoding": "utf-8", "names": "chinese"},
        ),
        Variant(
            "extra-files",
            "folders; exports also carry <resource>.resource and <cdm job>.json (CRLF, "
            "pretty) beside each job: keep them byte for byte",
            {"extra_files": True},
        ),
        Variant(
            "flat-extra-files",
            "flat with directory entries; extra files at top-level resources/ and cdm/",
            {"layout": "flat", "extra_files": True, "directory_entries": True},
        ),
        Variant(
            "hostile-names",
            "folders; populate adds every class of HOSTILE_NAME_CLASSES (populate_hostile)",
            _HOSTILE,
        ),
        Variant(
            "hostile-names-flat",
            "flat with extra files and hostile names: case/NFC pairs of scripts and resources "
            "meet in one folder",
            {"layout": "flat", "extra_files": True, **_HOSTILE},
        ),
        Variant(
            "hostile-names-gb18030",
            "documented layout, hostile names, member names GB18030 without the UTF-8 flag",
            {"layout": "documented", "utf8_flag": False, "name_encoding": "gb18030", **_HOSTILE},
        ),
        Variant(
            "no-resources-api",
            "the resource API is not published: 404 APIG.0101",
            {"resources_api": "missing"},
        ),
        Variant(
            "forbidden-resources-api",
            "IAM forbids the resource API: 403 DLF.6888",
            {"resources_api": "forbidden"},
        ),
        Variant(
            "no-management-api",
            "the instance/workspace API is not published: 404 APIG.0101",
            {"management_api": "missing"},
        ),
        Variant(
            "forbidden-management-api",
            'IAM forbids the instance/workspace API: 403 {"error": {"code": 403, ...}}',
            {"management_api": "forbidden"},
        ),
        Variant("page-offsets", "offset is a page number (the default)", {"offset_mode": "page"}),
        Variant("record-offsets", "offset is a record offset", {"offset_mode": "record"}),
        Variant(
            "clamped-100",
            "every list serves at most 100 rows; a larger limit is clamped silently",
            {"max_page_size": 100, "page_size_policy": "clamp"},
        ),
        Variant(
            "rejected-100",
            "every list serves at most 100 rows; a larger limit is 400 DLF.3051",
            {"max_page_size": 100, "page_size_policy": "reject"},
        ),
        Variant(
            "record-offsets-clamped-100",
            "record offsets and a silent clamp to 100 rows",
            {"offset_mode": "record", "max_page_size": 100, "page_size_policy": "clamp"},
        ),
        Variant(
            "glitch-empty-realtime",
            'the first REAL_TIME job-list answer is {"total":0,"jobs":[]}, once',
            glitches=(Glitch("REAL_TIME"),),
        ),
        Variant(
            "glitch-empty-batch-later",
            "the second BATCH job-list answer is empty with total 0, once (a later page, or "
            "the next listing when there is one page)",
            glitches=(Glitch("BATCH", skip=1),),
        ),
        Variant(
            "glitch-empty-scripts",
            "the first script-list answer is empty with total 0, once",
            glitches=(Glitch("scripts"),),
        ),
        Variant(
            "glitch-empty-probe",
            "the answer to offset=1 (the offset probe) of either job list is empty with total "
            "0, once; dormant while every list fits one page",
            glitches=(Glitch("jobs", offset=1),),
        ),
        Variant(
            "glitch-lowered-total",
            "the first BATCH job-list answer reports total 0 while carrying its rows, once",
            glitches=(Glitch("BATCH", "total", total=0),),
        ),
        Variant(
            "glitch-missing-rows",
            "the first BATCH job-list answer leaves out its first row (total unchanged), once",
            glitches=(Glitch("BATCH", "drop", rows=1),),
        ),
    )
}
"""Every variant by name; each is one line of dlf-api.md §12. Combine with ``variant``."""


def variant(*names: str, **simulator_options: Any) -> Simulator:
    """A new ``Simulator(**simulator_options)`` with the named variants applied in order."""
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        raise KeyError(f"unknown variants {unknown}; known: {sorted(VARIANTS)}")
    simulator = Simulator(**simulator_options)
    for name in names:
        VARIANTS[name].apply(simulator)
    return simulator


# --------------------------------------------------------------------------------------------
# Command line


_DEMO_WORKSPACE_NAMES = ("sales", "finance", "marketing", "logistics", "risk", "hr")


def demo_workspaces(count: int, seed: int = 0) -> Iterator[tuple[str, str]]:
    """``count`` (workspace id, name) pairs: 32 hex ids, stable for a seed."""
    rng = random.Random(f"workspaces-{seed}")
    for index in range(count):
        name = _DEMO_WORKSPACE_NAMES[index % len(_DEMO_WORKSPACE_NAMES)]
        if index >= len(_DEMO_WORKSPACE_NAMES):
            name = f"{name}{index // len(_DEMO_WORKSPACE_NAMES) + 1}"
        yield f"{rng.getrandbits(128):032x}", name


def serve(
    port: int,
    host: str = "127.0.0.1",
    *,
    workspaces: int = 2,
    jobs: int = 20,
    variants: Sequence[str] = (),
) -> None:
    """Run a populated simulator (with ``variants`` applied) in the foreground until Ctrl-C."""
    simulator = variant(*variants)
    demo = list(demo_workspaces(workspaces))
    for workspace_id, name in demo:
        simulator.add_workspace(workspace_id, name)
        simulator.populate(workspace_id, jobs, resources=3)
    simulator.add_bucket(DEMO_BUCKET)
    url = simulator.start(host=host, port=port)
    lines = [
        f"DataArts simulator listening on {url}",
        f"project id: {simulator.project_id}",
        f"AK/SK:      {DEFAULT_AK} / {DEFAULT_SK}",
        f"IAM user:   {DEFAULT_IAM_USER} / {DEFAULT_IAM_PASSWORD} in domain {DEFAULT_IAM_DOMAIN} "
        f"(iam_endpoint: {url})",
        f"token:      {simulator.token}   (header X-Auth-Token)",
        *(f"workspace:  {workspace_id}  {name}" for workspace_id, name in demo),
        f"OBS:        {url}{OBS_PATH_PREFIX}  bucket {DEMO_BUCKET}  AK {DEFAULT_OBS_AK}  "
        f"SK {DEFAULT_OBS_SK}",
        f"instance:   {DEFAULT_INSTANCE_ID}   (management API on the same port)",
        f"variants:   {', '.join(variants) or 'none (defaults)'}",
        "Ctrl-C to stop.",
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    sys.stdout.flush()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        simulator.stop()


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run a local DataArts Studio simulator.")
    parser.add_argument("--port", type=int, default=8089)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--workspaces", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        choices=sorted(VARIANTS),
        help="apply this variant (repeatable, in order)",
    )
    options = parser.parse_args(argv)
    serve(
        options.port,
        options.host,
        workspaces=options.workspaces,
        jobs=options.jobs,
        variants=options.variant,
    )


if __name__ == "__main__":
    main()
