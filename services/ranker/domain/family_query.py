"""The whole family as one maximum-inner-product query (issue 26).

Before its bounds, the calibrated fused score of a candidate with one record is
linear in that record's two unit vectors k (kinship) and i (identity):

    relative r, photo j:  llr_rj = (a_r k_rj . k + b_r i_rj . i + c_r) / ln 10      (x age factor f_j for SELF)
    relative r:           llr_r  = sum_j p_rj llr_rj,   p_rj = photo weight / sum of the relative's weights
    fused:                sum_r w_r llr_r  =  Q . k + P . i + C

with Q = sum_r w_r sum_j p_rj a_r k_rj / ln 10 over kin relatives, P the same with
b_r i_rj (and SELF's a_self f_j i_j), C = sum_r w_r sum_j p_rj c_r (f_j) / ln 10. The
slopes a_r, b_r, c_r come from the calibration chosen by the candidate's sex
(father-son vs father-daughter), so there is one query per calibration group: male,
female and unspecified candidates. Against the gallery's combined vectors
[k; i] / sqrt(2) (kinship.family_vectors) the score is sqrt(2) [Q; P] . x + C; every
stored x has the same norm, so a COSINE search with [Q; P] ranks records exactly by
it. Bounds (each photo's llr is clipped), a person's several records (max per photo)
and everything else the scorer does are applied afterwards, by exact rescoring of the
pool the search returns.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kinship.artifacts import Calibration

from . import calibration as cal
from .model import Relation, Sex
from .scoring import RelativeFaces, _unit_rows, fusion_weights, photo_weights

_LN10 = math.log(10.0)
_SQRT2 = math.sqrt(2.0)
#: The calibration groups a candidate can fall in; the candidate's sex picks the calibration.
SEX_GROUPS = (Sex.MALE, Sex.FEMALE, Sex.UNSPECIFIED)


@dataclass(frozen=True)
class FamilyQuery:
    """One calibration group's query: fused score before bounds = kinship . k + identity . i + constant."""

    sex: Sex
    kinship: np.ndarray  # Q, (kinship dimension,)
    identity: np.ndarray  # P, (identity dimension,)
    constant: float
    calibrations: tuple[str, ...]  # per relative, the calibration used

    @property
    def search_vector(self) -> np.ndarray:
        """[Q; P] at unit length (float32), for a COSINE search of the combined collection."""
        joined = np.concatenate([self.kinship, self.identity])
        norm = float(np.linalg.norm(joined))
        return (joined / (norm if norm > 0 else 1.0)).astype(np.float32)

    def score(self, kinship: np.ndarray, identity: np.ndarray) -> np.ndarray:
        """Unbounded fused score of records with these (unit) kinship and identity rows."""
        return (
            _unit_rows(np.atleast_2d(kinship)) @ self.kinship
            + _unit_rows(np.atleast_2d(identity)) @ self.identity
            + self.constant
        )

    def score_combined(self, combined: np.ndarray) -> np.ndarray:
        """The same from combined rows [k; i] / sqrt(2): sqrt(2) [Q; P] . x + C."""
        joined = np.concatenate([self.kinship, self.identity])
        return _SQRT2 * (np.atleast_2d(np.asarray(combined, dtype=np.float64)) @ joined) + self.constant


def family_query(relatives: Sequence[RelativeFaces], calibration: Calibration, sex: Sex) -> FamilyQuery:
    """The family's query for candidates of `sex`, from the same weights and calibrations `scoring` uses."""
    if not relatives:
        raise ValueError("a family query needs at least one relative")
    weights = fusion_weights([rel.relative.relation for rel in relatives])
    kin_dim = next((rel.kinship.shape[1] for rel in relatives if rel.kinship is not None), 0)
    id_dim = relatives[0].embeddings.shape[1]
    q, p, constant = np.zeros(kin_dim), np.zeros(id_dim), 0.0
    names = []
    for w, rel in zip(weights, relatives, strict=True):
        relation = rel.relative.relation
        photo = photo_weights(rel.quality, rel.photo_count, rel.embeddings)
        photo = photo / photo.sum()
        identity_rows = _unit_rows(rel.embeddings)
        name = cal.calibration_name(relation, sex, calibration)
        names.append(name)
        rc = calibration.get(name)
        if relation is Relation.SELF:
            gaps = rel.age_gap_years if rel.age_gap_years is not None else np.full(rel.photo_count, np.nan)
            half_life = calibration.self_age_gap_half_life_years
            factor = np.array([cal.age_gap_factor(None if math.isnan(g) else g, half_life) for g in gaps])
            share = w * photo * factor / _LN10
            p += rc.slope * (share @ identity_rows)
            constant += rc.intercept * float(share.sum())
            continue
        if rel.kinship is None:
            raise ValueError(f"relative '{rel.relative.label}' has no kinship vectors")
        share = w * photo / _LN10
        q += rc.slope * (share @ _unit_rows(rel.kinship))
        p += rc.identity_slope * (share @ identity_rows)
        constant += rc.intercept * float(share.sum())
    return FamilyQuery(sex=sex, kinship=q, identity=p, constant=constant, calibrations=tuple(names))


def family_queries(relatives: Sequence[RelativeFaces], calibration: Calibration, known_sex: Sex) -> list[FamilyQuery]:
    """The queries one search needs: the known sex's, or one per group whose calibrations differ.

    With the sex unknown, a male, a female and an unspecified candidate may each use
    other calibrations (father-son, father-daughter, father); where all three use the
    same ones, one query (the unspecified one, searched without a sex filter) serves all.
    """
    if known_sex is not Sex.UNSPECIFIED:
        return [family_query(relatives, calibration, known_sex)]
    queries = [family_query(relatives, calibration, sex) for sex in SEX_GROUPS]
    if len({q.calibrations for q in queries}) == 1:
        return [queries[-1]]
    return queries
