from __future__ import annotations

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
from kinship.ranker.domain.validation import Limits, resolve_labels, validate, validate_comparison
from kinship.runtime.errors import InvalidArgument

PHOTO = b"jpeg-bytes"


def relative(relation=Relation.FATHER, photos=(PHOTO,), label="", person_id=""):
    return RelativeInput(label=label, relation=relation, photos=list(photos), person_id=person_id)


def fields_of(request, **kwargs) -> list[str]:
    with pytest.raises(InvalidArgument) as caught:
        validate(request, current_year=2026, **kwargs)
    return [v.field for v in caught.value.violations]


def test_a_valid_request_resolves_defaults():
    query = validate(FindRelativesInput([relative(), relative(Relation.MOTHER, label=" mum ")]), current_year=2026)
    assert [r.label for r in query.relatives] == ["father", "mum"]
    assert query.top_n == 20
    assert query.model_id == ""


def test_no_relatives_is_refused():
    assert fields_of(FindRelativesInput([])) == ["relatives"]


@pytest.mark.parametrize(
    ("bad_relative", "field"),
    [
        (relative(Relation.UNSPECIFIED), "relatives[1].relation"),
        (relative(photos=()), "relatives[1].photos"),
        (relative(photos=(PHOTO, b"")), "relatives[1].photos[1].image"),
        (relative(person_id="has space"), "relatives[1].person_id"),
        (relative(label="x" * 65), "relatives[1].label"),
    ],
)
def test_bad_relatives_are_named_by_path(bad_relative, field):
    assert fields_of(FindRelativesInput([relative(), bad_relative])) == [field]


def test_every_problem_is_reported_at_once_and_the_message_names_the_first():
    request = FindRelativesInput([relative(Relation.UNSPECIFIED, photos=())], top_n=501)
    with pytest.raises(InvalidArgument) as caught:
        validate(request, current_year=2026)
    assert [v.field for v in caught.value.violations] == ["relatives[0].relation", "relatives[0].photos", "top_n"]
    assert caught.value.message.startswith("relatives[0].relation: relation is not set")
    assert "2 more" in caught.value.message


def test_too_many_photos_in_total():
    request = FindRelativesInput([relative(photos=[PHOTO] * 3), relative(Relation.MOTHER, photos=[PHOTO] * 2)])
    with pytest.raises(InvalidArgument) as caught:
        validate(request, Limits(max_photos=4), current_year=2026)
    assert [v.field for v in caught.value.violations] == ["relatives"]
    assert "5 photos" in caught.value.message and "4" in caught.value.message


@pytest.mark.parametrize(("top_n", "resolved"), [(0, 20), (1, 1), (500, 500)])
def test_top_n_bounds(top_n, resolved):
    assert validate(FindRelativesInput([relative()], top_n=top_n), current_year=2026).top_n == resolved


@pytest.mark.parametrize("top_n", [-1, 501])
def test_top_n_out_of_range(top_n):
    assert fields_of(FindRelativesInput([relative()], top_n=top_n)) == ["top_n"]


@pytest.mark.parametrize(
    ("missing", "fields"),
    [
        (MissingPerson(birth_year_min=2010, birth_year_max=2000), ["missing_person.birth_year"]),
        (MissingPerson(birth_year_min=1899), ["missing_person.birth_year.min"]),
        (MissingPerson(birth_year_max=2027), ["missing_person.birth_year.max"]),
        (MissingPerson(regions=("IT-MI", " ")), ["missing_person.regions[1]"]),
    ],
)
def test_bad_known_facts(missing, fields):
    assert fields_of(FindRelativesInput([relative()], missing_person=missing)) == fields


def test_known_facts_pass_through_with_regions_cleaned():
    missing = MissingPerson(birth_year_min=2000, birth_year_max=2000, regions=(" IT-MI", "IT-MI", "FR"))
    query = validate(FindRelativesInput([relative()], missing_person=missing), current_year=2026)
    assert (query.missing_person.birth_year_min, query.missing_person.birth_year_max) == (2000, 2000)
    assert query.missing_person.regions == ("IT-MI", "FR")


def test_labels_default_to_relation_and_repeats_get_a_suffix():
    given = [
        ("", Relation.SIBLING),
        ("", Relation.FATHER),
        ("", Relation.SIBLING),
        ("sibling", Relation.SIBLING),
        ("anna", Relation.SIBLING),
        ("", Relation.SELF),
    ]
    assert resolve_labels(given) == ["sibling", "father", "sibling-2", "sibling-3", "anna", "self"]


