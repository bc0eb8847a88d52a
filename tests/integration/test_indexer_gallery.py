"""The indexer through real gRPC, against Milvus Lite (a file in a tmp folder) and a Milvus 2.3.5 server.

One indexer per backend for the module; each test uses model ids of its own, so
each works in collections of its own.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from kinship.indexer import bootstrap
from kinship.runtime import config
from kinship.runtime.server import ServerThread
from kinship.v1 import common_pb2, indexer_pb2, indexer_pb2_grpc

DIM = 16
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
STRONG = indexer_pb2.READ_CONSISTENCY_STRONG


# The retention purge runs every few seconds here so that a test can watch it erase.
UPKEEP = {"retention_purge_interval_seconds": 2.0}


def indexer_settings(**values):
    return config.resolve(bootstrap.settings(), {"port": 0, "log_level": "warning", **values}, env={})


@pytest.fixture(scope="module", params=["lite", "server"])
def indexer(request, tmp_path_factory):
    if request.param == "lite":
        settings = indexer_settings(data_dir=tmp_path_factory.mktemp("indexer-data"), **UPKEEP)
    else:
        settings = indexer_settings(milvus_uri=request.getfixturevalue("milvus_server").uri, **UPKEEP)
    with ServerThread(bootstrap.build, settings) as server, grpc.insecure_channel(server.address) as channel:
        yield indexer_pb2_grpc.IndexerStub(channel), health_pb2_grpc.HealthStub(channel)


@pytest.fixture
def stub(indexer):
    return indexer[0]


@pytest.fixture
def model_id():
    """A model id (hence a collection) of this test's own."""
    return f"test-model@{uuid.uuid4().hex[:10]}"


