"""The benchmark's simulator, in a process of its own (bench/run.py starts it).

Served apart from backupd and from the benchmark's bookkeeping, as the real service is: its
threads (zips, listings, the gateway's counting) do not share an interpreter with either.
It prints its URL, then answers one JSON command per line on stdin with one JSON line on
stdout:

    {"op": "populate", "workspaces": [[id, name], ...], "jobs": 1000}   -> sizes per workspace
    {"op": "faults", "faults": {...Faults fields...}}                  -> {}
    {"op": "options", "options": {...Simulator.configure keywords...}}  -> {}
    {"op": "clear"}                                                    -> {}
    {"op": "count"}  -> {"apis": {api: {"ok": n, "throttled": n, "other": n}}, "in_flight": {...}}
    {"op": "served"} -> [[api, status, received], ...]: every call as the service stamped it
    {"op": "mutate", "fraction": 0.01}                                  -> changed per workspace
    {"op": "stop"}
"""

from __future__ import annotations

import json
import math
import sys
from collections import Counter
from typing import Any

from backupd.simulator.server import JOB_TYPES, Glitch, Simulator


def sizes(simulator: Simulator, workspace_id: str) -> dict[str, int]:
    # The simulator's own state (its public readers copy every definition: slow at 8,000).
    workspace = simulator._workspace(workspace_id)
    types = Counter(job.job_type for job in workspace.jobs.values())
    return {
        "jobs": len(workspace.jobs),
        **{job_type: types.get(job_type, 0) for job_type in JOB_TYPES},
        "scripts": len(workspace.scripts),
        "resources": len(workspace.resources),
    }


def peak_in_flight(records: list[tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in records] + [(end, -1) for _, end in records])
    peak = current = 0
    for _, change in events:
        current += change
        peak = max(peak, current)
    return peak


def count(simulator: Simulator) -> dict[str, Any]:
    apis: dict[str, dict[str, int]] = {}
    spans: dict[str, list[tuple[float, float]]] = {}
    for record in simulator.served:
        api = record.api or "other"
        entry = apis.setdefault(api, {"ok": 0, "throttled": 0, "other": 0})
        if record.status == 429:
            entry["throttled"] += 1
        elif record.status < 400:
            entry["ok"] += 1
            spans.setdefault(api, []).append((record.received, record.answered))
        else:
            entry["other"] += 1
    return {"apis": apis, "in_flight": {api: peak_in_flight(s) for api, s in spans.items()}}


def mutate(simulator: Simulator, workspaces: list[str], fraction: float) -> dict[str, int]:
    changed: dict[str, int] = {}
    for workspace_id in workspaces:
        names = sorted(simulator._workspace(workspace_id).jobs)
        number = max(1, math.ceil(len(names) * fraction))
        step = max(1, len(names) // number)
        for name in names[::step][:number]:
            simulator.modify_job(workspace_id, name, user="bench")
        changed[workspace_id] = number
    return changed


def main() -> None:
    page_size = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    simulator = Simulator(max_page_size=page_size)
    workspaces: list[str] = []
    url = simulator.start()
    print(json.dumps({"url": url}), flush=True)
    for line in sys.stdin:
        command = json.loads(line)
        op = command["op"]
        answer: Any = {}
        if op == "populate":
            for workspace_id, name in command["workspaces"]:
                simulator.add_workspace(workspace_id, name)
                simulator.populate(workspace_id, command["jobs"])
                workspaces.append(workspace_id)
            answer = {wid: sizes(simulator, wid) for wid in workspaces}
        elif op == "faults":
            for name, value in command["faults"].items():
                if name == "glitches":
                    value = [Glitch(**glitch) for glitch in value]
                setattr(simulator.faults, name, value)
        elif op == "options":
            simulator.configure(**command["options"])
        elif op == "clear":
            simulator.clear_calls()
        elif op == "count":
            answer = count(simulator)
        elif op == "served":
            answer = [[r.api, r.status, r.received] for r in simulator.served]
        elif op == "mutate":
            answer = mutate(simulator, workspaces, command["fraction"])
        elif op == "stop":
            break
        print(json.dumps(answer), flush=True)
    simulator.stop()


if __name__ == "__main__":
    main()
