"""Words for a log10 likelihood ratio, after the ENFSI guideline's verbal scale.

The scale (ENFSI Guideline for Evaluative Reporting in Forensic Science, 2015) speaks
of support for one proposition over the other; here "kin" (the candidate is the
missing person) over "not kin" (an unrelated person). The words describe the
strength of the evidence, never the probability that the candidate is the person:
that needs a prior (see the posterior probability) and, always, a person's check.

    log10 LR      words
    < 0           supports not kin (the evidence points away from the candidate)
    = 0           neutral
    (0, 1)        weak support
    [1, 2)        moderate support
    [2, 3)        moderately strong support
    [3, 4)        strong support
    [4, 6)        very strong support
    >= 6          extremely strong support
"""

from __future__ import annotations

import math

_STEPS = (
    (1.0, "weak support"),
    (2.0, "moderate support"),
    (3.0, "moderately strong support"),
    (4.0, "strong support"),
    (6.0, "very strong support"),
)


def verbal_scale(log10_lr: float) -> str:
    """The verbal equivalent of a log10 likelihood ratio (kin vs not kin)."""
    if math.isnan(log10_lr):
        raise ValueError("a log10 likelihood ratio cannot be NaN")
    if log10_lr < 0:
        return "supports not kin"
    if log10_lr == 0:
        return "neutral"
    for bound, words in _STEPS:
        if log10_lr < bound:
            return words
    return "extremely strong support"
