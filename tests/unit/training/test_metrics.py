"""The figures `kinship eval` reports, checked against cases whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kinship.training import metrics


def test_linear_logistic_recovers_the_likelihood_ratio_of_two_gaussians() -> None:
    # Kin ~ N(1, 1), non-kin ~ N(0, 1): the true log LR is s - 0.5 (slope 1, intercept -0.5),
    # whatever the class counts (the fit weighs the classes equally).
    rng = np.random.default_rng(0)
    kin, non = rng.normal(1.0, 1.0, 20000), rng.normal(0.0, 1.0, 60000)
    scores = np.concatenate([kin, non])
    labels = np.concatenate([np.ones(len(kin)), np.zeros(len(non))])
    slopes, intercept = metrics.fit_linear_logistic(scores, labels)
    assert slopes[0] == pytest.approx(1.0, abs=0.05)
    assert intercept == pytest.approx(-0.5, abs=0.05)


def test_linear_logistic_weighs_two_witnesses() -> None:
    rng = np.random.default_rng(1)
    n = 20000
    labels = rng.integers(0, 2, n)
    strong = rng.normal(labels * 2.0, 1.0)  # log LR 2s - 2
    useless = rng.normal(0.0, 1.0, n)
    slopes, _ = metrics.fit_linear_logistic(np.stack([strong, useless], axis=1), labels)
    assert slopes[0] == pytest.approx(2.0, abs=0.1)
    assert abs(slopes[1]) < 0.1


def test_linear_logistic_needs_both_classes() -> None:
    with pytest.raises(ValueError, match="kin and non-kin"):
        metrics.fit_linear_logistic(np.array([0.1, 0.2]), np.array([1, 1]))


def test_auc_of_perfect_random_and_tied_scores() -> None:
    labels = np.array([1, 1, 0, 0])
    assert metrics.auc(np.array([0.9, 0.8, 0.2, 0.1]), labels) == 1.0
    assert metrics.auc(np.array([0.1, 0.2, 0.8, 0.9]), labels) == 0.0
    assert metrics.auc(np.array([0.5, 0.5, 0.5, 0.5]), labels) == 0.5


def test_threshold_and_accuracy() -> None:
    scores = np.array([0.1, 0.2, 0.6, 0.7, 0.4])
    labels = np.array([0, 0, 1, 1, 0])
    threshold = metrics.best_accuracy_threshold(scores, labels)
    assert 0.4 < threshold < 0.6
    assert metrics.accuracy(scores, labels, threshold) == 1.0


def test_tar_at_far_counts_kin_above_the_strictest_admitted_non_kin() -> None:
    non_kin = np.linspace(0.0, 0.99, 100)
    kin = np.array([0.995, 0.985, 0.5])
    scores = np.concatenate([kin, non_kin])
    labels = np.concatenate([np.ones(3), np.zeros(100)])
    # One non-kin score in 100 may pass (0.99), so the threshold is the next one (0.98).
    assert metrics.tar_at_far(scores, labels, 0.01) == pytest.approx(2 / 3)


def test_cllr_of_uninformative_perfect_and_misleading_systems() -> None:
    labels = np.array([1, 1, 0, 0])
    assert metrics.cllr(np.zeros(4), labels) == pytest.approx(1.0)
    assert metrics.cllr(np.array([6.0, 6.0, -6.0, -6.0]), labels) < 0.001
    assert metrics.cllr(np.array([-2.0, -2.0, 2.0, 2.0]), labels) > 1.0


def test_cllr_min_is_what_discrimination_allows() -> None:
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2, 4000)
    scores = rng.normal(labels * 1.5, 1.0)
    badly_scaled = scores * 10.0 - 3.0  # same order, poor calibration
    assert metrics.cllr_min(badly_scaled, labels) == pytest.approx(metrics.cllr_min(scores, labels))
    assert metrics.cllr_min(badly_scaled, labels) < metrics.cllr(badly_scaled, labels)
    # Perfectly separated scores: the minimum is (almost) 0.
    assert metrics.cllr_min(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1])) < 0.01


def test_expected_calibration_error_is_zero_for_honest_posteriors() -> None:
    rng = np.random.default_rng(3)
    posterior = rng.uniform(0.05, 0.95, 200000)
    labels = rng.uniform(size=posterior.size) < posterior
    log10_lr = np.log10(posterior / (1 - posterior))
    assert metrics.expected_calibration_error(log10_lr, labels) < 0.01
    overconfident = log10_lr * 3
    assert metrics.expected_calibration_error(overconfident, labels) > 0.05


def test_retrieval_map_and_rank_k() -> None:
    rows = [np.array([0.9, 0.1, 0.2]), np.array([0.1, 0.9, 0.5]), np.array([0.3, 0.2, 0.1])]
    truth = [np.array([1, 0, 0]), np.array([0, 0, 1]), np.array([0, 0, 1])]
    out = metrics.retrieval(rows, truth, ks=(1, 2))
    assert out["map"] == pytest.approx((1 + 1 / 2 + 1 / 3) / 3)
    assert out["rank1"] == pytest.approx(1 / 3)
    assert out["rank2"] == pytest.approx(2 / 3)
    assert math.isclose(out["probes"], 3)
