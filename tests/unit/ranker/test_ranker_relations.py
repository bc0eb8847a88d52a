"""Which calibration each relation uses (per-sex siblings, grandparents), and grandparents end to end.

The old artifact's calibration (tests/kinship_artifact.py) has father, mother, their
per-sex names, sibling and self; a new artifact adds per-sex siblings and grandparents.
"""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np
import pytest

from kinship.artifacts import Calibration
from kinship.ranker.adapters.convert import RELATION_TO_PB, relation_from_pb
from kinship.ranker.domain import scoring
from kinship.ranker.domain.calibration import REQUIRED, calibration_name
from kinship.ranker.domain.model import (
    FindRelativesInput,
    GalleryRecord,
    MissingPerson,
    PersonAttributes,
    Relation,
    RelativeInput,
    Sex,
)
from kinship.ranker.domain.scoring import ScoringConfig, fusion_weights, relative_faces
from kinship.ranker.domain.service import KinshipRanker, RankerOptions
from kinship.runtime.errors import FailedPrecondition, InvalidArgument
from kinship.v1 import common_pb2
from tests.kinship_artifact import hand_calibration
from tests.unit.ranker.ranker_fakes import FakeEmbedder, FakeGallery, calibrated, face, unit

F, M, B, S, SIB, SELF = (
    Relation.FATHER,
    Relation.MOTHER,
    Relation.BROTHER,
    Relation.SISTER,
    Relation.SIBLING,
    Relation.SELF,
)
GF, GM = Relation.GRANDFATHER, Relation.GRANDMOTHER
MALE, FEMALE, UNKNOWN = Sex.MALE, Sex.FEMALE, Sex.UNSPECIFIED

NEW_NAMES = (
    "brother",
    "sister",
    "brother-brother",
    "brother-sister",
    "sister-sister",
    "grandfather",
    "grandfather-grandson",
    "grandfather-granddaughter",
    "grandmother",
    "grandmother-grandson",
    "grandmother-granddaughter",
)


def with_names(*names: str, without: tuple[str, ...] = (), calibration_id: str = "cal-new") -> Calibration:
    """The hand calibration plus `names` (each a copy of father's), less `without`."""
    old = hand_calibration()
    relations = {k: v for k, v in old.relations.items() if k not in without}
    for name in names:
        relations[name] = dataclasses.replace(old.relations["father"], name=name, fitted_on=f"{name} pairs (test)")
    return Calibration(calibration_id, old.method, relations)


OLD = hand_calibration()
NEW = with_names(*NEW_NAMES)


@pytest.mark.parametrize(
    ("relation", "sex", "new", "old"),
    [
        (F, MALE, "father-son", "father-son"),
        (F, FEMALE, "father-daughter", "father-daughter"),
        (F, UNKNOWN, "father", "father"),
        (M, MALE, "mother-son", "mother-son"),
        (M, FEMALE, "mother-daughter", "mother-daughter"),
        (M, UNKNOWN, "mother", "mother"),
        (B, MALE, "brother-brother", "sibling"),
        (B, FEMALE, "brother-sister", "sibling"),
        (B, UNKNOWN, "brother", "sibling"),
        (S, FEMALE, "sister-sister", "sibling"),
        (S, MALE, "brother-sister", "sibling"),
        (S, UNKNOWN, "sister", "sibling"),
        (SIB, MALE, "sibling", "sibling"),
        (SIB, FEMALE, "sibling", "sibling"),
        (SIB, UNKNOWN, "sibling", "sibling"),
        (SELF, MALE, "self", "self"),
        (SELF, UNKNOWN, "self", "self"),
        (GF, MALE, "grandfather-grandson", None),
        (GF, FEMALE, "grandfather-granddaughter", None),
        (GF, UNKNOWN, "grandfather", None),
        (GM, MALE, "grandmother-grandson", None),
        (GM, FEMALE, "grandmother-granddaughter", None),
        (GM, UNKNOWN, "grandmother", None),
    ],
)
def test_the_most_specific_calibration_and_what_an_old_artifact_falls_back_to(relation, sex, new, old):
    assert calibration_name(relation, sex, NEW) == new
    if old is None:  # nothing to fall back to in an old artifact: refused, never borrowed
        with pytest.raises(FailedPrecondition):
            calibration_name(relation, sex, OLD)
    else:
        assert calibration_name(relation, sex, OLD) == old


