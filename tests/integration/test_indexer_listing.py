"""Listing a gallery (GetRecords with all_people, page by page) and the count of what a filter
leaves out for an unknown birth year or sex (Search's count_excluded_unknown, include_unknown),
through real gRPC against Milvus Lite."""

from __future__ import annotations

import uuid

import grpc
import pytest

from kinship.indexer import bootstrap
from kinship.runtime.server import ServerThread
from kinship.v1 import common_pb2, indexer_pb2, indexer_pb2_grpc
from tests.integration.test_indexer_gallery import indexer_settings, record, unit_vectors

STRONG = indexer_pb2.READ_CONSISTENCY_STRONG
MALE, FEMALE = common_pb2.SEX_MALE, common_pb2.SEX_FEMALE


@pytest.fixture(scope="module")
def stub(tmp_path_factory):
    settings = indexer_settings(data_dir=tmp_path_factory.mktemp("indexer-data"))
    with ServerThread(bootstrap.build, settings) as server, grpc.insecure_channel(server.address) as channel:
        yield indexer_pb2_grpc.IndexerStub(channel)


@pytest.fixture(scope="module")
def gallery(stub):
    """7 people, 11 records: some without a birth year, some without a sex."""
    model_id = f"test-model@{uuid.uuid4().hex[:10]}"
    vectors = iter(unit_vectors(11, seed=3))
    people = {
        "p-a": [(1990, MALE), (1990, MALE)],
        "p-b": [(None, FEMALE)],
        "p-c": [(1985, common_pb2.SEX_UNSPECIFIED), (1985, common_pb2.SEX_UNSPECIFIED)],
        "p-d": [(None, common_pb2.SEX_UNSPECIFIED)],
        "p-e": [(2001, FEMALE), (2001, FEMALE)],
        "p-f": [(1992, MALE)],
        "p-g": [(None, MALE), (None, MALE)],
    }
    records = [
        record(f"{pid}:{i}", pid, next(vectors), birth_year=year, sex=sex)
        for pid, facts in people.items()
        for i, (year, sex) in enumerate(facts)
    ]
    stub.Upsert(indexer_pb2.UpsertRequest(model_id=model_id, records=records))
    return model_id, people


def listing(stub, model_id, **fields):
    return stub.GetRecords(
        indexer_pb2.GetRecordsRequest(model_id=model_id, all_people=True, consistency=STRONG, **fields)
    )


def test_all_people_pages_by_person_id_and_never_splits_a_person(stub, gallery):
    model_id, people = gallery
    pages, token = [], ""
    while True:
        reply = listing(stub, model_id, page_size=3, page_token=token, omit_embeddings=True)
        pages.append([r.person_id for r in reply.records])
        assert all(not r.embedding for r in reply.records)
        token = reply.next_page_token
        if not token:
            break
    assert [sorted(set(p)) for p in pages] == [["p-a", "p-b", "p-c"], ["p-d", "p-e", "p-f"], ["p-g"]]
    assert sum(len(p) for p in pages) == sum(len(f) for f in people.values())
    # Embeddings come back unless left out.
    reply = listing(stub, model_id, page_size=1)
    assert {r.person_id for r in reply.records} == {"p-a"} and all(len(r.embedding) == 16 for r in reply.records)


def test_a_listing_refuses_person_ids_a_bad_page_and_paging_without_all_people(stub, gallery):
    model_id, _ = gallery
    for fields, field in (
        ({"all_people": True, "person_ids": ["p-a"]}, "person_ids"),
        ({"all_people": True, "page_size": 1001}, "page_size"),
        ({"all_people": True, "page_token": 'x" or 1'}, "page_token"),
        ({"person_ids": ["p-a"], "page_token": "p-a"}, "page_token"),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            stub.GetRecords(indexer_pb2.GetRecordsRequest(model_id=model_id, **fields))
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert field in caught.value.details()


def search(stub, model_id, **filter_fields):
    return stub.Search(
        indexer_pb2.SearchRequest(
            model_id=model_id,
            queries=[indexer_pb2.QueryEmbedding(embedding=unit_vectors(1, seed=9)[0].tolist())],
            top_k=50,
            filter=indexer_pb2.SearchFilter(**filter_fields),
            consistency=STRONG,
            count_excluded_unknown=True,
        )
    )


def test_a_search_counts_what_unknown_facts_left_out_and_include_unknown_keeps_them(stub, gallery):
    model_id, _ = gallery
    years = common_pb2.BirthYearRange(min=1980, max=1995)
    reply = search(stub, model_id, birth_year=years, sex=MALE)
    assert {h.person_id for h in reply.results[0].hits} == {"p-a", "p-f"}
    # No birth year: p-b, p-d, p-g (4 records); no sex: p-c, p-d (3 records).
    assert (reply.excluded_unknown.birth_year, reply.excluded_unknown.sex) == (4, 3)
    kept = search(stub, model_id, birth_year=years, sex=MALE, include_unknown=True)
    assert {h.person_id for h in kept.results[0].hits} == {"p-a", "p-f", "p-c", "p-d", "p-g"}
    assert (kept.excluded_unknown.birth_year, kept.excluded_unknown.sex) == (0, 0)
    # Only what the request restricts is counted, and the exclusions still hold.
    only_sex = search(stub, model_id, sex=FEMALE, exclude_person_ids=["p-d"])
    assert (only_sex.excluded_unknown.birth_year, only_sex.excluded_unknown.sex) == (0, 2)
    plain = search(stub, model_id)
    assert plain.excluded_unknown.birth_year == plain.excluded_unknown.sex == 0
