"""Reports of a run: a summary for people, ghz's JSON for programs, CSV, Prometheus text.

The JSON uses ghz's report fields and units, so tools that read ghz reports read
these: `count`, `total`/`average`/`fastest`/`slowest` in nanoseconds, `rps`,
`histogram` ([{mark (seconds), count, frequency}]), `latencyDistribution`
([{percentage, latency (ns)}]), `statusCodeDistribution` and `errorDistribution`
(Go status names, `rpc error: code = ... desc = ...`). What ghz has no field for
(per call, per status, windows) is under `kinship`.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from typing import Any

from .engine import RunResult
from .recorder import Recorder, Stats

PERCENTILES = (10, 25, 50, 75, 90, 95, 99, 99.9)
SUMMARY_PERCENTILES = (50, 90, 95, 99, 99.9)
HISTOGRAM_BUCKETS = 10


def _ns(us: float) -> int:
    return int(round(us * 1000))


def _histogram(stats: Stats) -> list[dict[str, Any]]:
    """ghz's histogram: equal-width buckets from fastest to slowest, each marked by its upper edge."""
    total = stats.count
    if not total:
        return []
    low, high = stats.fastest_us, stats.slowest_us
    width = (high - low) / HISTOGRAM_BUCKETS if high > low else 0.0
    counts = [0] * HISTOGRAM_BUCKETS
    for item in stats.histogram.get_recorded_iterator():
        value = item.value_iterated_to
        index = HISTOGRAM_BUCKETS - 1 if width == 0 else min(int((value - low) / width), HISTOGRAM_BUCKETS - 1)
        counts[max(index, 0)] += item.count_added_in_this_iter_step
    marks = [low + width * (i + 1) for i in range(HISTOGRAM_BUCKETS)] if width else [high] * HISTOGRAM_BUCKETS
    if not width:
        return [{"mark": high / 1e6, "count": total, "frequency": 1.0}]
    return [
        {"mark": mark / 1e6, "count": count, "frequency": count / total}
        for mark, count in zip(marks, counts, strict=True)
    ]


def _percentiles_ms(stats: Stats) -> dict[str, float]:
    return {f"p{p:g}": round(stats.percentile_us(p) / 1000, 3) for p in SUMMARY_PERCENTILES}


def _stats_ms(stats: Stats, elapsed_s: float) -> dict[str, Any]:
    return {
        "count": stats.count,
        "rps": round(stats.count / elapsed_s, 2) if elapsed_s > 0 else 0.0,
        "average_ms": round(stats.average_us / 1000, 3),
        "fastest_ms": round(stats.fastest_us / 1000, 3) if stats.count else 0.0,
        "slowest_ms": round(stats.slowest_us / 1000, 3),
        **_percentiles_ms(stats),
    }


def to_json_dict(result: RunResult, options: dict[str, Any]) -> dict[str, Any]:
    rec: Recorder = result.recorder
    stats = rec.all
    elapsed = result.elapsed_s
    report: dict[str, Any] = {
        "date": dt.datetime.fromtimestamp(result.started_at, dt.UTC).isoformat(),
        "endReason": result.end_reason,
        "options": options,
        "count": stats.count,
        "total": _ns(elapsed * 1e6),
        "average": _ns(stats.average_us),
        "fastest": _ns(stats.fastest_us) if stats.count else 0,
        "slowest": _ns(stats.slowest_us),
        "rps": stats.count / elapsed if elapsed > 0 else 0.0,
        "errorDistribution": dict(rec.error_counts) or None,
        "statusCodeDistribution": dict(rec.status_counts) or None,
        "latencyDistribution": [{"percentage": p, "latency": _ns(stats.percentile_us(p))} for p in PERCENTILES]
        if stats.count
        else None,
        "histogram": _histogram(stats) or None,
        "kinship": {
            "percentiles_ms": _percentiles_ms(stats),
            "by_call": {name: _stats_ms(s, elapsed) for name, s in sorted(rec.by_call.items())},
            "by_status": {name: _stats_ms(s, elapsed) for name, s in sorted(rec.by_status.items())},
            "hdr_histogram": stats.histogram.encode().decode() if stats.count else None,
        },
    }
    if rec.windows:
        report["kinship"]["windows"] = [
            {"start_s": w.start_s, "errors": w.errors, **_stats_ms(w.stats, rec.window_seconds or 1)}
            for w in rec.windows
        ]
    return report


