"""KinshipRanker with a trained artifact's calibration, over fakes of the embedder and the gallery.

Identity vectors are 3-d and kinship vectors 4-d. The gallery: a son who resembles
the father and mother in kinship space, a lookalike who resembles the father in
identity space only, and people whose records fail the filters.
"""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from kinship.ranker.domain.model import (
    CompareKinshipInput,
    FindRelativesInput,
    MissingPerson,
    Photo,
    Relation,
    RelativeInput,
    Sex,
)
from kinship.ranker.domain.scoring import FUSION_METHOD
from kinship.ranker.domain.service import KinshipRanker, RankerOptions
from kinship.runtime.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from tests.unit.ranker.ranker_fakes import KIN, MODEL, FakeEmbedder, FakeGallery, calibrated, face, unit

DAD, MUM, KID, SON_NOW, BLURRY_DAD = b"dad.jpg", b"mum.jpg", b"kid.jpg", b"son-now.jpg", b"blurry-dad.jpg"
DAD_KIN, MUM_KIN = unit(1, 0, 0, 0), unit(0, 1, 0, 0)
SON_KIN, SON_ID = unit(1, 1, 0, 0), unit(0, 0, 1)


def rel(relation, *photos, label="", person_id=""):
    return RelativeInput(label=label, relation=relation, photos=list(photos), person_id=person_id)


@pytest.fixture
def embedder() -> FakeEmbedder:
    return FakeEmbedder(
        {
            DAD: [face(unit(1, 0, 0), kinship=DAD_KIN)],
            BLURRY_DAD: [face(unit(1, 0, 0.3), kinship=unit(1, 0, 0, 0.1), quality=0.05)],
            MUM: [face(unit(0, 1, 0), kinship=MUM_KIN)],
            KID: [face(unit(0.2, 0, 1), kinship=unit(0, 0, 1, 0))],  # the son as a child: identity near SON_ID
            SON_NOW: [face(SON_ID, kinship=SON_KIN)],
        }
    )


@pytest.fixture
def gallery() -> FakeGallery:
    g = FakeGallery()
    g.add("dad-1", "dad-1/a", unit(1, 0, 0), kinship=DAD_KIN, sex=Sex.MALE, birth_year=1960)  # the father himself
    g.add("son", "son/a", SON_ID, kinship=SON_KIN, sex=Sex.MALE, birth_year=1992, region="IT-MI")
    # A second record of the son, from another region and year: it fails the filter of the
    # region test and would look even more like the family.
    g.add("son", "son/old", SON_ID, kinship=unit(1, 1, 0, 0.01), sex=Sex.MALE, birth_year=1970, region="FR")
    g.add("lookalike", "look/a", unit(1, 0.1, 0), kinship=unit(0, 0, 0, 1), sex=Sex.MALE, birth_year=1991)
    g.add("daughter", "d/a", unit(0, 0.6, 1), kinship=unit(1, 1, 0.3, 0), sex=Sex.FEMALE, birth_year=1990)
    g.add("legacy", "legacy/a", unit(0.9, 0.1, 0.1), sex=Sex.MALE, birth_year=1993)  # no kinship vector
    return g


def ranker(embedder, gallery, **overrides) -> KinshipRanker:
    return KinshipRanker(embedder, gallery, RankerOptions(candidate_k=2), calibrated(**overrides))


def find(r: KinshipRanker, *relatives, **kwargs):
    return asyncio.run(r.find_relatives(FindRelativesInput(list(relatives), **kwargs)))


def compare(r: KinshipRanker, *relatives, **kwargs):
    return asyncio.run(r.compare_kinship(CompareKinshipInput(list(relatives), **kwargs)))


def test_each_photo_is_embedded_once_with_the_kinship_model(embedder, gallery):
    find(ranker(embedder, gallery), rel(Relation.FATHER, DAD), rel(Relation.MOTHER, MUM))
    assert embedder.calls == [(DAD, MODEL), (MUM, MODEL)]
    assert embedder.additional_asked == [(KIN,), (KIN,)]


