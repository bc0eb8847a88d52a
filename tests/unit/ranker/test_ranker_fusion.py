"""Calibrated scoring and fusion ("summed-calibrated-llr-v1") on small vectors with answers known by hand.

The hand calibration (tests/kinship_artifact.py) gives, for kin relations,
log10 LR = clip((8 s - 2) / ln 10, -2.5, 2.5) and for self clip((12 s - 4) / ln 10, -3, 3).
Kinship vectors are 4-d and identity vectors 3-d, so a relative scored in the wrong
space fails loudly instead of passing by chance.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from kinship.ranker.domain import scoring
from kinship.ranker.domain.model import GalleryRecord, PersonAttributes, Relation, Sex
from kinship.ranker.domain.scoring import ScoringConfig, fusion_weights, relative_faces
from tests.kinship_artifact import hand_calibration
from tests.unit.ranker.ranker_fakes import KIN, MODEL, calibrated, unit

LN10 = math.log(10.0)
F, B, S, M, SELF = Relation.FATHER, Relation.BROTHER, Relation.SISTER, Relation.MOTHER, Relation.SELF


def kin_llr(s: float) -> float:
    return float(np.clip((8 * s - 2) / LN10, -2.5, 2.5))


def self_llr(s: float) -> float:
    return float(np.clip((12 * s - 4) / LN10, -3.0, 3.0))


def record(person, record_id, *, kinship=None, identity=None, sex=Sex.MALE, year=1990):
    return GalleryRecord(
        record_id,
        person,
        None if identity is None else np.asarray(identity, dtype=np.float64),
        PersonAttributes(birth_year=year, sex=sex),
        kinship_embedding=None if kinship is None else np.asarray(kinship, dtype=np.float64),
    )


def kin_relative(relation, *kin_vectors, quality=None, identity=None, label=""):
    """A kin relative; identity vectors default to distinct axes (so no two photos are duplicates)."""
    n = len(kin_vectors)
    if identity is None:
        identity = [unit(*(1.0 if k == i % 3 else 0.1 * (i + 1) for k in range(3))) for i in range(n)]
    return relative_faces(relation, np.stack(identity), np.stack(kin_vectors), quality=quality, label=label)


def column(scores, person):
    return scores.person_ids.index(person)


# The family: father's and mother's kinship vectors on two axes. The child resembles
# both; the decoy resembles the father more than the child does, and not the mother.
DAD_KIN, MUM_KIN = unit(1, 0, 0, 0), unit(0, 1, 0, 0)
CHILD = record("child", "child/1", kinship=unit(1, 1, 0, 0), identity=unit(0, 0, 1))
DECOY = record("decoy", "decoy/1", kinship=unit(1, 0, 0, 0.2), identity=unit(0, 1, 0))
STRANGER = record("stranger", "stranger/1", kinship=unit(0, 0, 1, 0), identity=unit(1, 0, 0))
GALLERY = [CHILD, DECOY, STRANGER]


@pytest.mark.parametrize(
    ("relations", "expected"),
    [
        ([F], [1.0]),
        ([F, M], [1.0, 1.0]),
        ([F, F], [0.5, 0.5]),
        ([F, F, M], [0.5, 0.5, 1.0]),
        ([B], [1.0]),
        ([B, S], [1 / 1.5, 1 / 1.5]),
        ([B, S, Relation.SIBLING], [0.5, 0.5, 0.5]),
        ([F, B], [1.0, 0.5]),
        ([F, M, B, S], [1.0, 1.0, 1 / 3, 1 / 3]),
        ([SELF], [1.0]),
        ([SELF, SELF], [0.5, 0.5]),
        ([SELF, F, S], [1.0, 1.0, 0.5]),
    ],
)
def test_fusion_weights(relations, expected):
    assert fusion_weights(relations) == pytest.approx(expected)


def test_a_second_parent_raises_the_true_childs_fused_lr_and_rank():
    dad, mum = kin_relative(F, DAD_KIN), kin_relative(M, MUM_KIN)
    alone = scoring.score_candidates([dad], GALLERY, {}, calibrated())
    both = scoring.score_candidates([dad, mum], GALLERY, {}, calibrated())

    c = column(alone, "child")
    assert alone.log10_lr[c] == pytest.approx(kin_llr(1 / math.sqrt(2)))
    assert both.log10_lr[c] == pytest.approx(2 * kin_llr(1 / math.sqrt(2)))  # two parents count in full
    assert both.log10_lr[c] > alone.log10_lr[c] > 0
    assert [x.person_id for x in scoring.rank(alone, 3)] == ["decoy", "child", "stranger"]
    assert [x.person_id for x in scoring.rank(both, 3)] == ["child", "decoy", "stranger"]
    # The decoy is no kin of the mother: her evidence counts against it.
    d = column(both, "decoy")
    assert both.relative_log10_lr[1, d] == pytest.approx(kin_llr(0.0)) and kin_llr(0.0) < 0


def test_a_duplicated_photo_changes_no_score():
    other = unit(0.6, 0.2, 0.7, 0.3)
    photos = [DAD_KIN, other]
    identity = [unit(1, 0, 0), unit(0, 1, 0)]
    once = scoring.score_candidates([kin_relative(F, *photos, identity=identity)], GALLERY, {}, calibrated())
    duplicated = kin_relative(F, *photos, DAD_KIN, identity=[*identity, identity[0]], quality=[0.9, 0.9, 0.9])
    twice = scoring.score_candidates([duplicated], GALLERY, {}, calibrated())
    for name in ("log10_lr", "posterior", "similarity", "photo_index", "relative_log10_lr", "score"):
        np.testing.assert_allclose(getattr(twice, name), getattr(once, name), err_msg=name)
    assert (twice.record_ids == once.record_ids).all()
    # Sanity: the third photo is recognised as a copy of the first, which stands for both.
    assert scoring.distinct_photos(np.stack([*identity, identity[0]]), np.full(3, 0.9)).tolist() == [True, True, False]


def test_a_sharper_copy_stands_for_its_group():
    vectors = np.stack([unit(1, 0, 0), unit(1, 0.05, 0), unit(0, 1, 0)])  # 0 and 1 near-identical
    assert scoring.distinct_photos(vectors, np.array([0.2, 0.9, 0.5])).tolist() == [False, True, True]
    assert scoring.photo_weights([0.2, 0.9, 0.5], 3, vectors).tolist() == [0.0, 0.9, 0.5]


def test_a_low_quality_photo_moves_the_relative_lr_less():
    sharp, other = DAD_KIN, unit(0, 0, 1, 0)  # against the child: cosine 0.71 and 0

    def relative_lr(*qualities):
        photos = [sharp, other][: len(qualities)]
        rel = kin_relative(F, *photos, quality=qualities)
        scores = scoring.score_candidates([rel], [CHILD], {}, calibrated())
        return scores.relative_log10_lr[0, 0]

    baseline = relative_lr(0.9)
    with_sharp_second = relative_lr(0.9, 0.9)
    with_blurry_second = relative_lr(0.9, 0.1)
    assert with_sharp_second == pytest.approx((kin_llr(2**-0.5) + kin_llr(0.0)) / 2)
    assert with_blurry_second == pytest.approx((0.9 * kin_llr(2**-0.5) + 0.1 * kin_llr(0.0)) / 1.0)
    assert abs(with_blurry_second - baseline) < abs(with_sharp_second - baseline)
    # A quality of 0 still counts a little (the 0.05 floor), never divides by zero.
    assert relative_lr(0.0, 0.0) == pytest.approx(with_sharp_second)


def test_siblings_beside_parents_are_discounted():
    sister_kin = unit(1, 1, 0.2, 0)
    sister = kin_relative(S, sister_kin)
    alone = scoring.score_candidates([sister], [CHILD], {}, calibrated())
    beside = scoring.score_candidates([kin_relative(F, DAD_KIN), sister], [CHILD], {}, calibrated())
    sister_lr = alone.relative_log10_lr[0, 0]
    assert alone.log10_lr[0] == pytest.approx(sister_lr)
    assert list(beside.weights) == [1.0, 0.5]
    assert beside.relative_log10_lr[1, 0] == pytest.approx(sister_lr)
    assert beside.log10_lr[0] == pytest.approx(beside.relative_log10_lr[0, 0] + 0.5 * sister_lr)
    evidence = scoring.rank(beside, 1)[0].evidence
    assert [e.fusion_weight for e in evidence] == [1.0, 0.5]
    assert [e.calibration for e in evidence] == ["father-son", "sibling"]  # no "sister" calibration: borrowed


def test_calibration_follows_the_candidates_sex_and_falls_back_when_unknown_or_disagreeing():
    records = [
        record("son", "son/1", kinship=DAD_KIN, sex=Sex.MALE),
        record("daughter", "daughter/1", kinship=DAD_KIN, sex=Sex.FEMALE),
        record("unknown", "unknown/1", kinship=DAD_KIN, sex=Sex.UNSPECIFIED),
        record("mixed", "mixed/1", kinship=DAD_KIN, sex=Sex.MALE),
        record("mixed", "mixed/2", kinship=DAD_KIN, sex=Sex.FEMALE),
    ]
    scores = scoring.score_candidates([kin_relative(F, DAD_KIN)], records, {}, calibrated())
    names = dict(zip(scores.person_ids, scores.calibrations[0], strict=True))
    assert names == {"son": "father-son", "daughter": "father-daughter", "unknown": "father", "mixed": "father"}


def test_self_is_scored_on_identity_and_discounted_for_its_age_gap():
    photo = unit(1, 0.3, 0)
    gallery = [record("same", "same/1", identity=unit(1, 0.3, 0), kinship=unit(0, 0, 0, 1))]
    fresh = scoring.score_candidates(
        [relative_faces(SELF, photo[None, :], unit(1, 0, 0, 0)[None, :])], gallery, {}, calibrated()
    )
    old = scoring.score_candidates(
        [relative_faces(SELF, photo[None, :], unit(1, 0, 0, 0)[None, :], age_gap_years=[15.0])],
        gallery,
        {},
        calibrated(),
    )
    assert fresh.similarity[0, 0] == pytest.approx(1.0)
    assert fresh.relative_log10_lr[0, 0] == pytest.approx(self_llr(1.0))
    assert old.relative_log10_lr[0, 0] == pytest.approx(self_llr(1.0) / 2)  # half-life 15 years
    assert fresh.similarity_model_ids == (MODEL,) and fresh.calibrations[0, 0] == "self"


def test_kin_evidence_names_the_kinship_model_and_self_the_identity_model():
    family = [kin_relative(F, DAD_KIN), relative_faces(SELF, unit(0, 0, 1)[None, :], unit(0, 0, 1, 0)[None, :])]
    ranked = scoring.rank(scoring.score_candidates(family, [CHILD], {"child": {1}}, calibrated()), 1)[0]
    assert [e.similarity_model_id for e in ranked.evidence] == [KIN, MODEL]
    assert [e.retrieved for e in ranked.evidence] == [False, True]
    assert [e.record_id for e in ranked.evidence] == ["child/1", "child/1"]
    assert ranked.evidence[1].similarity == pytest.approx(1.0)  # identity space: the child's own identity vector


def test_a_candidate_without_a_kinship_vector_gets_no_kin_evidence():
    legacy = record("legacy", "legacy/1", identity=unit(1, 0, 0))  # enrolled before the artifact
    scores = scoring.score_candidates([kin_relative(F, DAD_KIN)], [legacy, CHILD], {}, calibrated())
    c = column(scores, "legacy")
    assert (scores.relative_log10_lr[0, c], scores.similarity[0, c], scores.record_ids[0, c]) == (0.0, 0.0, "")
    ranked = scoring.rank(scores, 2)
    assert ranked[1].person_id == "legacy" and ranked[1].attributes.birth_year == 1990


def test_posterior_strong_flag_and_ranking_follow_the_fused_lr():
    config = calibrated(prior_probability=0.01, strong_candidate_log10_lr=1.5)
    scores = scoring.score_candidates([kin_relative(F, DAD_KIN)], GALLERY, {}, config)
    ranked = scoring.rank(scores, 3)
    assert [c.person_id for c in ranked] == ["decoy", "child", "stranger"]
    for c in ranked:
        assert c.score == pytest.approx(c.log10_likelihood_ratio)
        odds = 10 ** (c.log10_likelihood_ratio) * 0.01 / 0.99
        assert c.posterior_probability == pytest.approx(odds / (1 + odds))
        assert c.strong_candidate == (c.log10_likelihood_ratio >= 1.5)
    assert [c.strong_candidate for c in ranked] == [True, True, False]
    # No overflow at the extremes.
    assert scoring.posterior_probability(np.array([-400.0, 400.0]), 0.5).tolist() == [0.0, 1.0]


def test_ties_rank_by_person_id():
    records = [record(p, f"{p}/1", kinship=unit(1, 1, 0, 0)) for p in ("zed", "amy", "kim")]
    ranked = scoring.rank(scoring.score_candidates([kin_relative(F, DAD_KIN)], records, {}, calibrated()), 3)
    assert [c.person_id for c in ranked] == ["amy", "kim", "zed"]


def test_relative_log10_lr_is_the_same_arithmetic_as_score_candidates():
    photos = [DAD_KIN, unit(0.3, 0.1, 1, 0)]
    rel = kin_relative(F, *photos, quality=[0.8, 0.3])
    scores = scoring.score_candidates([rel], [CHILD], {}, calibrated())
    sims = [float(np.dot(p, CHILD.kinship_embedding)) for p in photos]
    direct = scoring.relative_log10_lr(F, sims, hand_calibration(), candidate_sex=Sex.MALE, quality=[0.8, 0.3])
    assert direct == pytest.approx(scores.relative_log10_lr[0, 0])
    assert scoring.fuse([[direct]], [1.0]) == pytest.approx(scores.log10_lr)


def test_uncalibrated_scoring_says_so_and_gives_no_evidence():
    config = ScoringConfig()
    family = [relative_faces(F, unit(1, 0, 0)[None, :]), relative_faces(M, unit(0, 1, 0)[None, :])]
    scores = scoring.score_candidates(family, [record("x", "x/1", identity=unit(1, 1, 0))], {}, config, model_id="m")
    (cand,) = scoring.rank(scores, 5)
    assert not config.calibrated and "UNCALIBRATED" in config.fusion_method
    assert config.fusion_method.startswith("mean-max-cosine-v1:")
    assert cand.score == pytest.approx(2**-0.5)
    assert (cand.log10_likelihood_ratio, cand.strong_candidate) == (0.0, False)
    assert cand.posterior_probability == pytest.approx(config.prior_probability)
    info = config.info("m")
    assert (info.calibrated, info.artifact_id, info.identity_model_id) == (False, "", "m")


def test_a_config_refuses_what_it_cannot_score_with():
    from kinship.artifacts import ArtifactError, Calibration

    with pytest.raises(ValueError, match="prior_probability"):
        ScoringConfig(prior_probability=1.0)
    partial = Calibration("cal-x", "m", {k: v for k, v in hand_calibration().relations.items() if k != "self"})
    with pytest.raises(ArtifactError, match="no self calibration"):
        calibrated(calibration=partial)


def test_kinship_vectors_of_another_length_are_refused():
    from kinship.runtime.errors import FailedPrecondition

    with pytest.raises(FailedPrecondition, match="disagree on the model"):
        scoring.score_candidates([kin_relative(F, unit(1, 0, 0, 0, 0))], [CHILD], {}, calibrated())