@pytest.mark.parametrize(
    ("relation", "sex", "names", "expected"),
    [
        # Per-sex sibling names missing: the relative's own name, then sibling.
        (B, MALE, ("brother",), "brother"),
        (B, FEMALE, ("brother", "sister-sister"), "brother"),
        (S, MALE, ("sister", "brother-brother"), "sister"),
        (S, FEMALE, ("brother-sister",), "sibling"),  # brother-sister is for a sister's brother, not her sister
        (B, FEMALE, ("brother-sister",), "brother-sister"),
        (S, MALE, ("brother-sister",), "brother-sister"),
        # Grandparents: the generic name where the sex is unknown or its pair name absent.
        (GF, MALE, ("grandfather",), "grandfather"),
        (GF, FEMALE, ("grandfather", "grandfather-grandson"), "grandfather"),
        (GM, MALE, ("grandmother", "grandfather-grandson"), "grandmother"),
        (GM, FEMALE, ("grandmother-granddaughter",), "grandmother-granddaughter"),
    ],
)
def test_fallbacks_when_the_specific_calibration_is_absent(relation, sex, names, expected):
    assert calibration_name(relation, sex, with_names(*names)) == expected


@pytest.mark.parametrize(
    ("relation", "sex", "names"),
    [
        (GF, MALE, ()),
        (GF, UNKNOWN, ("grandfather-grandson", "grandfather-granddaughter")),  # no name for an unknown sex
        (GF, FEMALE, ("grandfather-grandson", "grandmother", "grandmother-granddaughter")),  # never the other one's
        (GM, MALE, ("grandfather", "grandfather-grandson")),
    ],
)
def test_a_grandparent_without_its_calibration_is_refused_naming_it(relation, sex, names):
    with pytest.raises(FailedPrecondition) as caught:
        calibration_name(relation, sex, with_names(*names, calibration_id="cal-old-7"))
    message = caught.value.message
    assert relation.value in message and "cal-old-7" in message
    assert "artifact with grandparent calibrations" in message
    assert caught.value.status_name == "FAILED_PRECONDITION"


def test_grandparents_stay_optional_in_an_artifact():
    assert set(REQUIRED) == {"father", "mother", "sibling", "self"}
    calibrated(calibration=OLD)  # an old artifact still loads
    calibrated(calibration=NEW)  # and so does one with every new name (all on the kinship model)


def test_relation_values_convert_both_ways():
    assert relation_from_pb(common_pb2.RELATION_GRANDFATHER, "relatives[0].relation") is GF
    assert relation_from_pb(common_pb2.RELATION_GRANDMOTHER, "relatives[0].relation") is GM
    assert RELATION_TO_PB[GF] == 7 and RELATION_TO_PB[GM] == 8
    with pytest.raises(InvalidArgument, match="grandfather, grandmother or self"):
        relation_from_pb(9, "relatives[0].relation")


# --- fusion ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("relations", "expected"),
    [
        ([GF], [0.5]),
        ([GM], [0.5]),
        ([GF, GM], [0.5, 0.5]),  # two people: each its own weight
        ([GF, GF], [0.25, 0.25]),  # one relation given twice shares one weight
        ([F, GF], [1.0, 0.25]),  # beside a parent, halved
        ([M, GF], [1.0, 0.25]),  # any parent, whichever side the grandparent is on
        ([F, M, GF, GM], [1.0, 1.0, 0.25, 0.25]),
        ([F, GM, GM], [1.0, 0.125, 0.125]),
        ([B, GF], [1.0, 0.5]),  # a sibling is no parent: neither discounts the other
        ([SELF, GM], [1.0, 0.5]),
        ([F, B, GF], [1.0, 0.5, 0.25]),  # siblings beside a parent as before
    ],
)
def test_grandparent_fusion_weights(relations, expected):
    assert fusion_weights(relations) == pytest.approx(expected)


DAD_KIN, GRANDPA_KIN = unit(1, 0, 0, 0), unit(1, 0.5, 0, 0)


def _record(person, kinship, sex=MALE, identity=(0, 0, 1)):
    identity = unit(*identity).astype(np.float64)
    return GalleryRecord(f"{person}/1", person, identity, PersonAttributes(sex=sex), kinship_embedding=kinship)


def _kin(relation, kinship):
    return relative_faces(relation, unit(0, 1, 0)[None, :], np.asarray(kinship)[None, :])


def test_a_grandparent_counts_half_alone_and_a_quarter_beside_a_parent():
    config = calibrated(calibration=NEW)
    child = _record("child", unit(1, 1, 0, 0))
    alone = scoring.score_candidates([_kin(GF, GRANDPA_KIN)], [child], {}, config)
    beside = scoring.score_candidates([_kin(F, DAD_KIN), _kin(GF, GRANDPA_KIN)], [child], {}, config)
    grandpa_lr = alone.relative_log10_lr[0, 0]
    assert alone.log10_lr[0] == pytest.approx(0.5 * grandpa_lr)
    assert beside.relative_log10_lr[1, 0] == pytest.approx(grandpa_lr)
    assert beside.log10_lr[0] == pytest.approx(beside.relative_log10_lr[0, 0] + 0.25 * grandpa_lr)
    evidence = scoring.rank(beside, 1)[0].evidence
    assert [(e.relation, e.fusion_weight, e.calibration) for e in evidence] == [
        (F, 1.0, "father-son"),
        (GF, 0.25, "grandfather-grandson"),
    ]