def unit_vectors(count, seed, dim=DIM):
    vectors = np.random.default_rng(seed).normal(size=(count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def record(record_id, person_id, vector, birth_year=None, sex=common_pb2.SEX_UNSPECIFIED, region="", source="test"):
    attributes = common_pb2.PersonAttributes(sex=sex, region=region, source=source)
    if birth_year is not None:
        attributes.birth_year = birth_year
    return indexer_pb2.GalleryRecord(
        record_id=record_id, person_id=person_id, embedding=vector.tolist(), attributes=attributes
    )


def search(stub, model_id, vector, top_k=10, tenant="", **filter_fields):
    reply = stub.Search(
        indexer_pb2.SearchRequest(
            model_id=model_id,
            queries=[indexer_pb2.QueryEmbedding(embedding=vector.tolist())],
            top_k=top_k,
            filter=indexer_pb2.SearchFilter(**filter_fields),
            tenant=tenant,
            consistency=indexer_pb2.READ_CONSISTENCY_STRONG,  # read-your-writes: tests search what they wrote
        )
    )
    return reply.results[0].hits


SIX_PEOPLE = [
    ("p0", 1980, common_pb2.SEX_MALE, "IT-MI"),
    ("p1", 1990, common_pb2.SEX_FEMALE, "IT-RM"),
    ("p2", 2000, common_pb2.SEX_MALE, "FR-75"),
    ("p3", None, common_pb2.SEX_FEMALE, "IT-MI"),
    ("p4", 1995, common_pb2.SEX_UNSPECIFIED, ""),
    ("p5", 1985, common_pb2.SEX_FEMALE, "FR-75"),
]


def enrol_six_people(stub, model_id):
    """Six people with distinct attributes, one record each (p3 has no birth year); returns their vectors."""
    vectors = unit_vectors(len(SIX_PEOPLE), seed=1)
    records = [
        record(f"r-{person}", person, vectors[i], birth_year, sex, region)
        for i, (person, birth_year, sex, region) in enumerate(SIX_PEOPLE)
    ]
    reply = stub.Upsert(indexer_pb2.UpsertRequest(model_id=model_id, records=records))
    assert reply.upserted_count == len(SIX_PEOPLE)
    return vectors


@pytest.fixture
def people(stub, model_id):
    """The six people in this test's own collection, for tests that change it."""
    return enrol_six_people(stub, model_id)


@pytest.fixture(scope="module")
def shared_gallery(indexer):
    """The six people in a collection that tests only read (collections cost seconds on the server)."""
    model_id = f"shared-model@{uuid.uuid4().hex[:10]}"
    return model_id, enrol_six_people(indexer[0], model_id)


def assert_status(error: grpc.RpcError, code: grpc.StatusCode, *words: str) -> None:
    assert error.code() == code, error.details()
    for word in words:
        assert word in error.details()


def test_upsert_then_search_finds_the_vector_first(stub, shared_gallery):
    model_id, people = shared_gallery
    hits = search(stub, model_id, people[2], top_k=3)
    assert hits[0].record_id == "r-p2" and hits[0].person_id == "p2"
    assert hits[0].similarity == pytest.approx(1.0, abs=1e-4)
    assert hits[0].attributes.birth_year == 2000 and hits[0].attributes.region == "FR-75"
    assert hits[0].attributes.sex == common_pb2.SEX_MALE and hits[0].attributes.source == "test"
    assert len(hits) == 3
    assert [h.similarity for h in hits] == sorted((h.similarity for h in hits), reverse=True)


def test_a_search_of_many_queries_answers_each_with_its_exact_hits_and_attributes(stub, shared_gallery):
    model_id, people = shared_gallery
    queries = unit_vectors(5, seed=7)
    reply = stub.Search(
        indexer_pb2.SearchRequest(
            model_id=model_id,
            queries=[indexer_pb2.QueryEmbedding(embedding=q.tolist()) for q in queries],
            top_k=4,
            consistency=STRONG,
        )
    )
    assert len(reply.results) == len(queries)
    by_person = {person: (birth_year, sex, region) for person, birth_year, sex, region in SIX_PEOPLE}
    for query, result in zip(queries, reply.results, strict=True):
        exact = people @ query  # the six vectors are unit length: their cosine similarities
        expected = [f"p{i}" for i in np.argsort(-exact)[:4]]
        assert [hit.person_id for hit in result.hits] == expected
        for hit in result.hits:
            index = int(hit.person_id[1:])
            assert hit.record_id == f"r-{hit.person_id}"
            assert hit.similarity == pytest.approx(exact[index], abs=1e-4)
            birth_year, sex, region = by_person[hit.person_id]
            assert hit.attributes.HasField("birth_year") == (birth_year is not None)
            assert (hit.attributes.birth_year if birth_year is not None else None) == birth_year
            assert (hit.attributes.sex, hit.attributes.region, hit.attributes.source) == (sex, region, "test")


def test_a_filter_that_admits_no_one_answers_every_query_with_no_hits(stub, shared_gallery):
    model_id, people = shared_gallery
    reply = stub.Search(
        indexer_pb2.SearchRequest(
            model_id=model_id,
            queries=[indexer_pb2.QueryEmbedding(embedding=q.tolist()) for q in people[:3]],
            top_k=5,
            filter=indexer_pb2.SearchFilter(regions=["XX-00"]),
            consistency=STRONG,
        )
    )
    assert [list(result.hits) for result in reply.results] == [[], [], []]


def test_each_filter_filters(stub, shared_gallery):
    model_id, people = shared_gallery
    query = people[3]

    def found(**filter_fields):
        return {hit.person_id for hit in search(stub, model_id, query, **filter_fields)}

    assert found() == {"p0", "p1", "p2", "p3", "p4", "p5"}
    # p3's birth year is unknown: any bound excludes it.
    assert found(birth_year=common_pb2.BirthYearRange(min=1985, max=1995)) == {"p1", "p4", "p5"}
    assert found(birth_year=common_pb2.BirthYearRange(max=1985)) == {"p0", "p5"}
    assert found(birth_year=common_pb2.BirthYearRange(min=1995)) == {"p2", "p4"}
    assert found(sex=common_pb2.SEX_FEMALE) == {"p1", "p3", "p5"}
    assert found(regions=["IT-MI", "FR-75"]) == {"p0", "p2", "p3", "p5"}
    assert found(exclude_person_ids=["p3", "p0"]) == {"p1", "p2", "p4", "p5"}
    assert found(sex=common_pb2.SEX_MALE, regions=["FR-75"], birth_year=common_pb2.BirthYearRange(min=1999)) == {"p2"}


def test_upsert_with_same_record_id_replaces(stub, model_id, people):
    moved = unit_vectors(1, seed=99)[0]
    stub.Upsert(indexer_pb2.UpsertRequest(model_id=model_id, records=[record("r-p1", "p1", moved, 1991)]))
    hits = search(stub, model_id, moved, top_k=6)
    assert hits[0].record_id == "r-p1" and hits[0].similarity == pytest.approx(1.0, abs=1e-4)
    assert hits[0].attributes.birth_year == 1991
    assert [h.record_id for h in hits].count("r-p1") == 1
    (info,) = [
        c for c in stub.ListCollections(indexer_pb2.ListCollectionsRequest()).collections if c.model_id == model_id
    ]
    assert info.record_count == 6 and info.dimension == DIM


def test_concurrent_writes_of_one_record_leave_one_row(stub, model_id, people):
    # A client resending an Upsert still in progress: on 2.3 each write reads, deletes and
    # inserts, and two at once once left two rows of one record.
    vectors = unit_vectors(24, seed=23)

    def write(i: int) -> None:
        stub.Upsert(indexer_pb2.UpsertRequest(model_id=model_id, records=[record("r-p2", "p2", vectors[i], 2000)]))

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(write, range(len(vectors))))
    reply = stub.GetRecords(
        indexer_pb2.GetRecordsRequest(model_id=model_id, person_ids=["p2"], consistency=STRONG), timeout=30
    )
    assert [r.record_id for r in reply.records] == ["r-p2"]
    (info,) = [
        c for c in stub.ListCollections(indexer_pb2.ListCollectionsRequest()).collections if c.model_id == model_id
    ]
    assert info.record_count == 6


def test_get_records_returns_embeddings(stub, model_id, people):
    extra = unit_vectors(1, seed=7)[0]
    stub.Upsert(indexer_pb2.UpsertRequest(model_id=model_id, records=[record("r-p1-b", "p1", extra)]))
    reply = stub.GetRecords(
        indexer_pb2.GetRecordsRequest(
            model_id=model_id, person_ids=["p1", "p4", "nobody"], consistency=indexer_pb2.READ_CONSISTENCY_STRONG
        )
    )
    by_id = {r.record_id: r for r in reply.records}
    assert set(by_id) == {"r-p1", "r-p1-b", "r-p4"}
    np.testing.assert_allclose(by_id["r-p1"].embedding, people[1], atol=1e-6)
    np.testing.assert_allclose(by_id["r-p1-b"].embedding, extra, atol=1e-6)
    assert by_id["r-p4"].attributes.birth_year == 1995 and not by_id["r-p1-b"].attributes.HasField("birth_year")


def get_records(stub, model_id, person_ids, tenant="", **filter_fields):
    request = indexer_pb2.GetRecordsRequest(
        model_id=model_id,
        person_ids=person_ids,
        filter=indexer_pb2.SearchFilter(**filter_fields),
        tenant=tenant,
        consistency=indexer_pb2.READ_CONSISTENCY_STRONG,
    )
    return {r.record_id for r in stub.GetRecords(request).records}


def test_get_records_returns_only_the_records_that_pass_the_filter(stub, model_id, people):
    # p1 (1990, female, IT-RM) gets a second record that fails each restriction in turn.
    other = record("r-p1-b", "p1", unit_vectors(1, seed=8)[0], 1975, common_pb2.SEX_MALE, "FR-75")
    stub.Upsert(indexer_pb2.UpsertRequest(model_id=model_id, records=[other]))
    assert get_records(stub, model_id, ["p1"]) == {"r-p1", "r-p1-b"}
    assert get_records(stub, model_id, ["p1"], birth_year=common_pb2.BirthYearRange(min=1980)) == {"r-p1"}
    assert get_records(stub, model_id, ["p1"], birth_year=common_pb2.BirthYearRange(max=1980)) == {"r-p1-b"}
    assert get_records(stub, model_id, ["p1"], sex=common_pb2.SEX_FEMALE) == {"r-p1"}
    assert get_records(stub, model_id, ["p1"], regions=["IT-RM", "IT-MI"]) == {"r-p1"}
    assert get_records(stub, model_id, ["p1", "p3"], exclude_person_ids=["p1"]) == {"r-p3"}
    # p3's birth year is unknown: any bound drops it, as in Search.
    assert get_records(stub, model_id, ["p1", "p3"], birth_year=common_pb2.BirthYearRange(max=2100)) == {
        "r-p1",
        "r-p1-b",
    }
    both = dict(birth_year=common_pb2.BirthYearRange(min=1985, max=1995), sex=common_pb2.SEX_FEMALE)
    assert get_records(stub, model_id, ["p1", "p3", "p5"], **both) == {"r-p1", "r-p5"}  # bounds are inclusive


def test_get_records_admits_exactly_what_the_filters_meaning_admits(stub, shared_gallery):
    # The Milvus expression against SearchFilter.admits (the fakes' and the domain's meaning).
    from kinship.indexer.domain.model import Attributes, SearchFilter, Sex

    model_id, _ = shared_gallery
    filters = [
        (SearchFilter(birth_year_min=1985), {"birth_year": common_pb2.BirthYearRange(min=1985)}),
        (SearchFilter(birth_year_max=1990), {"birth_year": common_pb2.BirthYearRange(max=1990)}),
        (SearchFilter(sex=Sex.MALE), {"sex": common_pb2.SEX_MALE}),
        (SearchFilter(regions=("FR-75",)), {"regions": ["FR-75"]}),
        (SearchFilter(exclude_person_ids=("p0", "p5")), {"exclude_person_ids": ["p0", "p5"]}),
    ]
    people = [person for person, *_ in SIX_PEOPLE]
    for flt, fields in filters:
        expected = {
            f"r-{person}"
            for person, birth_year, sex, region in SIX_PEOPLE
            if flt.admits(person, Attributes(birth_year=birth_year, sex=Sex(sex), region=region))
        }
        assert get_records(stub, model_id, people, **fields) == expected, flt
        assert 0 < len(expected) < len(people), flt  # each filter really restricts


def test_get_records_with_a_bad_filter_is_invalid_argument(stub, shared_gallery):
    model_id, _ = shared_gallery
    bad = indexer_pb2.GetRecordsRequest(
        model_id=model_id,
        person_ids=["p0"],
        filter=indexer_pb2.SearchFilter(
            birth_year=common_pb2.BirthYearRange(min=2000, max=1990), regions=["x' or 1==1"]
        ),
    )
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetRecords(bad)
    assert_status(caught.value, grpc.StatusCode.INVALID_ARGUMENT, "filter.birth_year", "filter.regions[0]")


def test_a_long_kinship_model_id_gets_a_collection_of_its_own(stub):
    # What the embedder serves a trained artifact under: "kinship-<artifact id>@<identity model id>".
    suffix = uuid.uuid4().hex[:8]
    long_id = f"kinship-kin-20261127T120000Z-{suffix}@sface-2021dec-int8bq@yunet-2023mar"
    identity_id = f"sface-2021dec-int8bq@yunet-2023mar-{suffix}"
    vectors = unit_vectors(2, seed=21, dim=8)
    reply = stub.Upsert(
        indexer_pb2.UpsertRequest(
            model_id=long_id,
            records=[record("r-kin-a", "kin-a", vectors[0], 1990), record("r-kin-b", "kin-b", vectors[1], 1970)],
        )
    )
    assert reply.upserted_count == 2
    identity_reply = stub.Upsert(
        indexer_pb2.UpsertRequest(model_id=identity_id, records=[record("r-kin-a", "kin-a", unit_vectors(1, 3)[0])])
    )
    assert identity_reply.collection != reply.collection  # side by side, never mixed
    hits = search(stub, long_id, vectors[1], top_k=2)
    assert [h.record_id for h in hits] == ["r-kin-b", "r-kin-a"]
    assert hits[0].similarity == pytest.approx(1.0, abs=1e-4)
    assert get_records(stub, long_id, ["kin-a", "kin-b"], birth_year=common_pb2.BirthYearRange(min=1980)) == {"r-kin-a"}
    listed = {c.model_id: c for c in stub.ListCollections(indexer_pb2.ListCollectionsRequest()).collections}
    assert (listed[long_id].name, listed[long_id].dimension, listed[long_id].record_count) == (reply.collection, 8, 2)
    assert listed[identity_id].dimension == DIM
    deleted = stub.Delete(indexer_pb2.DeleteRequest(person_ids=["kin-a"]))
    assert deleted.deleted_count == 2  # erased from both collections


def test_delete_by_person_and_by_record_counts_exactly(stub, model_id, people):
    stub.Upsert(indexer_pb2.UpsertRequest(model_id=model_id, records=[record("r-p0-b", "p0", unit_vectors(1, 5)[0])]))
    deleted = stub.Delete(
        indexer_pb2.DeleteRequest(model_id=model_id, person_ids=["p0"], record_ids=["r-p2", "r-none"])
    )
    assert deleted.deleted_count == 3
    remaining = {hit.record_id for hit in search(stub, model_id, people[0])}
    assert remaining == {"r-p1", "r-p3", "r-p4", "r-p5"}
    again = stub.Delete(indexer_pb2.DeleteRequest(model_id=model_id, person_ids=["p0"]))
    assert again.deleted_count == 0


def test_delete_without_model_erases_a_person_everywhere(stub, model_id):
    other_model = model_id + "-other"
    person = f"person-{uuid.uuid4().hex[:8]}"
    vectors = unit_vectors(3, seed=11)
    stub.Upsert(
        indexer_pb2.UpsertRequest(
            model_id=model_id, records=[record(f"{person}-a", person, vectors[0]), record("keep", "k", vectors[1])]
        )
    )
    stub.Upsert(
        indexer_pb2.UpsertRequest(
            model_id=other_model,
            records=[record(f"{person}-b", person, vectors[2][:8] / np.linalg.norm(vectors[2][:8]))],
        )
    )
    deleted = stub.Delete(indexer_pb2.DeleteRequest(person_ids=[person]))
    assert deleted.deleted_count == 2
    for model in (model_id, other_model):
        assert not stub.GetRecords(
            indexer_pb2.GetRecordsRequest(model_id=model, person_ids=[person], consistency=STRONG)
        ).records
    assert [h.record_id for h in search(stub, model_id, vectors[1])] == ["keep"]


def test_unknown_model_is_not_found_naming_held_models(stub, shared_gallery):
    model_id, people = shared_gallery
    query = indexer_pb2.QueryEmbedding(embedding=people[0].tolist())
    with pytest.raises(grpc.RpcError) as caught:
        stub.Search(indexer_pb2.SearchRequest(model_id=model_id + "-absent", queries=[query], top_k=1))
    assert_status(caught.value, grpc.StatusCode.NOT_FOUND, model_id + "-absent", repr(model_id))
    with pytest.raises(grpc.RpcError) as caught:
        stub.GetRecords(indexer_pb2.GetRecordsRequest(model_id=model_id + "-absent", person_ids=["p0"]))
    assert_status(caught.value, grpc.StatusCode.NOT_FOUND)


@pytest.mark.parametrize(
    ("make_request", "words"),
    [
        (
            lambda m, v: indexer_pb2.UpsertRequest(
                model_id=m, records=[record("r-x", "p-x", v[:8] / np.linalg.norm(v[:8]))]
            ),
            ["8 values", f"{DIM}-dimensional"],
        ),
        (
            lambda m, v: indexer_pb2.UpsertRequest(model_id=m, records=[record("r-y", "p-y", v * 2)]),
            ["r-y", "L2-normalised"],
        ),
        (lambda m, v: indexer_pb2.UpsertRequest(model_id=m), ["at least one record"]),
        (lambda m, v: indexer_pb2.UpsertRequest(model_id=m, records=[record("bad id'", "p", v)]), ["record_id"]),
        (
            lambda m, v: indexer_pb2.SearchRequest(
                model_id=m, queries=[indexer_pb2.QueryEmbedding(embedding=v.tolist())], top_k=0
            ),
            ["top_k"],
        ),
        (lambda m, v: indexer_pb2.SearchRequest(model_id=m, top_k=5), ["at least one query"]),
        (
            lambda m, v: indexer_pb2.SearchRequest(
                model_id=m,
                queries=[indexer_pb2.QueryEmbedding(embedding=v.tolist())],
                top_k=5,
                filter=indexer_pb2.SearchFilter(regions=["x' or 1==1"]),
            ),
            ["regions[0]"],
        ),
        (lambda m, v: indexer_pb2.DeleteRequest(model_id=m), ["at least one"]),
    ],
    ids=[
        "wrong-length",
        "not-normalised",
        "empty-upsert",
        "bad-record-id",
        "top-k-0",
        "no-queries",
        "unsafe-region",
        "empty-delete",
    ],
)
def test_bad_requests_are_invalid_argument_and_service_keeps_serving(indexer, shared_gallery, make_request, words):
    stub, health = indexer
    model_id, people = shared_gallery
    request = make_request(model_id, people[0])
    method = {"UpsertRequest": stub.Upsert, "SearchRequest": stub.Search, "DeleteRequest": stub.Delete}
    with pytest.raises(grpc.RpcError) as caught:
        method[type(request).__name__](request)
    assert_status(caught.value, grpc.StatusCode.INVALID_ARGUMENT, *words)
    assert health.Check(health_pb2.HealthCheckRequest(service="kinship.v1.Indexer")).status == SERVING
    assert search(stub, model_id, people[0], top_k=1)[0].record_id == "r-p0"


def test_unreachable_milvus_starts_not_serving(dead_milvus_uri, tmp_path):
    settings = indexer_settings(milvus_uri=dead_milvus_uri, milvus_timeout_seconds=2.0, data_dir=tmp_path)
    with ServerThread(bootstrap.build, settings) as server, grpc.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        assert health.Check(health_pb2.HealthCheckRequest(service="kinship.v1.Indexer")).status == NOT_SERVING
        with pytest.raises(grpc.RpcError) as caught:
            indexer_pb2_grpc.IndexerStub(channel).ListCollections(indexer_pb2.ListCollectionsRequest(), timeout=5)
        assert_status(caught.value, grpc.StatusCode.UNAVAILABLE, dead_milvus_uri)


# Tenants, bulk enrolment, stats, retention and erasure ------------------------------------------


def test_a_search_never_returns_another_tenants_records(stub, model_id):
    vectors = unit_vectors(8, seed=31)
    # Both tenants enrol the same vectors, partly under the same record ids.
    for tenant in ("agency-a", "agency-b"):
        records = [record(f"r{i}", f"{tenant}-p{i}", vectors[i], 1990) for i in range(8)]
        reply = stub.Upsert(indexer_pb2.UpsertRequest(model_id=model_id, records=records, tenant=tenant))
        assert reply.tenant == tenant and reply.upserted_count == 8
    # Tenant b replaces its own r0; tenant a's r0 must stay as it was.
    moved = unit_vectors(1, seed=32)[0]
    stub.Upsert(
        indexer_pb2.UpsertRequest(model_id=model_id, records=[record("r0", "agency-b-p0", moved)], tenant="agency-b")
    )
    for tenant in ("agency-a", "agency-b"):
        for vector in (*vectors, moved):
            hits = search(stub, model_id, vector, top_k=20, tenant=tenant)
            assert hits and all(h.person_id.startswith(f"{tenant}-") for h in hits), [h.person_id for h in hits]
            assert len(hits) == 8
    a_r0 = search(stub, model_id, vectors[0], top_k=1, tenant="agency-a")[0]
    assert (a_r0.record_id, a_r0.person_id) == ("r0", "agency-a-p0") and a_r0.similarity == pytest.approx(1, abs=1e-4)
    # A request naming no tenant acts for the default tenant, which holds none of these.
    assert search(stub, model_id, vectors[0], top_k=5) == []
    assert get_records(stub, model_id, ["agency-b-p1"], tenant="agency-a") == set()
    assert get_records(stub, model_id, ["agency-b-p1"], tenant="agency-b") == {"r1"}
    # Erasing as tenant a never touches tenant b's records of the same ids.
    erased = stub.Delete(
        indexer_pb2.DeleteRequest(
            model_id=model_id, record_ids=["r1", "r2"], person_ids=["agency-b-p3"], tenant="agency-a"
        )
    )
    assert erased.deleted_count == 2
    assert get_records(stub, model_id, ["agency-b-p1", "agency-b-p2", "agency-b-p3"], tenant="agency-b") == {
        "r1",
        "r2",
        "r3",
    }
    stats = stub.Stats(indexer_pb2.StatsRequest(tenant="agency-b"))
    (mine,) = [c for c in stats.collections if c.collection.model_id == model_id]
    assert (mine.tenant_record_count, mine.collection.record_count, stats.tenant) == (8, 14, "agency-b")
    assert mine.collection.schema_version == 2 and mine.index_type == "HNSW"
    with pytest.raises(grpc.RpcError) as caught:
        stub.Search(
            indexer_pb2.SearchRequest(
                model_id=model_id,
                queries=[indexer_pb2.QueryEmbedding(embedding=vectors[0].tolist())],
                top_k=1,
                tenant="bad tenant",
            )
        )
    assert_status(caught.value, grpc.StatusCode.INVALID_ARGUMENT, "tenant")


def test_a_filter_on_birth_year_sex_region_and_tenant_returns_only_matching_rows(stub, model_id):
    rng = np.random.default_rng(41)
    vectors = unit_vectors(120, seed=41)
    truth = {}
    for tenant in ("t-north", "t-south"):
        records = []
        for i in range(60):
            year = int(rng.integers(1940, 2010)) if i % 7 else None
            sex = int(rng.choice([common_pb2.SEX_FEMALE, common_pb2.SEX_MALE, common_pb2.SEX_UNSPECIFIED]))
            region = str(rng.choice(["IT-MI", "IT-RM", "FR-75", ""]))
            rid = f"{tenant}-r{i}"
            truth[rid] = (tenant, year, sex, region)
            records.append(
                record(rid, f"{tenant}-p{i}", vectors[i + (60 if tenant == "t-south" else 0)], year, sex, region)
            )
        stub.Upsert(indexer_pb2.UpsertRequest(model_id=model_id, records=records, tenant=tenant))
    cases = [
        ("t-north", 1960, 1990, common_pb2.SEX_FEMALE, ["IT-MI", "FR-75"]),
        ("t-south", 1950, 2000, common_pb2.SEX_MALE, ["IT-RM"]),
        ("t-north", None, 1970, common_pb2.SEX_UNSPECIFIED, ["IT-MI", "IT-RM", "FR-75"]),
        ("t-south", 1980, None, common_pb2.SEX_FEMALE, []),
    ]
    for tenant, low, high, sex, regions in cases:
        years = common_pb2.BirthYearRange()
        if low is not None:
            years.min = low
        if high is not None:
            years.max = high
        expected = {
            rid
            for rid, (t, year, s, region) in truth.items()
            if t == tenant
            and year is not None
            and (low is None or year >= low)
            and (high is None or year <= high)
            and (sex == common_pb2.SEX_UNSPECIFIED or s == sex)
            and (not regions or region in regions)
        }
        assert expected, "each case must match some rows"
        hits = search(stub, model_id, vectors[0], top_k=200, tenant=tenant, birth_year=years, sex=sex, regions=regions)
        for hit in hits:  # every hit checked against what was enrolled
            t, year, s, region = truth[hit.record_id]
            assert t == tenant and year is not None
            assert (low is None or year >= low) and (high is None or year <= high), hit
            assert sex == common_pb2.SEX_UNSPECIFIED or s == sex
            assert not regions or region in regions
            assert hit.attributes.birth_year == year and hit.attributes.region == region and hit.attributes.sex == s
        assert {h.record_id for h in hits} == expected


def bulk_batches(model_id, tenant, batches):
    for records in batches:
        yield indexer_pb2.BulkEnrolRequest(model_id=model_id, tenant=tenant, records=records)


def test_bulk_enrol_reports_progress_and_per_record_failures_without_stopping(stub, model_id):
    vectors = unit_vectors(30, seed=51)
    good = [record(f"b{i}", f"bp{i}", vectors[i], 1980 + i) for i in range(30)]
    bad_vector = record("bad-norm", "bp-x", vectors[0] * 3)
    bad_id = record("bad id", "bp-y", vectors[1])
    batches = [good[:10] + [bad_vector], good[10:20] + [bad_id, good[3]], good[20:]]
    replies = list(stub.BulkEnrol(bulk_batches(model_id, "bulk-tenant", batches)))
    assert [r.received_total for r in replies] == [11, 23, 33, 33]
    assert [r.enrolled_total for r in replies] == [10, 20, 30, 30]
    assert replies[-1].done and not any(r.done for r in replies[:-1])
    failures = [f for r in replies for f in r.failures]
    assert [(f.record_id, f.index) for f in failures] == [("bad-norm", 10), ("bad id", 21), ("b3", 22)]
    assert (
        "L2-normalised" in failures[0].reason and "record_id" in failures[1].reason and "repeats" in failures[2].reason
    )
    assert replies[-1].failed_total == 3
    # Every acknowledged record is there (bulk enrolment flushed at its end).
    found = get_records(stub, model_id, [f"bp{i}" for i in range(30)], tenant="bulk-tenant")
    assert found == {f"b{i}" for i in range(30)}
    assert search(stub, model_id, vectors[17], top_k=1, tenant="bulk-tenant")[0].record_id == "b17"


def test_the_retention_purge_erases_expired_records(stub, model_id):
    vectors = unit_vectors(3, seed=61)
    now = int(time.time())
    expired = record("old", "p-old", vectors[0])
    expired.expires_at.seconds = now - 10
    soon = record("soon", "p-soon", vectors[1])
    soon.expires_at.seconds = now + 3
    kept = record("kept", "p-kept", vectors[2])
    kept.captured_at.seconds = now - 86400
    stub.Upsert(indexer_pb2.UpsertRequest(model_id=model_id, records=[expired, soon, kept], tenant="ret"))
    people = ["p-old", "p-soon", "p-kept"]
    deadline = time.monotonic() + 60
    while get_records(stub, model_id, people, tenant="ret") != {"kept"}:  # the purge runs every 2 s
        assert time.monotonic() < deadline, "the retention purge did not erase expired records within 60 s"
        time.sleep(0.5)
    (left,) = stub.GetRecords(
        indexer_pb2.GetRecordsRequest(model_id=model_id, person_ids=people, tenant="ret", consistency=STRONG)
    ).records
    assert left.captured_at.seconds == now - 86400 and not left.HasField("expires_at") and left.tenant == "ret"
    assert left.enrolled_at.seconds >= now - 5
    assert time.time() >= now + 3  # "soon" went only once it had expired


def test_erasure_awaits_compaction_and_holds_after_a_restart(tmp_path):
    """Lite: erase with compaction, stop the indexer, open the same file again: the rows stay gone."""
    settings = indexer_settings(data_dir=tmp_path)
    model = "erase-model"
    vectors = unit_vectors(5, seed=71)
    with ServerThread(bootstrap.build, settings) as server, grpc.insecure_channel(server.address) as channel:
        stub = indexer_pb2_grpc.IndexerStub(channel)
        stub.Upsert(
            indexer_pb2.UpsertRequest(
                model_id=model, records=[record(f"e{i}", f"ep{i % 2}", vectors[i]) for i in range(5)]
            )
        )
        erased = stub.Delete(indexer_pb2.DeleteRequest(model_id=model, person_ids=["ep0"], await_compaction=True))
        assert (erased.deleted_count, erased.compacted) == (3, True) and erased.compaction_seconds >= 0
    with ServerThread(bootstrap.build, settings) as server, grpc.insecure_channel(server.address) as channel:
        stub = indexer_pb2_grpc.IndexerStub(channel)
        assert_erased(stub, model, vectors, gone={0, 2, 4}, kept={1, 3})


def assert_erased(stub, model, vectors, gone, kept, tenant=""):
    assert get_records(stub, model, ["ep0", "ep1"], tenant=tenant) == {f"e{i}" for i in kept}
    for i in gone:  # the erased vector itself no longer finds its record
        assert all(h.record_id not in {f"e{j}" for j in gone} for h in search(stub, model, vectors[i], tenant=tenant))
    (info,) = [c for c in stub.ListCollections(indexer_pb2.ListCollectionsRequest()).collections if c.model_id == model]
    assert info.record_count == len(kept)


def test_a_bulk_enrolment_outlives_its_connections_age(tmp_path):
    """A connection past its age takes no new calls, but a stream on it runs on (a 1M-row
    enrolment streams for minutes; a grace shorter than that cut it with UNAVAILABLE)."""
    settings = indexer_settings(data_dir=tmp_path, max_connection_age_seconds=1.0)
    vectors = unit_vectors(12, seed=71)

    def slow_batches():
        for i in range(4):  # 4 batches 0.8 s apart: the stream lasts past the 1 s age
            yield indexer_pb2.BulkEnrolRequest(
                model_id="age-test",
                tenant="age",
                records=[record(f"a{i}{j}", f"ap{i}", vectors[3 * i + j]) for j in range(3)],
            )
            time.sleep(0.8)

    with ServerThread(bootstrap.build, settings) as server, grpc.insecure_channel(server.address) as channel:
        replies = list(indexer_pb2_grpc.IndexerStub(channel).BulkEnrol(slow_batches(), timeout=60))
    assert replies[-1].done and replies[-1].enrolled_total == 12
