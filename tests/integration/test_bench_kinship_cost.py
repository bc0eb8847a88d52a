"""`kinship bench embed --kinship-only` part (e): FindRelatives with a father and a mother through two real
suites (`kinship serve all --sample-gallery`), one serving the shipped artifact and one serving none; the
bench refuses to report a ratio unless the first answers calibrated and the second does not."""

from __future__ import annotations

import math

import pytest

from kinship.bench.embed import measure_find_cost


@pytest.mark.timeout(600)
def test_find_cost_compares_a_calibrated_suite_with_an_identity_only_one() -> None:
    result = measure_find_cost(seconds=1.0, rounds=1)
    with_p50 = result["find_two_parents_p50_ms_with_kinship"]
    without_p50 = result["find_two_parents_p50_ms_identity_only"]
    assert 0 < with_p50 < 60_000 and 0 < without_p50 < 60_000
    assert math.isclose(result["find_kinship_latency_ratio"], with_p50 / without_p50)
