"""Validation rules of the gallery, through the Gallery use cases over a fake store."""

from __future__ import annotations

import numpy as np
import pytest

from kinship.indexer.domain import rules
from kinship.indexer.domain.model import Attributes, GalleryRecord, SearchFilter, Sex
from kinship.runtime.errors import InvalidArgument, NotFound


def unit(dim=4, seed=0):
    v = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return v / np.linalg.norm(v)


def rec(record_id="r1", person_id="p1", vector=None, **attrs):
    return GalleryRecord(record_id, person_id, unit() if vector is None else vector, Attributes(**attrs))


def fields_of(error: InvalidArgument) -> list[str]:
    return [v.field for v in error.violations]


def test_first_upsert_fixes_dimension_and_later_lengths_must_match(gallery, store):
    assert gallery.upsert("m1", [rec()]).upserted_count == 1
    assert store.dimension("m1") == 4
    with pytest.raises(InvalidArgument) as caught:
        gallery.upsert("m1", [rec("r2", vector=unit(dim=8))])
    assert "8 values" in caught.value.message and "4-dimensional" in caught.value.message
    assert fields_of(caught.value) == ["records[0].embedding (record 'r2')"]


@pytest.mark.parametrize(
    ("vector", "words"),
    [
        (unit() * 1.01, "norm is 1.01"),
        (np.array([np.nan, 0, 0, 1], dtype=np.float32), "NaN"),
        (np.array([], dtype=np.float32), "empty"),
    ],
)
def test_vectors_must_be_finite_normalised_and_present(gallery, vector, words):
    with pytest.raises(InvalidArgument) as caught:
        gallery.upsert("m1", [rec("r-bad", vector=vector)])
    assert words in caught.value.message and "r-bad" in caught.value.message


def test_normalisation_tolerance_is_1e_3(gallery):
    gallery.upsert("m1", [rec(vector=unit() * (1 + 5e-4))])
    with pytest.raises(InvalidArgument):
        gallery.upsert("m1", [rec(vector=unit() * (1 + 2e-3))])


def test_upsert_collects_every_problem_with_its_field(gallery):
    records = [
        rec("dup"),
        rec("dup"),
        rec("ok", person_id=""),
        rec("x y"),
        rec("r5", birth_year=1500),
        rec("r6", region="IT MI"),
        rec("r7", source="bad\nsource"),
    ]
    with pytest.raises(InvalidArgument) as caught:
        gallery.upsert("m1", records)
    assert fields_of(caught.value) == [
        "records[1].record_id",
        "records[2].person_id",
        "records[3].record_id",
        "records[4].attributes.birth_year",
        "records[5].attributes.region",
        "records[6].attributes.source",
    ]
    assert "and 3 more problems" in caught.value.message


@pytest.mark.parametrize("model_id", ["", "has space", "quote'", "x" * 129])
def test_model_id_is_checked(gallery, model_id):
    with pytest.raises(InvalidArgument) as caught:
        gallery.upsert(model_id, [rec()])
    assert fields_of(caught.value) == ["model_id"]


def test_model_id_with_at_sign_is_accepted(gallery):
    assert gallery.upsert("sface-2021dec-int8bq@yunet-2023mar", [rec()]).upserted_count == 1


def test_empty_upsert_is_refused(gallery):
    with pytest.raises(InvalidArgument, match="at least one record"):
        gallery.upsert("m1", [])


def test_search_checks_top_k_queries_and_filter(gallery):
    gallery.upsert("m1", [rec()])
    with pytest.raises(InvalidArgument) as caught:
        gallery.search("m1", [], 0, SearchFilter(birth_year_min=2000, birth_year_max=1990, regions=("a'b",)))
    assert fields_of(caught.value) == ["queries", "top_k", "filter.birth_year", "filter.regions[0]"]
    with pytest.raises(InvalidArgument, match="top_k"):
        gallery.search("m1", [unit()], 1001, SearchFilter())
    assert len(gallery.search("m1", [unit()], 1000, SearchFilter())[0]) == 1


def test_search_of_unknown_model_names_the_models_held(gallery):
    gallery.upsert("model-a", [rec()])
    gallery.upsert("model-b", [rec()])
    with pytest.raises(NotFound) as caught:
        gallery.search("model-c", [unit()], 5, SearchFilter())
    assert "'model-c'" in caught.value.message and "'model-a', 'model-b'" in caught.value.message
    assert caught.value.reason == "MODEL_NOT_FOUND"


def test_search_queries_must_match_the_collection(gallery):
    gallery.upsert("m1", [rec()])
    with pytest.raises(InvalidArgument) as caught:
        gallery.search("m1", [unit(), unit(dim=3)], 5, SearchFilter())
    assert fields_of(caught.value) == ["queries[1].embedding"]


def test_search_passes_the_typed_filter_to_the_store(gallery, store):
    matching = dict(birth_year=1990, sex=Sex.FEMALE, region="IT-MI")
    gallery.upsert(
        "m1",
        [rec("r1", "p1", unit(seed=1), **matching), rec("r2", "p2", unit(seed=2), **matching), rec("r3", "p3")],
    )
    flt = SearchFilter(birth_year_min=1990, sex=Sex.FEMALE, regions=("IT-MI",), exclude_person_ids=("p9",))
    hits = gallery.search("m1", [unit(seed=2)], 3, flt)
    assert [h.record_id for h in hits[0]] == ["r2", "r1"] and hits[0][0].similarity == pytest.approx(1.0)
    assert store.last_filter == flt


