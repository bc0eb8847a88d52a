"""KinshipRanker end to end over fakes of the embedder and the gallery, without a trained artifact (uncalibrated)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from kinship.ranker.domain.model import FindRelativesInput, MissingPerson, Relation, RelativeInput, Sex
from kinship.ranker.domain.scoring import UNCALIBRATED_FUSION_METHOD
from kinship.ranker.domain.service import KinshipRanker, RankerOptions
from kinship.runtime.errors import FailedPrecondition, InvalidArgument
from tests.unit.ranker.ranker_fakes import FakeEmbedder, FakeGallery, face, unit

DAD, MUM, SIS, BLURRY = b"dad.jpg", b"mum.jpg", b"sis.jpg", b"blurry.jpg"


def run(ranker: KinshipRanker, *relatives: RelativeInput, **kwargs):
    return asyncio.run(ranker.find_relatives(FindRelativesInput(list(relatives), **kwargs)))


def rel(relation, *photos, label="", person_id=""):
    return RelativeInput(label=label, relation=relation, photos=list(photos), person_id=person_id)


@pytest.fixture
def embedder() -> FakeEmbedder:
    return FakeEmbedder(
        {
            DAD: [face(unit(1, 0, 0))],
            MUM: [face(unit(0, 1, 0))],
            SIS: [face(unit(0, 0, 1))],
            BLURRY: [],
        }
    )


@pytest.fixture
def gallery() -> FakeGallery:
    g = FakeGallery()
    g.add("dad-1", "dad-1/a", unit(1, 0, 0), sex=Sex.MALE, birth_year=1960)  # the father himself, enrolled
    g.add("near-dad", "nd/a", unit(1, 0.1, 0), sex=Sex.MALE, birth_year=1990)
    g.add("near-mum", "nm/a", unit(0.1, 1, 0), sex=Sex.FEMALE, birth_year=1991)
    g.add("both", "b/a", unit(1, 1, 0), sex=Sex.MALE, birth_year=1992, region="IT-MI")
    g.add("both", "b/b", unit(1, 1, 0.2), sex=Sex.MALE, birth_year=1992, region="IT-MI")
    return g


def test_ranks_the_union_of_candidates_and_excludes_the_relatives(embedder, gallery):
    ranker = KinshipRanker(embedder, gallery, RankerOptions(candidate_k=2))
    ranking = run(ranker, rel(Relation.FATHER, DAD, person_id="dad-1"), rel(Relation.MOTHER, MUM))

    model_id, n_queries, top_k, search_filter = gallery.searches[0]
    assert (model_id, n_queries, top_k) == ("fake-model", 2, 2)
    assert search_filter.exclude_person_ids == ("dad-1",)
    # Father's search found near-dad and both; mother's near-mum and both.
    assert sorted(gallery.fetches[0][1]) == ["both", "near-dad", "near-mum"]
    assert [f[0] for f in gallery.fetches] == ["fake-model"]  # no kinship collection is read uncalibrated
    assert ranking.candidates_considered == 3
    assert [c.person_id for c in ranking.candidates] == ["both", "near-dad", "near-mum"]
    assert [c.rank for c in ranking.candidates] == [1, 2, 3]
    assert ranking.fusion_method == UNCALIBRATED_FUSION_METHOD and ranking.model_id == "fake-model"
    best = ranking.candidates[0]
    # "both" = (1,1,0)/sqrt2 against (1,0,0) and (0,1,0): 1/sqrt2 each.
    assert [e.similarity for e in best.evidence] == pytest.approx([2**-0.5, 2**-0.5])
    assert best.score == pytest.approx(2**-0.5)
    assert [e.record_id for e in best.evidence] == ["b/a", "b/a"]
    assert best.attributes.region == "IT-MI"
    near_dad = ranking.candidates[1]
    assert [e.retrieved for e in near_dad.evidence] == [True, False]
    assert [e.label for e in near_dad.evidence] == ["father", "mother"]


def test_known_facts_become_the_search_filter(embedder, gallery):
    ranker = KinshipRanker(embedder, gallery)
    missing = MissingPerson(sex=Sex.FEMALE, birth_year_min=1985, birth_year_max=1995, regions=("IT-MI", "FR"))
    ranking = run(ranker, rel(Relation.MOTHER, MUM), missing_person=missing)
    search_filter = gallery.searches[0][3]
    assert (search_filter.sex, search_filter.birth_year_min, search_filter.birth_year_max) == (Sex.FEMALE, 1985, 1995)
    assert search_filter.regions == ("IT-MI", "FR")
    assert search_filter.exclude_person_ids == ()
    assert [c.person_id for c in ranking.candidates] == []  # near-mum has no region


def test_every_photo_is_one_query_and_top_n_truncates(embedder, gallery):
    embedder.other_models.add("m2")
    gallery.collections["m2"] = list(gallery.records)
    ranker = KinshipRanker(embedder, gallery, RankerOptions(candidate_k=10))
    ranking = run(ranker, rel(Relation.SIBLING, SIS, DAD), rel(Relation.SIBLING, MUM), top_n=3, model_id="m2")
    assert gallery.searches[0][:2] == ("m2", 3)
    assert {model for _, model in embedder.calls} == {"m2"}
    assert ranking.candidates_considered == 4
    # dad-1 (score 0.5) is the one cut off: the others score above 0.54.
    assert sorted(c.person_id for c in ranking.candidates) == ["both", "near-dad", "near-mum"]
    assert [e.label for e in ranking.candidates[0].evidence] == ["sibling", "sibling-2"]
    # The first sibling's best photo against near-dad is photo 1 (the DAD photo).
    near_dad = next(c for c in ranking.candidates if c.person_id == "near-dad")
    assert near_dad.evidence[0].photo_index == 1
    assert near_dad.evidence[0].similarity == pytest.approx(1 / np.sqrt(1.01), abs=1e-6)


def test_the_most_prominent_face_of_a_group_photo_is_used(gallery):
    group = b"group.jpg"
    embedder = FakeEmbedder(
        {group: [face(unit(0, 1, 0), size=30, score=0.99), face(unit(1, 0, 0), size=120, score=0.8)]}
    )
    ranking = run(KinshipRanker(embedder, gallery), rel(Relation.SELF, group))
    assert ranking.candidates[0].person_id == "dad-1"
    assert ranking.candidates[0].evidence[0].similarity == pytest.approx(1.0)


def test_a_photo_without_a_face_names_the_relative_and_photo(embedder, gallery):
    with pytest.raises(InvalidArgument) as caught:
        run(KinshipRanker(embedder, gallery), rel(Relation.MOTHER, MUM), rel(Relation.FATHER, DAD, BLURRY))
    assert caught.value.message.startswith("relatives[1].photos[1]: no face found in the photo of 'father'")
    assert [v.field for v in caught.value.violations] == ["relatives[1].photos[1].image"]
    assert gallery.searches == []


def test_an_image_the_embedder_refuses_is_reported_with_its_photo(embedder, gallery):
    with pytest.raises(InvalidArgument) as caught:
        run(KinshipRanker(embedder, gallery), rel(Relation.FATHER, DAD, b"not an image", label="dad"))
    assert caught.value.message == (
        "relatives[0].photos[1]: the photo of 'dad' was refused: image cannot be decoded; send JPEG or PNG bytes"
    )
    assert [v.field for v in caught.value.violations] == ["relatives[0].photos[1].image"]


def test_invalid_requests_never_reach_the_embedder(embedder, gallery):
    with pytest.raises(InvalidArgument):
        run(KinshipRanker(embedder, gallery), rel(Relation.UNSPECIFIED, DAD))
    assert embedder.calls == []


def test_an_empty_gallery_gives_no_candidates_without_fetching(embedder):
    empty = FakeGallery()
    empty.collections["fake-model"] = []
    ranking = run(KinshipRanker(embedder, empty), rel(Relation.FATHER, DAD))
    assert ranking.candidates == () and ranking.candidates_considered == 0
    assert empty.fetches == []


def test_records_are_fetched_in_batches_the_indexer_accepts(embedder):
    rng = np.random.default_rng(7)
    vectors = rng.normal(size=(1500, 3))
    big = FakeGallery()
    for k, v in enumerate(vectors):
        big.add(f"p{k:04d}", f"r{k:04d}", v / np.linalg.norm(v))
    opposite = b"opposite.jpg"
    embedder.faces_by_image[opposite] = [face(unit(-1, 0, 0))]
    # The top 1000 towards +x and the top 1000 towards -x cover all 1500 people.
    ranking = run(
        KinshipRanker(embedder, big, RankerOptions(candidate_k=1000)), rel(Relation.SELF, DAD, opposite), top_n=5
    )
    assert sorted(len(batch) for _, batch, _ in big.fetches) == [500, 1000]
    assert ranking.candidates_considered == 1500
    assert len(ranking.candidates) == 5
    # With one photo at +x and one at -x, each candidate's similarity is |x|: the best are nearest either axis end.
    expected = sorted(abs(v[0]) / np.linalg.norm(v) for v in vectors)[-1]
    assert ranking.candidates[0].score == pytest.approx(expected, abs=1e-5)


def test_embeddings_of_different_models_never_meet(gallery):
    class SplitEmbedder(FakeEmbedder):
        async def embed(self, image, model_id, additional_model_ids=()):
            result = await super().embed(image, model_id, additional_model_ids)
            return type(result)(result.faces, "model-b" if image == MUM else "model-a")

    embedder = SplitEmbedder({DAD: [face(unit(1, 0, 0))], MUM: [face(unit(0, 1, 0))]})
    with pytest.raises(FailedPrecondition, match="name model_id"):
        run(KinshipRanker(embedder, gallery), rel(Relation.FATHER, DAD), rel(Relation.MOTHER, MUM))
    assert gallery.searches == []


def test_embedding_is_concurrent_but_bounded(gallery):
    class CountingEmbedder(FakeEmbedder):
        in_flight = peak = 0

        async def embed(self, image, model_id, additional_model_ids=()):
            CountingEmbedder.in_flight += 1
            CountingEmbedder.peak = max(CountingEmbedder.peak, CountingEmbedder.in_flight)
            await asyncio.sleep(0)  # yield so the others can start
            try:
                return await super().embed(image, model_id, additional_model_ids)
            finally:
                CountingEmbedder.in_flight -= 1

    embedder = CountingEmbedder({DAD: [face(unit(1, 0, 0))]})
    run(KinshipRanker(embedder, gallery, RankerOptions(max_concurrent_embeds=3)), rel(Relation.SELF, *[DAD] * 8))
    assert len(embedder.calls) == 8
    assert CountingEmbedder.peak == 3


def test_without_an_artifact_the_answer_says_it_is_uncalibrated(embedder, gallery):
    ranking = run(KinshipRanker(embedder, gallery), rel(Relation.FATHER, DAD), rel(Relation.MOTHER, MUM))
    assert embedder.additional_asked == [(), ()]  # no kinship model is asked for
    info = ranking.scoring
    assert info is not None and not info.calibrated
    assert (info.artifact_id, info.calibration_id, info.kinship_model_id) == ("", "", "")
    assert info.identity_model_id == "fake-model"
    assert "UNCALIBRATED" in info.fusion_method and "kinship train" in info.fusion_method
    assert ranking.strong_candidates == 0
    for candidate in ranking.candidates:
        assert candidate.log10_likelihood_ratio == 0.0 and not candidate.strong_candidate
        assert candidate.posterior_probability == pytest.approx(info.prior_probability)
        assert all(e.log10_likelihood_ratio == 0.0 and e.calibration == "" for e in candidate.evidence)
        assert [e.fusion_weight for e in candidate.evidence] == [0.5, 0.5]  # the plain mean
        assert {e.similarity_model_id for e in candidate.evidence} == {"fake-model"}


def test_the_tenant_reaches_every_gallery_call_and_confines_the_candidates(embedder, gallery):
    gallery.add("agency-b-dad", "ab/a", unit(1, 0.05, 0), sex=Sex.MALE, birth_year=1990, tenant="agency-b")
    ranker = KinshipRanker(embedder, gallery)
    in_b = run(ranker, rel(Relation.FATHER, DAD), tenant="agency-b")
    assert [c.person_id for c in in_b.candidates] == ["agency-b-dad"]
    assert {f.tenant for *_, f in gallery.searches} == {"agency-b"}
    assert {f.tenant for *_, f in gallery.fetches} == {"agency-b"}
    in_default = run(ranker, rel(Relation.FATHER, DAD))
    assert "agency-b-dad" not in {c.person_id for c in in_default.candidates} and in_default.candidates


def test_an_embedder_at_capacity_is_not_blamed_on_the_photo(embedder, gallery):
    from kinship.runtime.errors import ResourceExhausted

    class AtCapacity(FakeEmbedder):
        async def embed(self, image, model_id, additional_model_ids=()):
            busy = ResourceExhausted("embedder is at capacity: 16 calls at work; retry", reason="OVERLOADED")
            busy.retry_after_ms = 80
            raise busy

    class TooBig(FakeEmbedder):
        async def embed(self, image, model_id, additional_model_ids=()):
            raise ResourceExhausted("image has 200 megapixels; at most 40 are accepted")

    with pytest.raises(ResourceExhausted) as busy:
        run(KinshipRanker(AtCapacity({}), gallery), rel(Relation.FATHER, DAD, label="dad"))
    assert busy.value.message.startswith("embedder is at capacity") and busy.value.retry_after_ms == 80
    with pytest.raises(ResourceExhausted) as big:
        run(KinshipRanker(TooBig({}), gallery), rel(Relation.FATHER, DAD, label="dad"))
    assert big.value.message.startswith("relatives[0].photos[0]: the photo of 'dad' is too large")