def test_candidates_come_from_both_spaces_and_are_rescored_with_the_filter(embedder, gallery):
    ranking = find(
        ranker(embedder, gallery),
        rel(Relation.FATHER, DAD, person_id="dad-1"),
        rel(Relation.MOTHER, MUM),
        missing_person=MissingPerson(sex=Sex.MALE),
    )
    searched = [(model, n) for model, n, _, _ in gallery.searches]
    assert sorted(searched) == [(MODEL, 2), (KIN, 2)]
    assert all(f.sex is Sex.MALE and f.exclude_person_ids == ("dad-1",) for *_, f in gallery.searches)
    # Identity top-2 of dad: lookalike, legacy; of mum: lookalike, son. Kinship top-2 of dad and
    # mum: son (and the excluded dad-1; the daughter fails the sex filter).
    fetched = {model: sorted(people) for model, people, _ in gallery.fetches}
    assert fetched == {MODEL: ["legacy", "lookalike", "son"], KIN: ["legacy", "lookalike", "son"]}
    assert all(f.sex is Sex.MALE for *_, f in gallery.fetches)
    assert [c.person_id for c in ranking.candidates][0] == "son"
    son = ranking.candidates[0]
    assert [e.retrieved for e in son.evidence] == [True, True]
    assert [e.similarity_model_id for e in son.evidence] == [KIN, KIN]
    assert [e.calibration for e in son.evidence] == ["father-son", "mother-son"]
    assert son.log10_likelihood_ratio == pytest.approx(sum(e.log10_likelihood_ratio for e in son.evidence))
    assert son.score == pytest.approx(son.log10_likelihood_ratio)
    assert ranking.fusion_method == FUSION_METHOD
    info = ranking.scoring
    assert (info.calibrated, info.artifact_id, info.calibration_id) == (True, "kin-test", "cal-test")
    assert (info.identity_model_id, info.kinship_model_id) == (MODEL, KIN)
    assert ranking.strong_candidates == sum(c.strong_candidate for c in ranking.candidates) >= 1


def test_a_record_that_fails_the_filter_is_never_scored(embedder, gallery):
    ranking = find(
        ranker(embedder, gallery),
        rel(Relation.FATHER, DAD),
        missing_person=MissingPerson(regions=("IT-MI",)),
    )
    (son,) = [c for c in ranking.candidates if c.person_id == "son"]
    assert son.evidence[0].record_id == "son/a"  # son/old (FR) is nearer the father but fails the filter
    assert son.attributes.region == "IT-MI"


def test_a_self_only_question_never_touches_the_kinship_collection(embedder, gallery):
    ranking = find(ranker(embedder, gallery), rel(Relation.SELF, KID))
    assert {model for model, *_ in gallery.searches} == {MODEL}
    assert {model for model, *_ in gallery.fetches} == {MODEL}
    son = ranking.candidates[0]
    assert son.person_id == "son"
    assert (son.evidence[0].calibration, son.evidence[0].similarity_model_id) == ("self", MODEL)


def test_a_childhood_photo_counts_less_the_older_it_is(embedder, gallery):
    r = ranker(embedder, gallery)
    known = MissingPerson(birth_year_min=1990, birth_year_max=1994)
    undated = find(r, rel(Relation.SELF, KID), missing_person=known).candidates[0]
    dated = find(r, rel(Relation.SELF, Photo(KID, age_at_photo=4.0)), missing_person=known).candidates[0]
    by_year = find(r, rel(Relation.SELF, Photo(KID, capture_year=1996)), missing_person=known).candidates[0]
    assert undated.person_id == dated.person_id == "son"
    assert 0 < dated.log10_likelihood_ratio < undated.log10_likelihood_ratio
    assert 0 < by_year.log10_likelihood_ratio < undated.log10_likelihood_ratio


def test_a_blurry_photo_moves_the_fathers_evidence_less_than_a_sharp_one(embedder, gallery):
    r = ranker(embedder, gallery)

    def father_lr(*photos):
        ranking = find(r, rel(Relation.FATHER, *photos), top_n=10)
        (son,) = [c for c in ranking.candidates if c.person_id == "son"]
        return son.evidence[0].log10_likelihood_ratio

    sharp = father_lr(DAD)
    with_blurry = father_lr(DAD, BLURRY_DAD)
    assert sharp != with_blurry
    embedder.faces_by_image[BLURRY_DAD] = [face(unit(1, 0, 0.3), kinship=unit(1, 0, 0, 0.1), quality=0.9)]
    with_sharp_second = father_lr(DAD, BLURRY_DAD)
    assert abs(with_blurry - sharp) < abs(with_sharp_second - sharp)


