"""FindRelatives says what a birth-year or sex filter left out for an unknown fact, keeps those people
with include_unknown, and sends a pre-aligned photo to the embedder as one (over the fakes)."""

from __future__ import annotations

from kinship.ranker.domain.model import MissingPerson, Photo, Relation, Sex
from kinship.ranker.domain.service import KinshipRanker
from tests.unit.ranker.ranker_fakes import FakeEmbedder, FakeGallery, face, unit
from tests.unit.ranker.test_ranker_service import DAD, MUM, rel, run


def gallery_with_unknowns() -> FakeGallery:
    g = FakeGallery()
    g.add("known", "k/a", unit(1, 0.1, 0), sex=Sex.MALE, birth_year=1990)
    g.add("no-year", "ny/a", unit(1, 0.2, 0), sex=Sex.MALE)
    g.add("no-year", "ny/b", unit(1, 0.3, 0), sex=Sex.MALE)
    g.add("no-sex", "ns/a", unit(1, 0, 0.1), birth_year=1991)
    g.add("nothing", "n/a", unit(1, 0, 0.2))
    g.add("other-region", "o/a", unit(1, 0, 0.3), region="FR")
    return g


def embedder() -> FakeEmbedder:
    return FakeEmbedder({DAD: [face(unit(1, 0, 0))], MUM: [face(unit(0, 1, 0))]})


def test_unknown_birth_years_and_sexes_are_left_out_and_counted():
    gallery = gallery_with_unknowns()
    missing = MissingPerson(sex=Sex.MALE, birth_year_min=1985, birth_year_max=1995)
    ranking = run(KinshipRanker(embedder(), gallery), rel(Relation.FATHER, DAD), missing_person=missing)
    assert [c.person_id for c in ranking.candidates] == ["known"]
    # No birth year: no-year (2 records), nothing, other-region; no sex: no-sex, nothing, other-region.
    assert (ranking.excluded_unknown.birth_year, ranking.excluded_unknown.sex) == (4, 3)


def test_include_unknown_keeps_them_and_counts_nothing():
    gallery = gallery_with_unknowns()
    missing = MissingPerson(sex=Sex.MALE, birth_year_min=1985, birth_year_max=1995, include_unknown=True)
    ranking = run(KinshipRanker(embedder(), gallery), rel(Relation.FATHER, DAD), missing_person=missing)
    assert sorted(c.person_id for c in ranking.candidates) == ["known", "no-sex", "no-year", "nothing", "other-region"]
    assert (ranking.excluded_unknown.birth_year, ranking.excluded_unknown.sex) == (0, 0)


def test_without_such_filters_nothing_is_counted_and_the_indexer_is_not_asked():
    gallery = gallery_with_unknowns()
    calls = []
    counted = gallery.excluded_unknown

    async def spy(*args):
        calls.append(args)
        return await counted(*args)

    gallery.excluded_unknown = spy
    ranking = run(KinshipRanker(embedder(), gallery), rel(Relation.FATHER, DAD), missing_person=MissingPerson())
    assert len(ranking.candidates) == 5 and calls == []
    assert (ranking.excluded_unknown.birth_year, ranking.excluded_unknown.sex) == (0, 0)


def test_a_pre_aligned_photo_reaches_the_embedder_as_one():
    fake = embedder()
    run(
        KinshipRanker(fake, gallery_with_unknowns()),
        rel(Relation.FATHER, Photo(DAD, pre_aligned=True)),
        rel(Relation.MOTHER, MUM),
    )
    assert sorted(zip((image for image, _ in fake.calls), fake.pre_aligned, strict=True)) == [
        (DAD, True),
        (MUM, False),
    ]
