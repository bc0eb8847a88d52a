"""From a similarity to evidence: which calibration a comparison uses, and the likelihood ratio it gives.

A calibration (see `kinship.artifacts.RelationCalibration`) maps the cosine
similarity s of one comparison to log10 LR = (slope * s + intercept) / ln 10,
the log10 of P(s | kin) / P(s | not kin), bounded by +-max_abs_log10_lr so that no
single comparison says more than the data it was fitted on could.

Which calibration: kin relations are calibrated on the kinship model's similarity
(with the identity cosine of the same faces as a second witness), per relation and,
where the candidate's sex is known, per sex of the candidate (father-son and
father-daughter pairs do not look alike in the same way). `calibration_name` takes
the most specific name the artifact has, in this order:

- father / mother: `father-son` or `father-daughter` (`mother-son`,
  `mother-daughter`) by the candidate's sex, else `father` (`mother`).
- brother: `brother-brother` (candidate male) or `brother-sister` (candidate
  female), else `brother`, else `sibling`.
- sister: `sister-sister` (candidate female) or `brother-sister` (candidate male),
  else `sister`, else `sibling`.
- sibling (the relative's sex not given): `sibling`.
- grandfather / grandmother: `grandfather-grandson` or `grandfather-granddaughter`
  (`grandmother-grandson`, `grandmother-granddaughter`), else `grandfather`
  (`grandmother`). Nothing is borrowed for a grandparent: an artifact without
  either is refused for that relation (FAILED_PRECONDITION), see
  `require_calibration`.

Artifacts fitted before sibling pairs existed have only `sibling` (borrowed from
parent-child pairs, as their manifest says) and fall back to it. RELATION_SELF is
identity evidence (an earlier photo of the missing person) on the identity model,
discounted for the age gap between the photo and now.
"""

from __future__ import annotations

import math

import numpy as np

from kinship.artifacts import ArtifactError, Calibration, RelationCalibration
from kinship.runtime.errors import FailedPrecondition

from .model import GRANDPARENTS, Relation, Sex

_LN10 = math.log(10.0)

_PARENT = {Relation.FATHER: "father", Relation.MOTHER: "mother"}
_CHILD = {Sex.MALE: "son", Sex.FEMALE: "daughter"}
_GRANDPARENT = {Relation.GRANDFATHER: "grandfather", Relation.GRANDMOTHER: "grandmother"}
_GRANDCHILD = {Sex.MALE: "grandson", Sex.FEMALE: "granddaughter"}
#: Per sibling relation: the pair name by the candidate's sex, then the fallbacks in order.
_SIBLING = {
    Relation.BROTHER: ({Sex.MALE: "brother-brother", Sex.FEMALE: "brother-sister"}, ("brother", "sibling")),
    Relation.SISTER: ({Sex.FEMALE: "sister-sister", Sex.MALE: "brother-sister"}, ("sister", "sibling")),
    Relation.SIBLING: ({}, ("sibling",)),
}


def _candidates(relation: Relation, candidate_sex: Sex) -> tuple[str, ...]:
    """The calibration names that could serve, most specific first."""
    if relation is Relation.SELF:
        return ("self",)
    if relation in _PARENT:
        parent = _PARENT[relation]
        specific = (f"{parent}-{_CHILD[candidate_sex]}",) if candidate_sex in _CHILD else ()
        return (*specific, parent)
    if relation in _GRANDPARENT:
        grandparent = _GRANDPARENT[relation]
        specific = (f"{grandparent}-{_GRANDCHILD[candidate_sex]}",) if candidate_sex in _GRANDCHILD else ()
        return (*specific, grandparent)
    if relation in _SIBLING:
        by_sex, fallbacks = _SIBLING[relation]
        return (*((by_sex[candidate_sex],) if candidate_sex in by_sex else ()), *fallbacks)
    raise ValueError(f"no calibration for relation {relation}")


def calibration_name(relation: Relation, candidate_sex: Sex, available: Calibration) -> str:
    """The most specific calibration the artifact has for this relation and candidate sex.

    The last fallback of a parent, sibling or self relation is one that `check_calibration`
    requires, so it is returned even when absent (the caller's `Calibration.get` then says
    so). A grandparent has no required fallback: without one, FailedPrecondition.
    """
    names = _candidates(relation, candidate_sex)
    for name in names:
        if name in available.relations:
            return name
    if relation in GRANDPARENTS:
        raise FailedPrecondition(
            f"relation {relation.value} cannot be scored: the calibration {available.calibration_id} has no "
            f"{' or '.join(repr(n) for n in names)} calibration (it has {sorted(available.relations)}) and a "
            f"grandparent's evidence is never borrowed from another relation; use an artifact with grandparent "
            f"calibrations (one trained on grandparent pairs), or leave the {relation.value} out",
            reason="RELATION_NOT_CALIBRATED",
        )
    return names[-1]