# What a filter admits (the meaning the Milvus expression is tested against on both backends).
FEMALE_1990_MI = Attributes(birth_year=1990, sex=Sex.FEMALE, region="IT-MI")


@pytest.mark.parametrize(
    ("flt", "attributes", "person_id", "admitted"),
    [
        (SearchFilter(), Attributes(), "p1", True),
        (SearchFilter(birth_year_min=1990, birth_year_max=1990), FEMALE_1990_MI, "p1", True),
        (SearchFilter(birth_year_min=1991), FEMALE_1990_MI, "p1", False),
        (SearchFilter(birth_year_max=1989), FEMALE_1990_MI, "p1", False),
        (SearchFilter(birth_year_max=2100), Attributes(), "p1", False),  # unknown birth year, any bound
        (SearchFilter(sex=Sex.FEMALE), FEMALE_1990_MI, "p1", True),
        (SearchFilter(sex=Sex.MALE), FEMALE_1990_MI, "p1", False),
        (SearchFilter(sex=Sex.MALE), Attributes(), "p1", False),  # unknown sex is not male
        (SearchFilter(regions=("FR-75", "IT-MI")), FEMALE_1990_MI, "p1", True),
        (SearchFilter(regions=("FR-75",)), FEMALE_1990_MI, "p1", False),
        (SearchFilter(exclude_person_ids=("p2",)), FEMALE_1990_MI, "p1", True),
        (SearchFilter(exclude_person_ids=("p2", "p1")), FEMALE_1990_MI, "p1", False),
    ],
)
def test_what_a_filter_admits(flt, attributes, person_id, admitted):
    assert flt.admits(person_id, attributes) is admitted


def test_get_records_returns_only_the_records_that_pass_the_filter(gallery, store):
    gallery.upsert(
        "m1",
        [
            rec("r1-milan", "p1", unit(seed=1), birth_year=1990, region="IT-MI"),
            rec("r1-paris", "p1", unit(seed=2), birth_year=1990, region="FR-75"),
            rec("r2", "p2", unit(seed=3), birth_year=1990, region="IT-MI"),
        ],
    )
    flt = SearchFilter(birth_year_min=1985, regions=("IT-MI",), exclude_person_ids=("p2",))
    records = gallery.get_records("m1", ["p1", "p2"], flt)
    assert [r.record_id for r in records] == ["r1-milan"] and store.last_filter == flt
    assert {r.record_id for r in gallery.get_records("m1", ["p1", "p2"])} == {"r1-milan", "r1-paris", "r2"}


def test_get_records_refuses_a_bad_filter_like_search(gallery, store):
    gallery.upsert("m1", [rec("r1", "p1")])
    bad = SearchFilter(birth_year_min=2000, birth_year_max=1990, regions=("x' or 1==1",), exclude_person_ids=("a b",))
    with pytest.raises(InvalidArgument) as caught:
        gallery.get_records("m1", ["p1", ""], bad)
    assert fields_of(caught.value) == [
        "person_ids[1]",
        "filter.birth_year",
        "filter.regions[0]",
        "filter.exclude_person_ids[0]",
    ]
    assert "min 2000 is greater than max 1990" in caught.value.message
    assert store.last_filter is None  # refused before the store was asked


def test_get_records_needs_valid_person_ids(gallery):
    gallery.upsert("m1", [rec("r1", "p1"), rec("r2", "p2")])
    with pytest.raises(InvalidArgument, match="at least one id"):
        gallery.get_records("m1", [])
    with pytest.raises(InvalidArgument, match="1001 ids"):
        gallery.get_records("m1", [f"p{i}" for i in range(1001)])
    assert [r.record_id for r in gallery.get_records("m1", ["p2", "p2"])] == ["r2"]
    with pytest.raises(NotFound):
        gallery.get_records("other", ["p1"])


def test_delete_needs_an_id_and_counts_over_every_collection(gallery, store):
    with pytest.raises(InvalidArgument, match="at least one person id or record id"):
        gallery.delete("", [], [])
    gallery.upsert("m1", [rec("r1", "p1"), rec("r2", "p2")])
    gallery.upsert("m2", [rec("r3", "p1"), rec("r4", "p3")])
    assert gallery.delete("", ["p1"], ["r4"]).deleted_count == 3
    assert sorted(store.deleted_in) == ["m1", "m2"]
    assert gallery.delete("m1", [], ["r2"]).deleted_count == 1
    with pytest.raises(NotFound):
        gallery.delete("m9", ["p1"], [])


def test_vectors_checked_together_get_the_same_verdict_as_one_by_one():
    half = np.full(4, 0.5, dtype=np.float32)
    vectors = [
        half,  # fine
        np.array([np.nan, 0, 0, 1], dtype=np.float32),
        np.ones(4, dtype=np.float32),  # norm 2
        np.full(3, 1 / np.sqrt(3), dtype=np.float32),  # wrong length
        np.array([], dtype=np.float32),
        np.array([np.inf, 0, 0, 0], dtype=np.float32),
        np.full(4, 1e30, dtype=np.float32),  # finite, but its squares overflow float32
        half * np.float32(1 + 0.9e-3),  # just inside the norm tolerance
        half * np.float32(1 + 1.1e-3),  # just outside it
    ]
    for dimension in (4, None):
        together = rules.vector_problems(vectors, dimension)
        for i, vector in enumerate(vectors):
            alone = rules.Violations()
            rules.check_vector(vector, "embedding", alone, dimension)
            assert together.get(i) == (alone.items[0].description if alone else None), (dimension, i)
    assert set(rules.vector_problems(vectors, 4)) == {1, 2, 3, 4, 5, 6, 8}