def test_a_duplicated_photo_changes_no_score(embedder, gallery):
    r = ranker(embedder, gallery)
    once = find(r, rel(Relation.FATHER, DAD, BLURRY_DAD), rel(Relation.MOTHER, MUM), top_n=10)
    twice = find(r, rel(Relation.FATHER, DAD, BLURRY_DAD, DAD), rel(Relation.MOTHER, MUM), top_n=10)
    assert [(c.person_id, c.log10_likelihood_ratio) for c in twice.candidates] == [
        (c.person_id, c.log10_likelihood_ratio) for c in once.candidates
    ]
    assert [c.evidence for c in twice.candidates] == [c.evidence for c in once.candidates]


def test_a_prior_in_the_request_replaces_the_default(embedder, gallery):
    r = ranker(embedder, gallery)
    default = find(r, rel(Relation.FATHER, DAD)).candidates[0]
    stated = find(r, rel(Relation.FATHER, DAD), prior_probability=0.5)
    assert stated.scoring.prior_probability == 0.5
    best = stated.candidates[0]
    odds = 10**best.log10_likelihood_ratio
    assert best.posterior_probability == pytest.approx(odds / (1 + odds))
    assert best.posterior_probability > default.posterior_probability


@pytest.mark.parametrize("prior", [1.0, -0.1, 1.5, float("nan")])
def test_a_bad_prior_is_a_field_violation(embedder, gallery, prior):
    with pytest.raises(InvalidArgument) as caught:
        find(ranker(embedder, gallery), rel(Relation.FATHER, DAD), prior_probability=prior)
    assert [v.field for v in caught.value.violations] == ["prior_probability"]
    assert embedder.calls == []


def test_a_foreign_identity_model_is_refused_before_any_work(embedder, gallery):
    with pytest.raises(FailedPrecondition) as caught:
        find(ranker(embedder, gallery), rel(Relation.FATHER, DAD), model_id="another-model")
    assert "kin-test" in caught.value.message and MODEL in caught.value.message
    assert caught.value.reason == "ARTIFACT_BOUND_TO_ANOTHER_MODEL"
    assert embedder.calls == [] and gallery.searches == []
    # Naming the bound model itself is fine.
    assert find(ranker(embedder, gallery), rel(Relation.FATHER, DAD), model_id=MODEL).model_id == MODEL


def test_a_gallery_without_kinship_vectors_says_to_enrol_again(embedder, gallery):
    del gallery.collections[KIN]
    with pytest.raises(NotFound, match="enrol the gallery again"):
        find(ranker(embedder, gallery), rel(Relation.FATHER, DAD))


def test_an_embedder_that_returns_no_kinship_vector_is_a_failed_precondition(embedder, gallery):
    class Forgetful(FakeEmbedder):
        async def embed(self, image, model_id, additional_model_ids=()):
            result = await super().embed(image, model_id, ())
            return result

    forgetful = Forgetful(embedder.faces_by_image)
    with pytest.raises(FailedPrecondition, match="no vector of the kinship model"):
        find(ranker(forgetful, gallery), rel(Relation.FATHER, DAD))


def test_readiness_needs_the_artifacts_models_served(gallery):
    ready = ranker(FakeEmbedder({}), gallery)
    asyncio.run(ready.check_models())
    unready = ranker(FakeEmbedder({}, kinship_model_id=None), gallery)
    with pytest.raises(Unavailable) as caught:
        asyncio.run(unready.check_models())
    assert KIN in caught.value.message and MODEL in caught.value.message and "kin-test" in caught.value.message
    assert "--artifacts-dir" in caught.value.message
    # Without an artifact there is nothing to check.
    asyncio.run(KinshipRanker(FakeEmbedder({}, kinship_model_id=None), gallery).check_models())


# --- CompareKinship ------------------------------------------------------------------


