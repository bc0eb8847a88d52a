"""Where call results go: HDR histograms of latency, and counts per status and error.

Latencies are kept in HdrHistogram (microseconds, 3 significant digits: every
percentile within 0.1% of the true value), never as a list of samples, so that a
soak of hours costs the same memory as a run of seconds. One histogram for all
calls, one per call name and one per status code (the overload check needs the
latency of the admitted calls apart from the rejected ones).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import grpc
from hdrh.histogram import HdrHistogram

#: 1 microsecond to 1 hour.
LOWEST_US = 1
HIGHEST_US = 3_600_000_000
SIGNIFICANT_DIGITS = 3


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def _go_name(code: grpc.StatusCode) -> str:
    if code is grpc.StatusCode.CANCELLED:
        return "Canceled"
    if code is grpc.StatusCode.OK:
        return "OK"
    return "".join(part.capitalize() for part in code.name.split("_"))


_GO_NAMES = {code: _go_name(code) for code in grpc.StatusCode}


def go_code_name(code: grpc.StatusCode) -> str:
    """The status name as ghz (Go's codes.Code.String()) writes it: OK, ResourceExhausted, Canceled ..."""
    return _GO_NAMES[code]


@dataclass
class Stats:
    """Latency and outcome of a set of calls."""

    histogram: HdrHistogram = field(default_factory=new_histogram)
    sum_us: float = 0.0
    fastest_us: float = float("inf")
    slowest_us: float = 0.0

    def record(self, latency_us: float) -> None:
        value = min(max(int(round(latency_us)), LOWEST_US), HIGHEST_US)
        self.histogram.record_value(value)
        self.sum_us += latency_us
        if latency_us < self.fastest_us:
            self.fastest_us = latency_us
        if latency_us > self.slowest_us:
            self.slowest_us = latency_us

    @property
    def count(self) -> int:
        return self.histogram.get_total_count()

    def percentile_us(self, percent: float) -> float:
        return float(self.histogram.get_value_at_percentile(percent)) if self.count else 0.0

    @property
    def average_us(self) -> float:
        return self.sum_us / self.count if self.count else 0.0


@dataclass
class Window:
    """The calls whose intended start fell in [start_s, start_s + length)."""

    start_s: float
    stats: Stats = field(default_factory=Stats)
    errors: int = 0


class Recorder:
    """Collects every measured call of a run (warm-up calls are not recorded)."""

    def __init__(self, window_seconds: float | None = None):
        self.all = Stats()
        self.by_call: dict[str, Stats] = {}
        self.by_status: dict[str, Stats] = {}
        self.status_counts: Counter[str] = Counter()
        self.call_status_counts: Counter[tuple[str, str]] = Counter()
        self.error_counts: Counter[str] = Counter()
        self.window_seconds = window_seconds
        self.windows: list[Window] = []

    def record(
        self, call: str, code: grpc.StatusCode, latency_us: float, at_s: float, error: str | None = None
    ) -> None:
        status = go_code_name(code)
        self.all.record(latency_us)
        # Not setdefault(key, Stats()): that would build a histogram (a large array) on every call.
        by_call = self.by_call.get(call)
        if by_call is None:
            by_call = self.by_call[call] = Stats()
        by_call.record(latency_us)
        by_status = self.by_status.get(status)
        if by_status is None:
            by_status = self.by_status[status] = Stats()
        by_status.record(latency_us)
        self.status_counts[status] += 1
        self.call_status_counts[(call, status)] += 1
        if error is not None:
            self.error_counts[error] += 1
        if self.window_seconds:
            index = int(at_s // self.window_seconds)
            while len(self.windows) <= index:
                self.windows.append(Window(start_s=len(self.windows) * self.window_seconds))
            window = self.windows[index]
            window.stats.record(latency_us)
            if code is not grpc.StatusCode.OK:
                window.errors += 1

    @property
    def count(self) -> int:
        return self.all.count

    @property
    def errors(self) -> int:
        return self.count - self.status_counts.get("OK", 0)