# --- photos' dates, the prior, CompareKinship ----------------------------------------


def test_photo_dates_pass_through_and_bare_bytes_become_photos():
    dated = Photo(PHOTO, capture_year=1999, age_at_photo=6.5)
    query = validate(FindRelativesInput([relative(Relation.SELF, photos=(dated, PHOTO))]), current_year=2026)
    assert query.relatives[0].photos == (dated, Photo(PHOTO))
    assert query.current_year == 2026


@pytest.mark.parametrize(
    ("photo", "field"),
    [
        (Photo(PHOTO, capture_year=1850), "relatives[0].photos[0].capture_year"),
        (Photo(PHOTO, capture_year=2027), "relatives[0].photos[0].capture_year"),
        (Photo(PHOTO, age_at_photo=-1.0), "relatives[0].photos[0].age_at_photo"),
        (Photo(PHOTO, age_at_photo=float("nan")), "relatives[0].photos[0].age_at_photo"),
        (Photo(PHOTO, age_at_photo=200.0), "relatives[0].photos[0].age_at_photo"),
    ],
)
def test_bad_photo_dates(photo, field):
    assert fields_of(FindRelativesInput([relative(Relation.SELF, photos=(photo,))])) == [field]


@pytest.mark.parametrize("prior", [1.0, 1.0001, -0.5, float("inf"), float("nan")])
def test_bad_prior(prior):
    assert fields_of(FindRelativesInput([relative()], prior_probability=prior)) == ["prior_probability"]


@pytest.mark.parametrize("prior", [0.0, 1e-9, 0.5, 0.999])
def test_good_prior(prior):
    assert (
        validate(FindRelativesInput([relative()], prior_probability=prior), current_year=2026).prior_probability
        == prior
    )


def test_brother_and_sister_are_relations_with_their_own_default_labels():
    query = validate(
        FindRelativesInput([relative(Relation.BROTHER), relative(Relation.SISTER), relative(Relation.BROTHER)]),
        current_year=2026,
    )
    assert [r.label for r in query.relatives] == ["brother", "sister", "brother-2"]


def comparison_fields(request) -> list[str]:
    with pytest.raises(InvalidArgument) as caught:
        validate_comparison(request, current_year=2026)
    return [v.field for v in caught.value.violations]


def test_a_comparison_needs_exactly_one_candidate():
    assert comparison_fields(CompareKinshipInput([relative()])) == ["candidate"]
    both = CompareKinshipInput([relative()], candidate_photos=[PHOTO], candidate_person_id="p1")
    assert comparison_fields(both) == ["candidate"]


def test_a_comparison_candidate_is_checked_like_a_relative():
    assert comparison_fields(CompareKinshipInput([relative()], candidate_photos=[PHOTO, b""])) == [
        "candidate_photos.photos[1].image"
    ]
    assert comparison_fields(CompareKinshipInput([relative()], candidate_person_id="a b")) == ["candidate_person_id"]
    mine = CompareKinshipInput([relative(person_id="dad-1")], candidate_person_id="dad-1")
    assert comparison_fields(mine) == ["candidate_person_id"]
    crowded = CompareKinshipInput([relative(photos=[PHOTO] * 3)], candidate_photos=[PHOTO] * 2)
    with pytest.raises(InvalidArgument, match="5 photos in total"):
        validate_comparison(crowded, Limits(max_photos=4), current_year=2026)
    assert comparison_fields(CompareKinshipInput([], candidate_person_id="p1", prior_probability=2.0)) == [
        "relatives",
        "prior_probability",
    ]


def test_a_valid_comparison_resolves_like_a_question():
    query = validate_comparison(
        CompareKinshipInput([relative()], candidate_photos=[PHOTO], candidate_sex=Sex.FEMALE), current_year=2026
    )
    assert query.candidate_photos == (Photo(PHOTO),) and query.candidate_sex is Sex.FEMALE
    assert query.query.relatives[0].label == "father" and query.candidate_person_id == ""
    by_id = validate_comparison(CompareKinshipInput([relative()], candidate_person_id=" p1 "), current_year=2026)
    assert by_id.candidate_person_id == "p1"
