"""One line on an embedder run at capacity and at twice capacity (scripts/overload_variants.sh).

    python scripts/overload_summary.py DIR [--pid PID] [--name NAME] [--json]

DIR holds capacity.json and overload.json (kinship loadtest reports), overload-calls.csv
(--record) and health-*.json (scripts/health_watch.py). Refusal latencies come from the
per-call record (client clock from each call's due time); with --pid, the nice value of
each of the server's threads is listed too, to show which threads a setting lowered.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import Counter
from pathlib import Path

import numpy as np


def thread_nices(pid: int) -> dict[str, int]:
    """Threads of a process counted by (name, nice value)."""
    counts: Counter[str] = Counter()
    for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
        text = stat.read_text()
        name = text[text.index("(") + 1 : text.rindex(")")]
        nice = int(text[text.rindex(")") + 2 :].split()[16])
        counts[f"{name.rstrip('0123456789_-')}@{nice}"] += 1
    return dict(sorted(counts.items()))


def summary(folder: Path) -> dict:
    capacity = json.loads((folder / "capacity.json").read_text())
    overload = json.loads((folder / "overload.json").read_text())
    calls = list(csv.DictReader((folder / "overload-calls.csv").open()))
    refused = np.array([float(c["latency_us"]) / 1000 for c in calls if c["code"] == "RESOURCE_EXHAUSTED"])
    ok = np.array([float(c["latency_us"]) / 1000 for c in calls if c["code"] == "OK"])
    other = Counter(c["code"] for c in calls if c["code"] not in ("OK", "RESOURCE_EXHAUSTED"))
    capacity_p99 = next(p["latency"] for p in capacity["latencyDistribution"] if p["percentage"] == 99) / 1e6
    out = {
        "capacity_rps": round(capacity["rps"], 1),
        "capacity_p99_ms": round(capacity_p99, 1),
        "offered_rps": round(overload.get("rps", 0), 1),
        "ok": int(ok.size),
        "ok_p99_ms": round(float(np.percentile(ok, 99)), 1) if ok.size else None,
        "ok_p99_x_capacity": round(float(np.percentile(ok, 99)) / capacity_p99, 2) if ok.size else None,
        "refused": int(refused.size),
        "refusal_p50_ms": round(float(np.percentile(refused, 50)), 1) if refused.size else None,
        "refusal_p99_ms": round(float(np.percentile(refused, 99)), 1) if refused.size else None,
        "refusal_max_ms": round(float(refused.max()), 1) if refused.size else None,
        "refusals_over_50ms": int((refused > 50).sum()),
        "other_codes": dict(other),
    }
    for port in ("main", "port"):
        path = folder / f"health-{port}.json"
        if path.exists():
            watch = json.loads(path.read_text())
            out[f"health_{port}"] = {"statuses": watch["statuses"], "slowest_ms": watch["slowest_probe_ms"]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--pid", type=int)
    parser.add_argument("--name", default="")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    out = {"name": args.name or args.folder.name, **summary(args.folder)}
    if args.pid:
        out["threads"] = thread_nices(args.pid)
    (args.folder / "summary.json").write_text(json.dumps(out, indent=2))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
