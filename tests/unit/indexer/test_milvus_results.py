"""Reading hits from the columns of a Milvus search result (no Milvus needed)."""

from __future__ import annotations

import pytest
from pymilvus import DataType, MilvusException
from pymilvus.grpc_gen import schema_pb2

from kinship.indexer.adapters.milvus_gallery import HIT_FIELDS, UNKNOWN_BIRTH_YEAR, _hits_of
from kinship.indexer.domain.model import Sex


def result(topks, scores, rows, fields=HIT_FIELDS):
    """A SearchResultData as Milvus sends it: the hits of every query concatenated, one column per field."""
    columns = []
    for field in fields:
        values = [row[field] for row in rows]
        if isinstance(values[0] if values else "", int):
            scalars = schema_pb2.ScalarField(long_data=schema_pb2.LongArray(data=values))
            kind = DataType.INT64
        else:
            scalars = schema_pb2.ScalarField(string_data=schema_pb2.StringArray(data=values))
            kind = DataType.VARCHAR
        columns.append(schema_pb2.FieldData(field_name=field, type=kind, scalars=scalars))
    return schema_pb2.SearchResultData(
        num_queries=len(topks),
        top_k=max(topks, default=0),
        topks=topks,
        scores=scores,
        fields_data=columns,
        output_fields=list(fields),
    )


def row(record_id, person_id, birth_year=1980, sex=int(Sex.MALE), region="IT-MI", source="test"):
    return {
        "record_id": record_id,
        "person_id": person_id,
        "birth_year": birth_year,
        "sex": sex,
        "region": region,
        "source": source,
    }


def test_each_query_gets_its_own_run_of_hits_even_when_counts_differ():
    rows = [row("r1", "p1"), row("r2", "p2"), row("r3", "p3", birth_year=UNKNOWN_BIRTH_YEAR, sex=99, region="")]
    hits = _hits_of(result([2, 0, 1], [0.9, 0.5, 0.7], rows), queries=3)
    assert [[h.record_id for h in q] for q in hits] == [["r1", "r2"], [], ["r3"]]
    assert [h.person_id for h in hits[0]] == ["p1", "p2"]
    assert [h.similarity for h in hits[0]] == pytest.approx([0.9, 0.5])
    first = hits[0][0].attributes
    assert (first.birth_year, first.sex, first.region, first.source) == (1980, Sex.MALE, "IT-MI", "test")
    unknown = hits[2][0].attributes
    # The unknown-birth-year marker and a sex value this version does not know both read as unknown.
    assert (unknown.birth_year, unknown.sex, unknown.region) == (None, Sex.UNSPECIFIED, "")


def test_similarities_a_rounding_step_outside_minus_one_to_one_are_clamped():
    hits = _hits_of(result([2], [1.0000002, -1.0000002], [row("r1", "p1"), row("r2", "p2")]), queries=1)
    assert [h.similarity for h in hits[0]] == [1.0, -1.0]


def test_a_result_without_hits_answers_every_query_with_none():
    assert _hits_of(schema_pb2.SearchResultData(num_queries=2), queries=2) == [[], []]
    # What a Milvus 2.3 server sends when a filter admits no one: counts of zero and no columns.
    assert _hits_of(schema_pb2.SearchResultData(num_queries=2, topks=[0, 0]), queries=2) == [[], []]


def test_queries_milvus_left_out_of_the_counts_get_no_hits():
    assert _hits_of(result([1], [0.8], [row("r1", "p1")]), queries=3)[1:] == [[], []]


def test_a_result_missing_an_output_field_is_an_error_naming_it():
    fields = tuple(f for f in HIT_FIELDS if f != "region")
    with pytest.raises(MilvusException, match="region"):
        _hits_of(result([1], [0.8], [row("r1", "p1")], fields=fields), queries=1)
