"""`kinship bench index` reports the CPU each process spent per unit of work."""

from __future__ import annotations

import os
import sys
import time

import pytest

from kinship.cli.bench_index import CpuMeter, process_cpu_seconds

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc (Linux only)")


def _spin(seconds: float) -> None:
    end = time.process_time() + seconds
    while time.process_time() < end:
        pass


def test_a_process_cpu_time_grows_with_the_work_it_does():
    before = process_cpu_seconds(os.getpid())
    _spin(0.3)
    after = process_cpu_seconds(os.getpid())
    assert before is not None and after is not None
    assert 0.2 <= after - before <= 2.0, "0.3 s of spinning is read as about 0.3 s (clock ticks of 10 ms)"


def test_a_process_that_cannot_be_read_is_none_not_zero():
    assert process_cpu_seconds(2**22 + 12345) is None  # above pid_max's default: no such process


def test_per_unit_gives_milliseconds_per_scale_units_and_leaves_out_unread_processes():
    meter = CpuMeter({"bench": [os.getpid()], "gone": [2**22 + 12345], "none": []})
    before = meter.read()
    assert set(before) == {"bench"}, "an unreadable process is left out, an empty one never listed"
    _spin(0.2)
    per_1000 = CpuMeter.per_unit(before, meter.read(), units=50_000, scale=1000)
    assert set(per_1000) == {"bench"}
    assert 2.0 <= per_1000["bench"] <= 40.0, "about 200 ms over 50 thousand rows is about 4 ms per 1,000"
    assert CpuMeter.per_unit(before, before, units=0, scale=1000) == {}


def test_several_pids_of_one_name_are_summed():
    meter = CpuMeter({"twice": [os.getpid(), os.getpid()]})
    reading = meter.read()["twice"]
    assert reading == pytest.approx(2 * process_cpu_seconds(os.getpid()), abs=0.05)


def test_cpu_lists_read_as_taskset_reads_them_and_name_only_cpus_this_machine_has():
    import argparse

    from kinship.cli.bench_index import cpu_list

    assert cpu_list("0") == {0}
    if (os.cpu_count() or 1) >= 2:
        assert cpu_list("0,1") == cpu_list("0-1") == {0, 1}
    for bad in ("", "x", "1-a", f"{os.cpu_count()}", "-1"):
        with pytest.raises(argparse.ArgumentTypeError):
            cpu_list(bad)


def test_the_affinity_of_processes_is_read_and_a_process_gone_is_none():
    from kinship.cli.bench_index import cpu_affinity

    assert cpu_affinity([os.getpid()]) == sorted(os.sched_getaffinity(0))
    assert cpu_affinity([]) is None
    assert cpu_affinity([2**22 + 12345]) is None  # above Linux's largest pid