def test_each_candidate_gets_its_sexs_grandparent_calibration():
    config = calibrated(calibration=NEW)
    records = [_record("boy", GRANDPA_KIN), _record("girl", GRANDPA_KIN, FEMALE), _record("who", GRANDPA_KIN, UNKNOWN)]
    scores = scoring.score_candidates([_kin(GM, GRANDPA_KIN)], records, {}, config)
    names = dict(zip(scores.person_ids, scores.calibrations[0], strict=True))
    assert names == {"boy": "grandmother-grandson", "girl": "grandmother-granddaughter", "who": "grandmother"}


def test_uncalibrated_grandparents_count_like_any_relative():
    config = ScoringConfig()
    family = [relative_faces(F, unit(1, 0, 0)[None, :]), relative_faces(GM, unit(0, 1, 0)[None, :])]
    scores = scoring.score_candidates(family, [_record("x", None, identity=(1, 1, 0))], {}, config, model_id="m")
    (cand,) = scoring.rank(scores, 1)
    assert [e.fusion_weight for e in cand.evidence] == [0.5, 0.5]
    assert cand.score == pytest.approx(2**-0.5) and cand.log10_likelihood_ratio == 0.0
    assert [e.calibration for e in cand.evidence] == ["", ""]


# --- the service refuses before any work --------------------------------------------------

GRANDPA, DAD = b"grandpa.jpg", b"dad.jpg"


@pytest.fixture
def embedder() -> FakeEmbedder:
    return FakeEmbedder(
        {
            GRANDPA: [face(unit(1, 0, 0), kinship=GRANDPA_KIN)],
            DAD: [face(unit(0, 1, 0), kinship=DAD_KIN)],
        }
    )


@pytest.fixture
def gallery() -> FakeGallery:
    g = FakeGallery()
    g.add("grandson", "gs/a", unit(0, 0, 1), kinship=unit(1, 0.8, 0, 0), sex=Sex.MALE, birth_year=1995)
    g.add("other", "o/a", unit(0, 0.3, 1), kinship=unit(0, 0, 1, 0), sex=Sex.MALE, birth_year=1994)
    return g


def _find(ranker, *relatives, sex=UNKNOWN):
    request = FindRelativesInput(list(relatives), MissingPerson(sex=sex))
    return asyncio.run(ranker.find_relatives(request))


def _rel(relation, photo):
    return RelativeInput(label="", relation=relation, photos=[photo])


def test_a_grandparent_is_refused_before_any_work_without_a_grandparent_calibration(embedder, gallery):
    ranker = KinshipRanker(embedder, gallery, RankerOptions(candidate_k=2), calibrated())  # an old artifact
    with pytest.raises(FailedPrecondition) as caught:
        _find(ranker, _rel(F, DAD), _rel(GM, GRANDPA))
    message = caught.value.message
    assert "grandmother" in message and "cal-test" in message and "grandparent calibrations" in message
    assert caught.value.reason == "RELATION_NOT_CALIBRATED"
    assert embedder.calls == [] and gallery.searches == []
    # The same family without the grandmother is scored as before.
    assert _find(ranker, _rel(F, DAD)).candidates


def test_a_grandparent_with_its_calibration_is_scored(embedder, gallery):
    ranker = KinshipRanker(embedder, gallery, RankerOptions(candidate_k=2), calibrated(calibration=NEW))
    ranking = _find(ranker, _rel(F, DAD), _rel(GF, GRANDPA), sex=MALE)
    best = ranking.candidates[0]
    assert best.person_id == "grandson"
    assert [(e.label, e.fusion_weight, e.calibration) for e in best.evidence] == [
        ("father", 1.0, "father-son"),
        ("grandfather", 0.25, "grandfather-grandson"),
    ]


def test_only_sex_specific_grandparent_calibrations_serve_a_known_sex_only(embedder, gallery):
    specific = with_names("grandfather-grandson", "grandfather-granddaughter")
    ranker = KinshipRanker(embedder, gallery, RankerOptions(candidate_k=2), calibrated(calibration=specific))
    assert _find(ranker, _rel(GF, GRANDPA), sex=MALE).candidates[0].evidence[0].calibration == "grandfather-grandson"
    with pytest.raises(FailedPrecondition, match="has no 'grandfather' calibration"):
        _find(ranker, _rel(GF, GRANDPA))  # the missing person's sex unknown: a candidate of unknown sex could come


def test_uncalibrated_ranker_scores_a_grandparent(embedder, gallery):
    ranker = KinshipRanker(embedder, gallery, RankerOptions(candidate_k=2))
    ranking = _find(ranker, _rel(GM, GRANDPA))
    assert ranking.candidates and not ranking.scoring.calibrated
    assert ranking.candidates[0].evidence[0].relation is GM