def to_summary(result: RunResult, target: str) -> str:
    rec = result.recorder
    s = rec.all
    out = io.StringIO()
    w = out.write
    w(f"\nSummary ({target}):\n")
    w(f"  Count:        {s.count}\n")
    w(f"  Total:        {result.elapsed_s:.2f} s\n")
    w(f"  Requests/sec: {s.count / result.elapsed_s if result.elapsed_s else 0:.2f}\n")
    if s.count:
        w(f"  Average:      {s.average_us / 1000:.2f} ms\n")
        w(f"  Fastest:      {s.fastest_us / 1000:.2f} ms\n")
        w(f"  Slowest:      {s.slowest_us / 1000:.2f} ms\n")
        w("\nLatency distribution:\n")
        for p in SUMMARY_PERCENTILES:
            w(f"  {p:>5g} % in {s.percentile_us(p) / 1000:.2f} ms\n")
        w("\nResponse time histogram:\n")
        buckets = _histogram(s)
        top = max(b["count"] for b in buckets) or 1
        for b in buckets:
            bar = "∎" * max(0, round(40 * b["count"] / top))
            w(f"  {b['mark'] * 1000:9.3f} ms [{b['count']}]\t|{bar}\n")
    if len(rec.by_call) > 1:
        w("\nPer call:\n")
        for name, stats in sorted(rec.by_call.items()):
            w(
                f"  {name}: {stats.count} calls, avg {stats.average_us / 1000:.2f} ms, "
                f"p50 {stats.percentile_us(50) / 1000:.2f} ms, p99 {stats.percentile_us(99) / 1000:.2f} ms\n"
            )
    w("\nStatus code distribution:\n")
    for name, count in sorted(rec.status_counts.items(), key=lambda kv: -kv[1]):
        stats = rec.by_status[name]
        w(
            f"  [{name}]   {count} responses (p50 {stats.percentile_us(50) / 1000:.2f} ms, p99 {stats.percentile_us(99) / 1000:.2f} ms)\n"
        )
    if rec.error_counts:
        w("\nError distribution:\n")
        for text, count in sorted(rec.error_counts.items(), key=lambda kv: -kv[1])[:10]:
            w(f"  [{count}]   {text}\n")
    return out.getvalue()


def to_csv(result: RunResult) -> str:
    """One row for all calls, then one per call name and per status code."""
    out = io.StringIO()
    fields = ["group", "name", "count", "rps", "average_ms", "fastest_ms", "slowest_ms"] + [
        f"p{p:g}" for p in SUMMARY_PERCENTILES
    ]
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    rec = result.recorder
    writer.writerow({"group": "all", "name": "all", **_stats_ms(rec.all, result.elapsed_s)})
    for name, stats in sorted(rec.by_call.items()):
        writer.writerow({"group": "call", "name": name, **_stats_ms(stats, result.elapsed_s)})
    for name, stats in sorted(rec.by_status.items()):
        writer.writerow({"group": "status", "name": name, **_stats_ms(stats, result.elapsed_s)})
    return out.getvalue()


def to_prometheus(result: RunResult) -> str:
    """Prometheus text exposition (for a pushgateway or a textfile collector)."""
    from prometheus_client import CollectorRegistry, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily

    rec = result.recorder

    class _Collector:
        def collect(self):
            calls = CounterMetricFamily(
                "kinship_loadtest_calls",
                "calls made by the load test, by call and status code",
                labels=["call", "code"],
            )
            latency = SummaryMetricFamily(
                "kinship_loadtest_latency_seconds", "call latency in seconds, by call", labels=["call"]
            )
            quantiles = GaugeMetricFamily(
                "kinship_loadtest_latency_quantile_seconds",
                "call latency at a quantile, by call",
                labels=["call", "quantile"],
            )
            for name, stats in sorted(rec.by_call.items()):
                latency.add_metric([name], count_value=stats.count, sum_value=stats.sum_us / 1e6)
                for p in SUMMARY_PERCENTILES:
                    quantiles.add_metric([name, f"{p / 100:g}"], stats.percentile_us(p) / 1e6)
            for (name, code), count in sorted(rec.call_status_counts.items()):
                calls.add_metric([name, code], count)
            rps = GaugeMetricFamily("kinship_loadtest_rps", "calls per second over the measured run")
            rps.add_metric([], rec.count / result.elapsed_s if result.elapsed_s else 0.0)
            yield from (calls, latency, quantiles, rps)

    registry = CollectorRegistry()
    registry.register(_Collector())
    return generate_latest(registry).decode()


def render(result: RunResult, fmt: str, target: str, options: dict[str, Any]) -> str:
    if fmt == "json":
        return json.dumps(to_json_dict(result, options), indent=2)
    if fmt == "csv":
        return to_csv(result)
    if fmt == "prometheus":
        return to_prometheus(result)
    return to_summary(result, target)
