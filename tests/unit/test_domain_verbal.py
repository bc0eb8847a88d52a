"""The verbal scale of a log10 likelihood ratio."""

from __future__ import annotations

import pytest

from kinship.domain.verbal import verbal_scale


@pytest.mark.parametrize(
    ("log10_lr", "words"),
    [
        (-3.0, "supports not kin"),
        (-0.01, "supports not kin"),
        (0.0, "neutral"),
        (0.5, "weak support"),
        (1.0, "moderate support"),
        (1.99, "moderate support"),
        (2.0, "moderately strong support"),
        (3.0, "strong support"),
        (4.0, "very strong support"),
        (5.99, "very strong support"),
        (6.0, "extremely strong support"),
        (12.0, "extremely strong support"),
    ],
)
def test_scale(log10_lr, words):
    assert verbal_scale(log10_lr) == words


def test_nan_is_refused():
    with pytest.raises(ValueError):
        verbal_scale(float("nan"))