def require_calibration(relation: Relation, candidate_sex: Sex, available: Calibration | None) -> None:
    """Refuses (FailedPrecondition) a relation the calibration cannot score; uncalibrated (None) scores all."""
    if available is not None:
        calibration_name(relation, candidate_sex, available)


def log10_lr(
    calibration: RelationCalibration,
    similarity: np.ndarray | float,
    identity_similarity: np.ndarray | float | None = None,
) -> np.ndarray:
    """log10 likelihood ratio of kin (or, for self, same person) vs not, per similarity, bounded.

    `identity_similarity` (the identity cosine of the same faces) is needed where the
    calibration weighs it (identity_slope != 0); a NaN in either gives NaN (no evidence).
    """
    raw = calibration.slope * np.asarray(similarity, dtype=np.float64) + calibration.intercept
    if calibration.identity_slope:
        if identity_similarity is None:
            raise ValueError(f"calibration {calibration.name!r} needs the identity similarity as well")
        raw = raw + calibration.identity_slope * np.asarray(identity_similarity, dtype=np.float64)
    raw = raw / _LN10
    bound = calibration.max_abs_log10_lr
    return np.clip(raw, -bound, bound)


def age_gap_factor(age_gap_years: float | None, half_life_years: float) -> float:
    """How much of a SELF comparison's evidence counts after `age_gap_years` (1.0 when unknown or none).

    Identity similarity falls as a face ages, and the SELF calibration was fitted on
    photos close in time; halving the evidence every `half_life_years` keeps an old
    childhood photo from speaking as loudly as a recent one.
    """
    if age_gap_years is None or age_gap_years <= 0:
        return 1.0
    return float(2.0 ** (-age_gap_years / half_life_years))


#: Calibrations `calibration_name` may fall back to; an artifact must have every one.
REQUIRED = {"father": "kinship", "mother": "kinship", "sibling": "kinship", "self": "identity"}


def check_calibration(calibration: Calibration) -> None:
    """Refuses a calibration the ranker could not use for every relation.

    Every name `calibration_name` can fall back to must be there, and each must
    calibrate the similarity the ranker computes for it (kin relations on the kinship
    model, self on the identity model); the ranker would otherwise fail per request,
    or turn one model's similarity into evidence with another model's calibration.
    """
    missing = sorted(set(REQUIRED) - set(calibration.relations))
    if missing:
        raise ArtifactError(
            f"calibration {calibration.calibration_id} has no {', '.join(missing)} calibration (it has "
            f"{sorted(calibration.relations)}); the ranker needs {sorted(REQUIRED)}: train again (kinship train)"
        )
    for name, relation in calibration.relations.items():
        expected = "identity" if name == "self" else "kinship"
        if relation.model != expected:
            raise ArtifactError(
                f"calibration {calibration.calibration_id}: {name!r} calibrates the {relation.model!r} model's "
                f"similarity, but the ranker scores {name!r} on the {expected} model: train again (kinship train)"
            )
        if not (math.isfinite(relation.slope) and math.isfinite(relation.intercept)) or relation.max_abs_log10_lr <= 0:
            raise ArtifactError(
                f"calibration {calibration.calibration_id}: {name!r} has a non-finite slope or intercept or a "
                "non-positive bound: train again (kinship train)"
            )
    if not calibration.self_age_gap_half_life_years > 0:
        raise ArtifactError(
            f"calibration {calibration.calibration_id}: self_age_gap_half_life_years must be above 0, got "
            f"{calibration.self_age_gap_half_life_years}"
        )


def photo_age_gap(
    *,
    age_at_photo: float | None,
    capture_year: int | None,
    birth_year_min: int | None,
    birth_year_max: int | None,
    current_year: int,
) -> float | None:
    """Years between a photo of the missing person and now, or None when it cannot be told.

    With the age at the photo and a known birth range (both bounds; one year is
    min = max), the gap is the person's current age, from the range's midpoint, less
    the age at the photo. Otherwise, with the capture year, it is the current year
    less the capture year. Otherwise it is unknown (no discount). The gallery photo is
    taken to be recent: records carry no date.
    """
    if age_at_photo is not None and birth_year_min is not None and birth_year_max is not None:
        current_age = current_year - (birth_year_min + birth_year_max) / 2.0
        return max(0.0, current_age - age_at_photo)
    if capture_year is not None:
        return float(max(0, current_year - capture_year))
    return None
