"""Compares a loadtest report's percentiles with an independent timing of the same run.

    python scripts/percentile_agreement.py report.json --timings calls.csv
    python scripts/percentile_agreement.py report.json --server-log embedder.log --rpc /kinship.v1.Embedder/Embed

--timings: the per-call CSV of `kinship loadtest --record` (a client interceptor with its
own clock and storage; numpy's percentiles over the raw samples against the report's HDR
histogram). For a closed-loop run both time the same span, so they must agree.

--server-log: the server's access log (KINSHIP_LOG_FORMAT=json, KINSHIP_ACCESS_LOG_SAMPLE=1),
one `rpc finished` line per call with its `duration_ms`, timed inside the handler by
another process: the calls with code OK that began within the run's span. The client's
latency also holds the network, HTTP/2 and both event loops' waits, which the handler's
timer cannot see, so on a busy machine the server's figures read lower.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json

import numpy as np

PERCENTILES = (50, 90, 95, 99)


def from_timings(path: str) -> list[float]:
    with open(path, newline="") as handle:
        return [float(row["latency_us"]) / 1000 for row in csv.DictReader(handle)]


def from_server_log(path: str, rpc: str, start: dt.datetime, end: dt.datetime) -> list[float]:
    durations = []
    with open(path) as handle:
        for line in handle:
            if not line.startswith("{"):
                continue
            entry = json.loads(line)
            if entry.get("event") != "rpc finished" or entry.get("rpc") != rpc or entry.get("code") != "OK":
                continue
            finished = dt.datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00"))
            began = finished - dt.timedelta(milliseconds=entry["duration_ms"])
            if start <= began <= end:
                durations.append(entry["duration_ms"])
    return durations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("report")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--timings", help="CSV written by kinship loadtest --record")
    source.add_argument("--server-log", help="the server's JSON access log")
    parser.add_argument("--rpc", help="with --server-log: method path as logged, e.g. /kinship.v1.Embedder/Embed")
    parser.add_argument("--tolerance", type=float, default=0.05)
    args = parser.parse_args()
    report = json.load(open(args.report))
    if args.timings:
        other = from_timings(args.timings)
    else:
        if not args.rpc:
            parser.error("--server-log needs --rpc")
        start = dt.datetime.fromisoformat(report["date"])
        end = start + dt.timedelta(microseconds=report["total"] / 1000)
        other = from_server_log(args.server_log, args.rpc, start, end)
    client = {item["percentage"]: item["latency"] / 1e6 for item in report["latencyDistribution"]}
    independent = {p: float(np.percentile(other, p)) for p in PERCENTILES} if other else {}
    rows = []
    for p in PERCENTILES:
        c, s = client.get(p), independent.get(p)
        diff = (c - s) / s if c is not None and s else None
        rows.append(
            {
                "percentile": p,
                "report_ms": round(c, 3),
                "independent_ms": round(s, 3) if s else None,
                "difference": round(diff, 4) if diff is not None else None,
            }
        )
    agree = all(r["difference"] is not None and abs(r["difference"]) <= args.tolerance for r in rows)
    summary = {
        "source": "timings" if args.timings else "server-log",
        "report_count": report["count"],
        "independent_count": len(other),
        "rows": rows,
        "within_tolerance": agree,
        "tolerance": args.tolerance,
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
