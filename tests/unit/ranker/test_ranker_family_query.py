"""The family query (issue 26): its inner product is the scorer's unbounded fused score, and it
serves FindRelatives from the gallery's combined collection; soft facts keep a candidate with a
stated penalty."""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kinship.artifacts import Calibration, RelationCalibration
from kinship.family_vectors import combined_vectors, family_model_id, split_combined
from kinship.ranker.domain.family_query import family_queries, family_query
from kinship.ranker.domain.model import (
    FindRelativesInput,
    GalleryRecord,
    MissingPerson,
    PersonAttributes,
    Relation,
    RelativeInput,
    Sex,
)
from kinship.ranker.domain.scoring import ScoringConfig, relative_faces, score_candidates
from kinship.ranker.domain.service import KinshipRanker, RankerOptions
from tests.kinship_artifact import CALIBRATION_NAMES
from tests.unit.ranker.ranker_fakes import KIN, FakeEmbedder, FakeGallery, calibrated, face, unit

KIN_DIM, ID_DIM = 6, 5
MORE_NAMES = (
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
RELATIONS = [
    Relation.FATHER,
    Relation.MOTHER,
    Relation.BROTHER,
    Relation.SISTER,
    Relation.SIBLING,
    Relation.GRANDFATHER,
    Relation.GRANDMOTHER,
    Relation.SELF,
]


def random_calibration(rng: np.random.Generator) -> Calibration:
    """Every calibration name with random slopes and bounds too wide to bite (the unbounded score)."""
    relations = {
        name: RelationCalibration(
            name=name,
            model="identity" if name == "self" else "kinship",
            slope=float(rng.uniform(-2, 15)),
            intercept=float(rng.uniform(-6, 2)),
            identity_slope=0.0 if name == "self" else float(rng.uniform(-3, 6)),
            max_abs_log10_lr=1e9,
            fitted_on="random (test)",
            kin_pairs=1,
            non_kin_pairs=1,
        )
        for name in (*CALIBRATION_NAMES, *MORE_NAMES, "self")
        # Specific names dropped at random: the fallbacks (brother -> sibling, ...) serve then.
        if name in CALIBRATION_NAMES or name == "self" or rng.random() < 0.7
    }
    for grandparent in ("grandfather", "grandmother"):  # a grandparent is never borrowed: keep its own
        relations.setdefault(grandparent, dataclasses.replace(relations["father"], name=grandparent))
    return Calibration("cal-random", "random", relations, self_age_gap_half_life_years=float(rng.uniform(5, 30)))


def rows(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    v = rng.standard_normal((n, d))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), sex=st.sampled_from(list(Sex)))
def test_family_inner_product_is_the_unbounded_fused_score(seed, sex):
    rng = np.random.default_rng(seed)
    calibration = random_calibration(rng)
    family = []
    for relation in rng.choice(RELATIONS, size=int(rng.integers(1, 5))):
        photos = int(rng.integers(1, 4))
        identity = rows(rng, photos, ID_DIM)
        if photos > 1 and rng.random() < 0.3:
            identity[1] = identity[0]  # a duplicated photo counts once
        gaps = [None if rng.random() < 0.5 else float(rng.uniform(0, 40)) for _ in range(photos)]
        family.append(
            relative_faces(
                Relation(relation),
                identity,
                rows(rng, photos, KIN_DIM),
                quality=rng.uniform(0, 1, photos),
                age_gap_years=gaps,
                label=f"r{len(family)}",
            )
        )
    config = ScoringConfig(calibration=calibration, identity_model_id="id", kinship_model_id="kin")
    n = 12
    kinship, identity = rows(rng, n, KIN_DIM), rows(rng, n, ID_DIM)
    records = [
        GalleryRecord(f"r{c:02d}", f"p{c:02d}", identity[c], PersonAttributes(sex=sex), kinship_embedding=kinship[c])
        for c in range(n)
    ]
    scores = score_candidates(family, records, config=config)
    query = family_query(family, calibration, sex)
    np.testing.assert_allclose(query.score(kinship, identity), scores.log10_lr, rtol=1e-9, atol=1e-9)
    # Through the stored combined vectors, as the gallery holds them (float32).
    stored = combined_vectors(kinship, identity)
    # float32 storage rounds at about 1e-7 of the query's length.
    scale = 1.0 + float(np.linalg.norm(np.concatenate([query.kinship, query.identity])))
    np.testing.assert_allclose(query.score_combined(stored), scores.log10_lr, rtol=0, atol=1e-5 * scale)
    # A COSINE search with the unit query ranks as the score does.
    order = np.argsort(-(stored.astype(np.float64) @ query.search_vector.astype(np.float64)))
    assert np.all(np.diff(scores.log10_lr[order]) <= 1e-5 * scale)