def test_compare_on_a_gallery_person_agrees_with_find_relatives(embedder, gallery):
    r = ranker(embedder, gallery)
    family = [rel(Relation.FATHER, DAD), rel(Relation.MOTHER, MUM), rel(Relation.SELF, KID)]
    known = MissingPerson(sex=Sex.MALE, regions=("IT-MI",))
    found = next(c for c in find(r, *family, missing_person=known, top_n=10).candidates if c.person_id == "son")
    compared = compare(r, *family, candidate_person_id="son", missing_person=known)
    c = compared.candidate
    assert (c.person_id, c.rank) == ("son", 1)
    assert c.log10_likelihood_ratio == pytest.approx(found.log10_likelihood_ratio)
    assert c.posterior_probability == pytest.approx(found.posterior_probability)
    assert c.strong_candidate == found.strong_candidate
    assert c.attributes == found.attributes
    strip = [(e.label, e.record_id, e.similarity, e.log10_likelihood_ratio, e.fusion_weight) for e in c.evidence]
    assert strip == [
        (e.label, e.record_id, e.similarity, e.log10_likelihood_ratio, e.fusion_weight) for e in found.evidence
    ]
    assert not any(e.retrieved for e in c.evidence)  # nobody searched
    assert compared.scoring.calibrated
    # The filter applied to the candidate's records: son/old (FR) was never scored.
    assert {model for model, _, f in gallery.fetches[-2:]} == {MODEL, KIN}
    assert all(f.regions == ("IT-MI",) for *_, f in gallery.fetches[-2:])


def test_compare_on_photos_scores_them_like_a_gallery_record(embedder, gallery):
    r = ranker(embedder, gallery)
    family = [rel(Relation.FATHER, DAD), rel(Relation.MOTHER, MUM)]
    from_photos = compare(r, *family, candidate_photos=[SON_NOW], candidate_sex=Sex.MALE).candidate
    from_gallery = compare(r, *family, candidate_person_id="son", missing_person=MissingPerson(regions=("IT-MI",)))
    assert from_photos.person_id == ""
    assert from_photos.log10_likelihood_ratio == pytest.approx(from_gallery.candidate.log10_likelihood_ratio)
    assert [e.record_id for e in from_photos.evidence] == ["candidate_photos.photos[0]"] * 2
    assert [e.calibration for e in from_photos.evidence] == ["father-son", "mother-son"]
    unknown_sex = compare(r, *family, candidate_photos=[SON_NOW]).candidate
    assert [e.calibration for e in unknown_sex.evidence] == ["father", "mother"]
    assert embedder.additional_asked[-1] == (KIN,)
    assert gallery.searches == []


def test_compare_refuses_a_person_with_no_record_passing_the_filter(embedder, gallery):
    r = ranker(embedder, gallery)
    with pytest.raises(NotFound) as caught:
        compare(r, rel(Relation.FATHER, DAD), candidate_person_id="son", missing_person=MissingPerson(sex=Sex.FEMALE))
    assert "none passes" in caught.value.message and caught.value.reason == "NO_RECORD_PASSES_FILTER"
    with pytest.raises(NotFound) as caught:
        compare(r, rel(Relation.FATHER, DAD), candidate_person_id="nobody")
    assert caught.value.reason == "PERSON_NOT_FOUND"


def test_compare_photo_without_a_face_names_the_candidate_photo(embedder, gallery):
    embedder.faces_by_image[b"empty.jpg"] = []
    with pytest.raises(InvalidArgument) as caught:
        compare(ranker(embedder, gallery), rel(Relation.FATHER, DAD), candidate_photos=[SON_NOW, b"empty.jpg"])
    assert [v.field for v in caught.value.violations] == ["candidate_photos.photos[1].image"]


def test_compare_without_an_artifact_says_it_is_uncalibrated(embedder, gallery):
    r = KinshipRanker(embedder, gallery)
    compared = compare(r, rel(Relation.FATHER, DAD), candidate_person_id="lookalike")
    assert not compared.scoring.calibrated
    assert compared.candidate.score == pytest.approx(float(np.dot(unit(1, 0, 0), unit(1, 0.1, 0))))
    assert compared.candidate.log10_likelihood_ratio == 0.0 and not compared.candidate.strong_candidate


# --- DescribeScoring ------------------------------------------------------------------


def test_describe_scoring_lists_the_calibrations_and_metrics(embedder, gallery):
    description = ranker(embedder, gallery, prior_probability=0.01).describe_scoring()
    assert description.scoring.calibrated and description.scoring.prior_probability == 0.01
    names = [c.name for c in description.calibrations]
    assert names == sorted(names) and {"father", "mother-son", "sibling", "self"} <= set(names)
    sibling = next(c for c in description.calibrations if c.name == "sibling")
    assert sibling.fitted_on.startswith("borrowed") and sibling.max_abs_log10_lr == 2.5
    assert description.artifact_metrics == {"auc": 0.8}
    bare = KinshipRanker(embedder, gallery).describe_scoring()
    assert not bare.scoring.calibrated and bare.calibrations == () and "UNCALIBRATED" in bare.scoring.fusion_method
