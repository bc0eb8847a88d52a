"""Compares a loadtest report's percentiles with the server's own per-call timings of the same run.

    python scripts/percentile_agreement.py report.json server.log --rpc /kinship.v1.Embedder/Embed

The server's access log (KINSHIP_LOG_FORMAT=json, KINSHIP_ACCESS_LOG_SAMPLE=1) has one
`rpc finished` line per call with its `duration_ms`, timed inside the server by another
process and another clock: an independent measurement. Lines of the run's time span
(the report's `date` + `total`) with code OK are taken; the percentiles of both are
printed side by side with their relative difference. The client's latency also holds
the network and (de)serialisation, so it is expected slightly higher.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json

import numpy as np

PERCENTILES = (50, 90, 95, 99)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("report")
    parser.add_argument("server_log")
    parser.add_argument("--rpc", required=True, help="method path as logged, e.g. /kinship.v1.Embedder/Embed")
    parser.add_argument("--tolerance", type=float, default=0.05)
    args = parser.parse_args()
    report = json.load(open(args.report))
    start = dt.datetime.fromisoformat(report["date"])
    end = start + dt.timedelta(microseconds=report["total"] / 1000)
    durations = []
    with open(args.server_log) as handle:
        for line in handle:
            if not line.startswith("{"):
                continue
            entry = json.loads(line)
            if entry.get("event") != "rpc finished" or entry.get("rpc") != args.rpc or entry.get("code") != "OK":
                continue
            # The log's timestamp is when the call finished; the run's calls started within [start, end].
            at = dt.datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00"))
            if start <= at - dt.timedelta(milliseconds=entry["duration_ms"]) and at <= end + dt.timedelta(seconds=5):
                durations.append(entry["duration_ms"])
    client = {item["percentage"]: item["latency"] / 1e6 for item in report["latencyDistribution"]}
    server = {p: float(np.percentile(durations, p)) for p in PERCENTILES} if durations else {}
    rows = []
    for p in PERCENTILES:
        c, s = client.get(p), server.get(p)
        diff = (c - s) / s if c is not None and s else None
        rows.append(
            {
                "percentile": p,
                "client_ms": round(c, 3),
                "server_ms": round(s, 3) if s else None,
                "difference": round(diff, 4) if diff is not None else None,
            }
        )
    agree = all(r["difference"] is not None and abs(r["difference"]) <= args.tolerance for r in rows)
    print(
        json.dumps(
            {
                "client_count": report["count"],
                "server_count": len(durations),
                "rows": rows,
                "within_tolerance": agree,
                "tolerance": args.tolerance,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