def test_split_combined_gives_the_unit_vectors_back():
    rng = np.random.default_rng(3)
    k, i = rows(rng, 4, KIN_DIM), rows(rng, 4, ID_DIM)
    back_k, back_i = split_combined(combined_vectors(k, i), KIN_DIM)
    np.testing.assert_allclose(back_k, k, atol=1e-6)
    np.testing.assert_allclose(back_i, i, atol=1e-6)
    assert np.allclose(np.linalg.norm(combined_vectors(k, i), axis=1), 1.0, atol=1e-6)


def test_one_query_serves_every_sex_only_where_the_calibrations_agree():
    rng = np.random.default_rng(5)
    calibration = random_calibration(rng)
    father = relative_faces(Relation.FATHER, rows(rng, 1, ID_DIM), rows(rng, 1, KIN_DIM))
    me = relative_faces(Relation.SELF, rows(rng, 1, ID_DIM), rows(rng, 1, KIN_DIM))
    assert [q.sex for q in family_queries([father], calibration, Sex.UNSPECIFIED)] == [
        Sex.MALE,
        Sex.FEMALE,
        Sex.UNSPECIFIED,
    ]
    assert [q.sex for q in family_queries([father], calibration, Sex.FEMALE)] == [Sex.FEMALE]
    assert [q.sex for q in family_queries([me], calibration, Sex.UNSPECIFIED)] == [Sex.UNSPECIFIED]


# --- Served through the ranker, over the fakes --------------------------------------------------

DAD = b"dad.jpg"
DAD_ID, DAD_KIN = unit(1, 0, 0), unit(1, 0, 0, 0)


def gallery_with_family_collection() -> FakeGallery:
    g = FakeGallery()
    people = [
        # The true son, registered with a false birth year (1980, decades before the window).
        ("son", unit(0.3, 0, 1), unit(1, 0.2, 0, 0), 1980),
        ("in-window", unit(0, 1, 0.2), unit(0.2, 1, 0, 0), 1993),
        ("stranger", unit(0, 0.2, 1), unit(0, 0, 1, 0.3), 1994),
    ]
    for person, identity, kinship, born in people:
        g.add(person, f"{person}/a", identity, kinship=kinship, sex=Sex.MALE, birth_year=born)
    for record in g.collections[g.kinship_model]:
        identity = next(r for r in g.records if r.record_id == record.record_id).embedding
        combined = combined_vectors(record.embedding, identity)[0]
        g.collections.setdefault(family_model_id(KIN), []).append(
            GalleryRecord(record.record_id, record.person_id, combined, record.attributes)
        )
    return g


def find(gallery: FakeGallery, missing: MissingPerson, **options):
    ranker = KinshipRanker(
        FakeEmbedder({DAD: [face(DAD_ID, kinship=DAD_KIN)]}), gallery, RankerOptions(**options), calibrated()
    )
    relatives = [RelativeInput(label="", relation=Relation.FATHER, photos=[DAD])]
    return asyncio.run(ranker.find_relatives(FindRelativesInput(relatives, missing_person=missing, top_n=10)))


def test_the_family_query_searches_the_combined_collection_once_per_filter():
    gallery = gallery_with_family_collection()
    ranking = find(gallery, MissingPerson(sex=Sex.MALE))
    assert [s[0] for s in gallery.searches] == [family_model_id(KIN)]
    assert gallery.searches[0][2] == 1000  # the pool: max(10 x top_n, 1000)
    assert [c.person_id for c in ranking.candidates][0] == "son"
    assert all(e.retrieved for c in ranking.candidates for e in c.evidence)


def test_without_a_combined_collection_the_per_photo_union_serves():
    gallery = gallery_with_family_collection()
    del gallery.collections[family_model_id(KIN)]
    ranking = find(gallery, MissingPerson(sex=Sex.MALE))
    assert {s[0] for s in gallery.searches} == {gallery.identity_model, KIN}
    assert ranking.candidates[0].person_id == "son"


