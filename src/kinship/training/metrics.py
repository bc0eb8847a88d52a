"""Calibration fitting and the figures `kinship eval` reports. numpy only.

- `fit_linear_logistic`: score -> natural-log likelihood ratio, the standard linear
  calibration of forensic and speaker recognition (Brümmer's FoCal): logistic
  regression of the label on the score with the two classes weighted equally, so
  that the fitted log-odds is a log likelihood ratio whatever the class counts.
- verification: AUC, accuracy at a threshold chosen on other data, TAR at FAR 1%;
- calibration: Cllr (the log-likelihood-ratio cost; 1.0 is a system that says
  nothing, 0 a perfect one), Cllr_min (the Cllr after the best monotonic
  recalibration, by pool-adjacent-violators: what discrimination alone allows) and
  the expected calibration error of the posteriors at even prior odds;
- retrieval: mean average precision and rank-k hit rates.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

LN10 = math.log(10.0)


def fit_linear_logistic(
    scores: np.ndarray, labels: np.ndarray, *, l2: float = 1e-3, iterations: int = 50
) -> tuple[np.ndarray, float]:
    """(slopes, intercept) with log LR = scores @ slopes + intercept (natural log), classes weighed equally.

    `scores` is (n,) or (n, k) for k similarities of each pair. Newton's method on the
    weighted logistic loss; the small ridge on the slopes keeps them finite when the
    classes separate completely.
    """
    s = np.asarray(scores, dtype=np.float64)
    s = s[:, None] if s.ndim == 1 else s
    y = np.asarray(labels, dtype=np.float64)
    n_kin, n_non = y.sum(), (1 - y).sum()
    if n_kin == 0 or n_non == 0:
        raise ValueError(f"calibration needs kin and non-kin pairs, got {int(n_kin)} and {int(n_non)}")
    weight = np.where(y == 1, 0.5 / n_kin, 0.5 / n_non)
    design = np.concatenate([s, np.ones((len(s), 1))], axis=1)
    beta = np.zeros(design.shape[1])
    ridge = np.diag([l2] * s.shape[1] + [0.0])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(design @ beta)))
        gradient = design.T @ (weight * (p - y)) + ridge @ beta
        hessian = (design * (weight * p * (1 - p))[:, None]).T @ design + ridge
        step = np.linalg.solve(hessian, gradient)
        beta -= step
        if np.abs(step).max() < 1e-10:
            break
    return beta[:-1].copy(), float(beta[-1])


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (ties count one half)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    pos, neg = s[y], s[~y]
    if not len(pos) or not len(neg):
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    ranks[order] = np.arange(1, len(order) + 1)
    # Average ranks over ties.
    combined = np.concatenate([pos, neg])
    _, inverse, counts = np.unique(combined, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    ranks = sums[inverse] / counts[inverse]
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def best_accuracy_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The threshold (score >= t means kin) with the best accuracy on these scores; midpoints between values."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    values = np.unique(s)
    candidates = np.concatenate([[values[0] - 1e-9], (values[:-1] + values[1:]) / 2, [values[-1] + 1e-9]])
    accuracies = [((s >= t) == y).mean() for t in candidates]
    return float(candidates[int(np.argmax(accuracies))])


def accuracy(scores: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    return float(((np.asarray(scores) >= threshold) == np.asarray(labels).astype(bool)).mean())


def tar_at_far(scores: np.ndarray, labels: np.ndarray, far: float = 0.01) -> float:
    """Share of kin pairs accepted at the strictest threshold that accepts at most `far` of non-kin pairs."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(bool)
    negatives = np.sort(s[~y])[::-1]
    allowed = int(math.floor(far * len(negatives)))
    # Accept scores strictly above the (allowed+1)-th highest non-kin score.
    threshold = negatives[allowed] if allowed < len(negatives) else -np.inf
    return float((s[y] > threshold).mean())


def cllr(log10_lr: np.ndarray, labels: np.ndarray) -> float:
    """Log-likelihood-ratio cost in bits: 1 = uninformative, 0 = perfect, above 1 = misleading."""
    llr = np.asarray(log10_lr, dtype=np.float64) * LN10
    y = np.asarray(labels).astype(bool)
    kin = np.mean(np.logaddexp(0.0, -llr[y])) / math.log(2.0)
    non = np.mean(np.logaddexp(0.0, llr[~y])) / math.log(2.0)
    return float((kin + non) / 2)


def _pav(values: np.ndarray) -> np.ndarray:
    """Pool-adjacent-violators: the non-decreasing fit of `values` (least squares)."""
    blocks: list[list[float]] = []  # [mean, weight]
    for v in values:
        blocks.append([float(v), 1.0])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, w2 = blocks.pop()
            m1, w1 = blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2])
    return np.concatenate([np.full(int(w), m) for m, w in blocks])


def cllr_min(scores: np.ndarray, labels: np.ndarray) -> float:
    """Cllr after the optimal monotonic calibration of `scores` (PAV), i.e. what discrimination allows."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels).astype(float)
    order = np.lexsort((-y, s))  # ties: kin first, the conservative order
    posterior = np.clip(_pav(y[order]), 1e-6, 1 - 1e-6)
    prior_log_odds = math.log(y.sum() / (len(y) - y.sum()))
    log10_lr = (np.log(posterior / (1 - posterior)) - prior_log_odds) / LN10
    return cllr(log10_lr, y[order])


def expected_calibration_error(log10_lr: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """ECE of the posteriors at even prior odds (P(kin) = LR / (1 + LR)), over equal-width bins."""
    posterior = 1.0 / (1.0 + np.power(10.0, -np.asarray(log10_lr, dtype=np.float64)))
    y = np.asarray(labels).astype(float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(posterior, edges[1:-1]), 0, bins - 1)
    error = 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            error += members.mean() * abs(posterior[members].mean() - y[members].mean())
    return float(error)


def retrieval(score_rows: Sequence[np.ndarray], relevant: Sequence[np.ndarray], ks: Sequence[int] = (1, 5, 10)) -> dict:
    """mAP and rank-k hit rates: row i scores probe i against its gallery; `relevant[i]` marks its true matches."""
    average_precisions = []
    hits = {k: [] for k in ks}
    for scores, truth in zip(score_rows, relevant, strict=True):
        truth = np.asarray(truth).astype(bool)
        order = np.argsort(-np.asarray(scores), kind="mergesort")
        found = truth[order]
        positions = np.flatnonzero(found) + 1
        if not len(positions):
            continue
        precision = np.arange(1, len(positions) + 1) / positions
        average_precisions.append(precision.mean())
        for k in ks:
            hits[k].append(bool(positions[0] <= k))
    out = {"map": float(np.mean(average_precisions)), "probes": len(average_precisions)}
    out.update({f"rank{k}": float(np.mean(hits[k])) for k in ks})
    return out
