"""Fusion on simulated families (kinship.simulation): what issue 5 asks of it, measured.

Each family's missing child is hidden in a gallery of every family's child plus
unrelated distractors; the question is asked with the father alone, then with both
parents. The calibration is the equal-variance Gaussian likelihood ratio of the
simulator's own kinship targets (kin mean 0.32, non-kin 0, sd about 0.185):
ln LR(s) = (m1 - m0) / sd^2 * (s - (m0 + m1) / 2).
"""

from __future__ import annotations

import numpy as np
import pytest

from kinship.artifacts import Calibration, RelationCalibration
from kinship.ranker.domain import scoring
from kinship.ranker.domain.model import GalleryRecord, PersonAttributes, Relation, Sex
from kinship.ranker.domain.scoring import ScoringConfig, relative_faces
from kinship.simulation import KINSHIP_TARGETS, SimulationParams, distractors, simulate_families

FAMILIES = 100
DISTRACTORS = 900


def simulated_calibration() -> Calibration:
    t = KINSHIP_TARGETS
    variance = ((t.parent_child_sd + t.nonkin_sd) / 2) ** 2
    slope = (t.parent_child_mean - t.nonkin_mean) / variance
    intercept = -slope * (t.parent_child_mean + t.nonkin_mean) / 2

    def relation(name: str, model: str) -> RelationCalibration:
        return RelationCalibration(name, model, slope, intercept, 3.0, "simulator targets", 1000, 1000)

    names = {"father": "kinship", "mother": "kinship", "sibling": "kinship", "self": "identity"}
    return Calibration("cal-sim", "gaussian (test)", {n: relation(n, m) for n, m in names.items()})


@pytest.fixture(scope="module")
def world():
    params = SimulationParams(seed=5, max_siblings=0, self_photo_probability=0.0)
    families = simulate_families(FAMILIES, params)
    records = [
        GalleryRecord(
            f"{f.child.person_id}:0",
            f.child.person_id,
            f.child.identity[0],
            PersonAttributes(sex=Sex(f.child.sex)),
            kinship_embedding=f.child.kinship[0],
        )
        for f in families
    ]
    chunk = next(distractors(DISTRACTORS, params))  # enrolled with the artifact: both vectors
    records += [
        GalleryRecord(
            f"{pid}:0", str(pid), chunk.identity[k], PersonAttributes(sex=Sex(chunk.sex[k])), chunk.kinship[k]
        )
        for k, pid in enumerate(chunk.ids)
    ]
    config = ScoringConfig(calibration=simulated_calibration(), identity_model_id="sim-id", kinship_model_id="sim-kin")
    return families, records, config


def parent(person, relation):
    return relative_faces(relation, person.identity, person.kinship, quality=person.quality)


def rank_of(scores, person_id: str) -> int:
    c = scores.person_ids.index(person_id)
    return 1 + int(np.sum(scores.log10_lr > scores.log10_lr[c]))


def test_the_second_parent_raises_the_true_childs_rank_and_lr(world):
    families, records, config = world
    alone_ranks, both_ranks = [], []
    for f in families:
        father, mother = parent(f.father, Relation.FATHER), parent(f.mother, Relation.MOTHER)
        alone = scoring.score_candidates([father], records, config=config)
        both = scoring.score_candidates([father, mother], records, config=config)
        c = both.person_ids.index(f.child.person_id)
        mother_lr = both.relative_log10_lr[1, c]
        # Two parents count in full: the fused LR moves by exactly the mother's evidence.
        assert both.log10_lr[c] == pytest.approx(alone.log10_lr[c] + mother_lr)
        alone_ranks.append(rank_of(alone, f.child.person_id))
        both_ranks.append(rank_of(both, f.child.person_id))
    alone_ranks, both_ranks = np.array(alone_ranks), np.array(both_ranks)
    gallery = len(records)
    print(f"\nmean rank of the true child in {gallery}: father {alone_ranks.mean():.1f}, both {both_ranks.mean():.1f}")
    assert both_ranks.mean() < 0.7 * alone_ranks.mean()
    assert np.mean(both_ranks <= 10) > np.mean(alone_ranks <= 10)


def test_a_duplicated_photo_changes_no_score_on_simulated_families(world):
    families, records, config = world
    for f in families[:20]:
        once = scoring.score_candidates([parent(f.father, Relation.FATHER)], records, config=config)
        doubled = relative_faces(
            Relation.FATHER,
            np.repeat(f.father.identity, 2, axis=0),
            np.repeat(f.father.kinship, 2, axis=0),
            quality=np.repeat(f.father.quality, 2),
        )
        twice = scoring.score_candidates([doubled], records, config=config)
        np.testing.assert_allclose(twice.log10_lr, once.log10_lr)
        np.testing.assert_array_equal(twice.photo_index, once.photo_index)