def test_a_gallery_whose_combined_collection_misses_faces_is_searched_per_photo():
    # A face enrolled after the others without its combined vector (an older client): the
    # family query would never find it, so the ranker searches per photo and finds it.
    gallery = gallery_with_family_collection()
    gallery.add("late", "late/a", unit(0.3, 0, 1), kinship=unit(1, 0.2, 0, 0), sex=Sex.MALE, birth_year=1980)
    ranking = find(gallery, MissingPerson(sex=Sex.MALE))
    assert {s[0] for s in gallery.searches} == {gallery.identity_model, KIN}
    assert "late" in [c.person_id for c in ranking.candidates]


def test_the_coverage_check_is_per_tenant_and_read_again_after_its_time():
    gallery = gallery_with_family_collection()
    ranker = KinshipRanker(FakeEmbedder({DAD: [face(DAD_ID, kinship=DAD_KIN)]}), gallery, RankerOptions(), calibrated())
    relatives = [RelativeInput(label="", relation=Relation.FATHER, photos=[DAD])]

    def ask(tenant: str = ""):
        request = FindRelativesInput(relatives, missing_person=MissingPerson(sex=Sex.MALE), top_n=10, tenant=tenant)
        return asyncio.run(ranker.find_relatives(request))

    ask()
    ask()
    assert gallery.counted == 1  # trusted for family_check_seconds
    assert [s[0] for s in gallery.searches] == [family_model_id(KIN)] * 2
    ask("agency-b")  # another tenant: its own count (an empty gallery is covered)
    assert gallery.counted == 2


@pytest.mark.parametrize("family_pool", [1000, 0])
def test_a_soft_birth_year_keeps_an_out_of_window_true_child_with_the_stated_penalty(family_pool):
    hard = find(gallery_with_family_collection(), MissingPerson(birth_year_min=1990, birth_year_max=1996))
    assert "son" not in [c.person_id for c in hard.candidates]  # the hard filter (the default) excludes him
    window = dict(birth_year_min=1990, birth_year_max=1996, soft_birth_year=True)
    soft = find(gallery_with_family_collection(), MissingPerson(**window), family_pool=family_pool)
    by_id = {c.person_id: c for c in soft.candidates}
    son = by_id["son"]
    (fact,) = son.facts
    assert fact.fact == "birth_year" and fact.years_outside == 10
    assert fact.log10_likelihood_ratio == pytest.approx(10 * -0.25)
    faces_only = sum(e.fusion_weight * e.log10_likelihood_ratio for e in son.evidence)
    assert son.log10_likelihood_ratio == pytest.approx(faces_only - 2.5)
    assert son.score == pytest.approx(son.log10_likelihood_ratio)
    assert by_id["in-window"].facts == ()
    # A stated penalty of its own: -0.1 per year.
    lenient = find(
        gallery_with_family_collection(),
        MissingPerson(**window, birth_year_log10_lr_per_year=-0.1),
        family_pool=family_pool,
    )
    son = next(c for c in lenient.candidates if c.person_id == "son")
    assert son.facts[0].log10_likelihood_ratio == pytest.approx(-1.0)


def test_soft_facts_cross_the_contract_both_ways():
    from kinship.ranker.domain.model import FactEvidence, RankedCandidate
    from kinship.ranker.transport import candidate_to_pb, missing_person_from_pb
    from kinship.v1 import common_pb2, ranker_pb2

    known = ranker_pb2.MissingPerson(
        sex=common_pb2.SEX_MALE,
        birth_year=common_pb2.BirthYearRange(min=1990, max=1996),
        soft=ranker_pb2.SoftFacts(birth_year=True, birth_year_log10_lr_per_year=-0.1),
    )
    missing = missing_person_from_pb(known)
    assert missing.soft_birth_year and not missing.soft_regions
    assert missing.birth_year_log10_lr_per_year == -0.1 and missing.region_log10_lr is None  # 0: the default
    fact = FactEvidence("birth_year", "born 1980, 10 year(s) outside 1990-1996", -1.0, 10)
    pb = candidate_to_pb(RankedCandidate("son", 1, -0.5, PersonAttributes(), (), -0.5, 0.1, False, (fact,)))
    assert [(f.fact, f.years_outside, f.log10_likelihood_ratio) for f in pb.facts] == [("birth_year", 10, -1.0)]
    assert not missing_person_from_pb(ranker_pb2.MissingPerson()).soft_birth_year  # hard by default
