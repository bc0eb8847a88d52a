"""Exact scoring and the uncalibrated fusion (mean-max-cosine) on 3-d unit vectors whose answers are known by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kinship.ranker.domain import scoring
from kinship.ranker.domain.model import GalleryRecord, PersonAttributes, Relation, Relative
from tests.unit.ranker.ranker_fakes import face, unit

R2 = 1 / math.sqrt(2)


def relative_faces(label, relation, *vectors):
    rel = Relative(label=label, relation=relation, photos=tuple(b"p" for _ in vectors))
    return scoring.RelativeFaces(rel, np.stack(vectors))


def record(person, record_id, vector, year=None):
    return GalleryRecord(record_id, person, np.asarray(vector, dtype=np.float32), PersonAttributes(birth_year=year))


FATHER = relative_faces("father", Relation.FATHER, unit(1, 0, 0))
MOTHER = relative_faces("mother", Relation.MOTHER, unit(0, 1, 0), unit(0, 0, 1))
RECORDS = [
    record("A", "a1", unit(1, 0, 0), year=1990),
    record("B", "b2", unit(1, 0, 1), year=1992),
    record("B", "b1", unit(0, 1, 0), year=1991),
    record("C", "c1", unit(1, 1, 0), year=1993),
]


def test_most_prominent_face_weighs_area_by_detection_score():
    small_sure = face(unit(1, 0, 0), size=40, score=0.99)  # 1584
    large_unsure = face(unit(0, 1, 0), size=100, score=0.5)  # 5000
    medium = face(unit(0, 0, 1), size=70, score=0.9)  # 4410
    assert scoring.most_prominent([small_sure, large_unsure, medium]) is large_unsure
    assert scoring.most_prominent([]) is None


def test_similarity_is_max_over_photos_and_records_and_score_is_the_mean():
    scores = scoring.score_candidates([FATHER, MOTHER], RECORDS, {"A": {0}, "B": {1}})
    assert scores.person_ids == ["A", "B", "C"]
    expected = np.array([[1.0, R2, R2], [0.0, 1.0, R2]])
    np.testing.assert_allclose(scores.similarity, expected, atol=1e-6)
    np.testing.assert_allclose(scores.score, expected.mean(axis=0), atol=1e-6)
    # B: the father's best is record b2; the mother's best is her photo 0 against b1.
    b = scores.person_ids.index("B")
    assert scores.record_ids[0, b] == "b2"
    assert (scores.record_ids[1, b], scores.photo_index[1, b]) == ("b1", 0)


def test_rank_orders_by_score_and_explains_each_relative_in_request_order():
    ranked = scoring.rank(scoring.score_candidates([FATHER, MOTHER], RECORDS, {"A": {0}, "B": {1}}), top_n=10)
    assert [(c.person_id, c.rank) for c in ranked] == [("B", 1), ("C", 2), ("A", 3)]
    assert ranked[0].score == pytest.approx((R2 + 1.0) / 2)
    b = ranked[0]
    assert [e.label for e in b.evidence] == ["father", "mother"]
    assert [e.relation for e in b.evidence] == [Relation.FATHER, Relation.MOTHER]
    assert [e.retrieved for e in b.evidence] == [False, True]
    assert [(e.record_id, e.photo_index) for e in b.evidence] == [("b2", 0), ("b1", 0)]
    assert b.evidence[1].similarity == pytest.approx(1.0)
    # Attributes come from the record that matched best (b1, the mother's 1.0).
    assert b.attributes.birth_year == 1991
    a = ranked[2]
    assert [e.retrieved for e in a.evidence] == [True, False]


def test_the_best_photo_of_a_relative_is_reported():
    mother = relative_faces("mother", Relation.MOTHER, unit(0, 1, 0), unit(0, 0, 1))
    ranked = scoring.rank(scoring.score_candidates([mother], [record("D", "d1", unit(0, 0.2, 1))], {}), top_n=1)
    assert ranked[0].evidence[0].photo_index == 1


def test_ties_break_by_person_id_and_top_n_truncates():
    same = unit(0.3, 0.4, 0.5)
    records = [record(p, p + "-r", same) for p in ("zed", "amy", "kim")]
    scores = scoring.score_candidates([FATHER], records, {})
    ranked = scoring.rank(scores, top_n=2)
    assert [c.person_id for c in ranked] == ["amy", "kim"]
    assert [c.rank for c in ranked] == [1, 2]
    assert len(scores) == 3


def test_unnormalised_vectors_still_give_cosines():
    scores = scoring.score_candidates([FATHER], [record("A", "a", np.array([5.0, 0.0, 0.0]))], {})
    assert scores.similarity[0, 0] == pytest.approx(1.0)


def test_no_records_gives_no_candidates():
    scores = scoring.score_candidates([FATHER], [], {})
    assert len(scores) == 0
    assert scoring.rank(scores, top_n=5) == ()


def test_embeddings_of_another_length_are_refused_not_crashed():
    from kinship.runtime.errors import FailedPrecondition

    with pytest.raises(FailedPrecondition, match="disagree on the model"):
        scoring.score_candidates([FATHER], [record("A", "a", np.ones(4) / 2)], {})
