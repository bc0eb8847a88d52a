"""Filter expressions and collection names of the Milvus adapter (no Milvus needed)."""

from __future__ import annotations

import re

import pytest

from kinship.indexer.adapters.milvus_gallery import (
    UNKNOWN_BIRTH_YEAR,
    collection_name,
    filter_expression,
    quote,
    records_expression,
    redact_uri,
)
from kinship.indexer.domain.model import SearchFilter, Sex

MILVUS_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")


def test_empty_filter_restricts_nothing():
    assert filter_expression(SearchFilter()) == ""


def test_every_typed_field_becomes_a_clause():
    expression = filter_expression(
        SearchFilter(
            birth_year_min=1980,
            birth_year_max=1995,
            sex=Sex.FEMALE,
            regions=("IT-MI", "FR-75"),
            exclude_person_ids=("p:1", "p.2"),
        )
    )
    assert expression == (
        f"birth_year != {UNKNOWN_BIRTH_YEAR} and birth_year >= 1980 and birth_year <= 1995 and sex == 1 "
        'and region in ["IT-MI", "FR-75"] and person_id not in ["p:1", "p.2"]'
    )


def test_get_records_expression_is_the_people_and_the_search_filter():
    assert records_expression(["p1", "p2"], SearchFilter()) == 'person_id in ["p1", "p2"]'
    flt = SearchFilter(birth_year_min=1980, sex=Sex.MALE, regions=("IT-MI",), exclude_person_ids=("p2",))
    assert records_expression(["p1", "p2"], flt) == (f'person_id in ["p1", "p2"] and ({filter_expression(flt)})')
    with pytest.raises(ValueError):
        records_expression(['p1" or person_id != "'], SearchFilter())


@pytest.mark.parametrize("flt", [SearchFilter(birth_year_max=2000), SearchFilter(birth_year_min=-5)])
def test_any_birth_year_bound_excludes_unknown_birth_years(flt):
    # Without the explicit clause, "birth_year <= 2000" would admit the sentinel -1.
    assert filter_expression(flt).startswith(f"birth_year != {UNKNOWN_BIRTH_YEAR} and ")


@pytest.mark.parametrize("value", ['a"b', "a'b", "a b", "a\\b", "", "x] or [1", "é"])
def test_quote_refuses_anything_outside_the_safe_set(value):
    with pytest.raises(ValueError):
        quote(value)


def test_quote_wraps_safe_values():
    assert quote("IT-MI_2:a.b") == '"IT-MI_2:a.b"'


def test_filter_expression_refuses_unsafe_regions_even_unvalidated():
    with pytest.raises(ValueError):
        filter_expression(SearchFilter(regions=('x" or 1 == 1 or region == "',)))


@pytest.mark.parametrize(
    "model_id",
    [
        "sface-2021dec-int8bq@yunet-2023mar",
        "kinship-kin-20261127T120000Z-1a2b3c4d@sface-2021dec-int8bq@yunet-2023mar",
        "a",
        "9starts-with-digit",
        "x" * 128,
        "a/b:c+d",
    ],
)
def test_collection_names_are_valid_milvus_names(model_id):
    name = collection_name(model_id)
    assert MILVUS_NAME.fullmatch(name), name
    assert name == collection_name(model_id)  # deterministic


def test_ids_that_sanitise_alike_get_different_collections():
    assert collection_name("model-a") != collection_name("model.a")
    # Long ids that differ only past the 64 readable characters still get collections of their own.
    first, second = (
        f"kinship-kin-20261127T120000Z-1a2b3c4d@sface-2021dec-int8bq@yunet-{v}" for v in ("2023mar", "2024")
    )
    assert collection_name(first)[:-13] == collection_name(second)[:-13]  # same readable part
    assert collection_name(first) != collection_name(second)
    assert collection_name("sface@1").startswith("faces_sface_1_")


def test_redact_uri_drops_credentials():
    assert redact_uri("https://user:secret@milvus:19530") == "https://milvus:19530"
    assert redact_uri("/data/milvus/gallery.db") == "/data/milvus/gallery.db"


def test_include_unknown_admits_the_unknown_sentinels_beside_the_range_and_the_sex():
    flt = SearchFilter(birth_year_min=1980, birth_year_max=1995, sex=Sex.FEMALE, include_unknown=True)
    assert filter_expression(flt) == (
        f"(birth_year == {UNKNOWN_BIRTH_YEAR} or (birth_year != {UNKNOWN_BIRTH_YEAR} and birth_year >= 1980 "
        "and birth_year <= 1995)) and (sex == 1 or sex == 0)"
    )


def test_the_count_of_unknowns_keeps_only_the_regions_and_exclusions_of_the_filter():
    from kinship.indexer.adapters.milvus_gallery import unknown_expression

    flt = SearchFilter(birth_year_min=1980, sex=Sex.MALE, regions=("IT-MI",), exclude_person_ids=("p1",))
    assert unknown_expression(flt, "birth_year", "t1") == (
        f'tenant == "t1" and region in ["IT-MI"] and person_id not in ["p1"] and birth_year == {UNKNOWN_BIRTH_YEAR}'
    )
    assert unknown_expression(SearchFilter(sex=Sex.MALE), "sex") == "sex == 0"
