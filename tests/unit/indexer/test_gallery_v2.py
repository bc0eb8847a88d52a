"""Tenants, bulk enrolment, erasure, retention and consistency in the Gallery use cases (fake store),
and the Milvus adapter's own rules that need no Milvus: schema versions, index settings, retries."""

from __future__ import annotations

import time

import numpy as np
import pytest
from pymilvus import MilvusException
from pymilvus.exceptions import MilvusUnavailableException

from kinship.indexer.adapters import milvus_gallery
from kinship.indexer.adapters.milvus_gallery import (
    MilvusGallery,
    VectorIndex,
    check_schema_version,
    expired_expression,
    filter_expression,
    record_key,
)
from kinship.indexer.domain.model import Attributes, Consistency, GalleryRecord, SearchFilter, Sex
from kinship.runtime import deadlines
from kinship.runtime.errors import DeadlineExceeded, FailedPrecondition, InvalidArgument, Unavailable


def unit(seed=0, dim=4):
    v = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return v / np.linalg.norm(v)


def rec(record_id="r1", person_id="p1", vector=None, **kwargs):
    return GalleryRecord(record_id, person_id, unit() if vector is None else vector, **kwargs)


def test_each_tenant_sees_only_its_own_records(gallery):
    gallery.upsert("m1", [rec("r1", "p1", unit(1))], tenant="a")
    gallery.upsert("m1", [rec("r1", "p1", unit(2)), rec("r2", "p2", unit(3))], tenant="b")
    (hits,) = gallery.search("m1", [unit(1)], 10, SearchFilter(), tenant="a")
    assert [h.record_id for h in hits] == ["r1"] and hits[0].similarity == pytest.approx(1.0)
    assert {r.record_id for r in gallery.get_records("m1", ["p1", "p2"], tenant="b")} == {"r1", "r2"}
    assert gallery.delete("m1", ["p2"], [], tenant="a").deleted_count == 0
    assert gallery.delete("m1", [], ["r1"], tenant="a").deleted_count == 1
    assert [r.record_id for r in gallery.get_records("m1", ["p1"], tenant="b")] == ["r1"]
    (stats,) = gallery.stats("b")
    assert (stats.tenant_record_count, stats.collection.record_count) == (2, 2)


def test_reads_default_to_bounded_consistency_and_strong_on_request(gallery, store):
    gallery.upsert("m1", [rec()])
    gallery.search("m1", [unit()], 1, SearchFilter())
    assert store.last_consistency is Consistency.BOUNDED
    gallery.get_records("m1", ["p1"], consistency=Consistency.UNSPECIFIED)
    assert store.last_consistency is Consistency.BOUNDED
    gallery.search("m1", [unit()], 1, SearchFilter(), consistency=Consistency.STRONG)
    assert store.last_consistency is Consistency.STRONG


def enrol_batch(gallery, model_id, records, tenant, seen):
    """A bulk batch as the transport handles it: checked, then stored."""
    checked = gallery.check_batch(model_id, records, seen)
    return gallery.store_batch(model_id, tenant, checked), checked.failures


def test_bulk_enrolment_stores_the_good_records_and_reports_each_bad_one(gallery, store):
    seen: set[str] = set()
    batch = [
        (0, rec("a", "p", unit(1))),
        (1, rec("b", "p", unit(2) * 2)),  # not normalised
        (2, rec("bad id", "p", unit(3))),
        (3, rec("c", "p", unit(4), expires_at=-5)),
    ]
    stored, failures = enrol_batch(gallery, "m1", batch, "t", seen)
    assert stored == 1 and [(f.record_id, f.index) for f in failures] == [("b", 1), ("bad id", 2), ("c", 3)]
    assert "L2-normalised" in failures[0].reason and "record_id" in failures[1].reason
    assert "expires_at" in failures[2].reason
    stored, failures = enrol_batch(gallery, "m1", [(4, rec("a", "p", unit(5))), (5, rec("d", "p", unit(6)))], "t", seen)
    assert stored == 1 and failures[0].index == 4 and "repeats" in failures[0].reason
    assert {r.record_id for r in gallery.get_records("m1", ["p"], tenant="t")} == {"a", "d"}
    # A later batch of another dimension is refused record by record, not as a whole.
    stored, failures = enrol_batch(gallery, "m1", [(6, rec("e", "p", unit(7, dim=8)))], "t", seen)
    assert stored == 0 and "4-dimensional" in failures[0].reason


def test_delete_awaits_compaction_only_where_it_erased(gallery, store):
    gallery.upsert("m1", [rec("r1", "p1")])
    gallery.upsert("m2", [rec("r2", "p2")])
    result = gallery.delete("", ["p1"], [], await_compaction=True)
    assert (result.deleted_count, result.compacted, store.compacted) == (1, True, ["m1"])
    assert gallery.delete("m1", ["p1"], []).compacted is False


def test_the_retention_purge_erases_only_expired_records_in_every_collection(gallery):
    now = int(time.time())
    gallery.upsert("m1", [rec("old", "p", expires_at=now - 1), rec("new", "p", expires_at=now + 60), rec("kept", "p")])
    gallery.upsert("m2", [rec("old2", "q", expires_at=now)], tenant="other")
    assert gallery.purge_expired(now) == 2
    assert {r.record_id for r in gallery.get_records("m1", ["p"])} == {"new", "kept"}
    assert gallery.purge_expired(now + 61) == 1


def test_the_tenant_is_always_in_the_expression_and_the_key():
    expression = filter_expression(SearchFilter(sex=Sex.MALE, regions=("IT",)), "agency-a")
    assert expression.startswith('tenant == "agency-a" and ') and "sex == 2" in expression
    assert record_key("agency-a", "r:1") == "agency-a:r:1"
    assert expired_expression(100) == "expires_at > 0 and expires_at <= 100"
    with pytest.raises(ValueError):
        filter_expression(SearchFilter(), 'a" or tenant != "b')


def test_a_collection_of_another_schema_version_is_a_clear_failed_precondition():
    check_schema_version("faces_m", "m", {"kinship.model_id": "m", "kinship.schema_version": "2"})
    with pytest.raises(FailedPrecondition) as older:
        check_schema_version("faces_m", "m", {"kinship.model_id": "m"})  # version 1 had no property
    assert "faces_m" in older.value.message and "version 1" in older.value.message and "Migrate" in older.value.message
    assert older.value.reason == "SCHEMA_VERSION_MISMATCH"
    with pytest.raises(FailedPrecondition, match="newer"):
        check_schema_version("faces_m", "m", {"kinship.schema_version": "3"})


def test_vector_index_settings():
    ivf = VectorIndex.parse("ivf_sq8", '{"nlist": 2048}', '{"nprobe": 16}')
    assert (ivf.index_type, ivf.build_params, ivf.search_params) == ("IVF_SQ8", {"nlist": 2048}, {"nprobe": 16})
    hnsw = VectorIndex.parse("HNSW")
    assert hnsw.search_params_for("HNSW", 200) == {"ef": 800}  # ef never below 4 x top_k: a large top_k's recall
    assert hnsw.search_params_for("HNSW", 10) == {"ef": 64}
    assert hnsw.search_params_for("IVF_FLAT", 10) == {"nprobe": 32}  # a collection keeps the index it was made with
    with pytest.raises(ValueError, match="unknown vector index type"):
        VectorIndex.parse("ANNOY")
    with pytest.raises(ValueError, match="JSON object"):
        VectorIndex.parse("HNSW", "[1]")


def test_server_versions_before_2_4_replace_by_delete_then_insert():
    assert milvus_gallery._older_than("v2.3.5-lite", (2, 4))
    assert not milvus_gallery._older_than("v2.5.1", (2, 4)) and not milvus_gallery._older_than("weird", (2, 4))


class _Flaky:
    """A function that fails `failures` times with `error`, then answers."""

    def __init__(self, failures, error):
        self.failures, self.error, self.timeouts = failures, error, []

    def __call__(self, client, timeout):
        self.timeouts.append(timeout)
        if len(self.timeouts) <= self.failures:
            raise self.error
        return "answer"


@pytest.fixture
def adapter():
    gallery = MilvusGallery("http://127.0.0.1:1", timeout=5.0)
    gallery._client = object()  # the tested calls never use it: no connection is made
    return gallery


def test_transient_failures_are_retried_within_the_callers_deadline(adapter):
    flaky = _Flaky(2, MilvusUnavailableException(message="server unavailable"))
    with deadlines.deadline_scope(3.0):
        assert adapter._call("search", flaky) == "answer"
    assert len(flaky.timeouts) == 3 and all(0 < t <= 3.0 for t in flaky.timeouts)
    assert flaky.timeouts == sorted(flaky.timeouts, reverse=True)  # each try gets what is left of the deadline


def test_retries_stop_at_the_deadline_and_permanent_errors_are_not_retried(adapter):
    always = _Flaky(10**6, MilvusUnavailableException(message="connection refused"))
    started = time.monotonic()
    with deadlines.deadline_scope(0.5), pytest.raises(Unavailable, match="tried"):
        adapter._call("search", always)
    assert time.monotonic() - started < 1.5
    permanent = _Flaky(1, MilvusException(code=1100, message="invalid parameter: field foo"))
    with pytest.raises(Unavailable, match="invalid parameter"):
        adapter._call("search", permanent)
    assert len(permanent.timeouts) == 1
    with deadlines.deadline_scope(-1.0), pytest.raises(DeadlineExceeded):
        adapter._call("search", _Flaky(0, None))


class _LoadingClient:
    """Enough of pymilvus's client for the adapter to load a collection: records what it loaded."""

    def __init__(self):
        self.loaded = []

    def list_indexes(self, name, timeout=None):
        return [*milvus_gallery._SCALAR_INDEXED, "embedding"]

    def load_collection(self, name, timeout=None):
        self.loaded.append(name)


@pytest.mark.parametrize(
    "words",
    [
        "collection not loaded[collection=449]",  # the 2.3.5 server
        "Collection 'faces_m' is in state 'released'; call load() before search/get/query",  # Lite
    ],
)
def test_a_collection_found_released_is_loaded_then_the_call_retried(adapter, words):
    client = adapter._client = _LoadingClient()
    released_once = _Flaky(1, MilvusException(code=101, message=words))
    with deadlines.deadline_scope(5.0):
        assert adapter._call("find records to delete", released_once, "m") == "answer"
    assert client.loaded == [milvus_gallery.collection_name("m")] and len(released_once.timeouts) == 2


class _SlowFailure:
    """A Milvus that never answers: each try takes its whole timeout, then fails as unavailable."""

    def __init__(self):
        self.tries = 0

    def __call__(self, client, timeout):
        self.tries += 1
        time.sleep(timeout)
        raise MilvusUnavailableException(message="connection refused")


def test_a_milvus_that_never_answers_is_reported_unavailable_before_the_callers_deadline(adapter):
    # As the service runs it: the work's deadline is the caller's less the answer margin, so the
    # UNAVAILABLE naming the URI reaches the caller before it gives up (a flaky integration test
    # saw DEADLINE_EXCEEDED when the last try ran to the caller's own deadline).
    caller_seconds = 1.0
    slow = _SlowFailure()
    started = time.monotonic()
    with deadlines.deadline_scope(deadlines.for_work(caller_seconds)), pytest.raises(Unavailable) as caught:
        adapter._call("list collections", slow)
    elapsed = time.monotonic() - started
    assert "127.0.0.1:1" in caught.value.message and "connection refused" in caught.value.message
    assert elapsed <= caller_seconds - 0.09, elapsed  # the margin (a tenth of 1 s) was left for the answer
    assert slow.tries >= 1


def test_the_answer_margin_is_a_tenth_of_the_callers_time_up_to_a_quarter_second():
    assert deadlines.for_work(None) is None
    assert deadlines.for_work(5.0) == pytest.approx(4.75)
    assert deadlines.for_work(0.1) == pytest.approx(0.09)
    assert deadlines.for_work(-1.0) == -1.0  # already passed: nothing to keep back


def test_bad_tenant_or_consistency_in_a_request_is_invalid_argument():
    from kinship.indexer.transport import consistency_from_proto
    from kinship.runtime.tenancy import resolve_tenant

    with pytest.raises(InvalidArgument, match="tenant"):
        resolve_tenant("no spaces")
    with pytest.raises(InvalidArgument, match="consistency"):
        consistency_from_proto(7)


def test_records_carry_their_times_through_the_transport():
    from kinship.indexer.transport import record_from_proto, record_to_proto
    from kinship.v1 import indexer_pb2

    message = indexer_pb2.GalleryRecord(record_id="r", person_id="p", embedding=unit().tolist())
    message.captured_at.seconds, message.expires_at.seconds = 1000, 2000
    record = record_from_proto(message, "records[0]")
    assert (record.captured_at, record.expires_at) == (1000, 2000)
    back = record_to_proto(GalleryRecord("r", "p", unit(), Attributes(), 1000, None, 1500, "t"))
    assert (back.captured_at.seconds, back.HasField("expires_at"), back.enrolled_at.seconds, back.tenant) == (
        1000,
        False,
        1500,
        "t",
    )


def test_vectors_reach_milvus_bit_exact_through_the_packed_float_array():
    vectors = np.random.default_rng(3).normal(size=(300, 512)).astype(np.float32)  # 614,400 bytes: a 3-byte length
    parsed = milvus_gallery._float_array(vectors)
    np.testing.assert_array_equal(np.asarray(parsed.data, dtype=np.float32), vectors.ravel())
    assert milvus_gallery._varint(300) == b"\xac\x02" and milvus_gallery._varint(5) == b"\x05"


def test_columns_hold_every_field_of_the_records_in_order_and_slice_alike():
    records = [
        rec("r1", "p1", unit(1), attributes=Attributes(birth_year=1980, sex=Sex.FEMALE, region="north")),
        rec("r2", "p2", unit(2), captured_at=1_600_000_000, expires_at=2_000_000_000),
    ]
    columns = milvus_gallery.Columns.of(records, "agency-a", now=1_700_000_000)
    assert columns.strings["key"] == ["agency-a:r1", "agency-a:r2"] and columns.strings["tenant"] == ["agency-a"] * 2
    assert columns.ints["birth_year"] == [1980, milvus_gallery.UNKNOWN_BIRTH_YEAR]
    assert columns.ints["sex"] == [int(Sex.FEMALE), int(Sex.UNSPECIFIED)]
    assert columns.ints["captured_at"] == [milvus_gallery.NO_TIME, 1_600_000_000]
    assert columns.ints["expires_at"] == [milvus_gallery.NO_TIME, 2_000_000_000]
    assert columns.ints["enrolled_at"] == [1_700_000_000] * 2
    np.testing.assert_array_equal(columns.vectors, np.stack([unit(1), unit(2)]))
    second = columns.slice(1, 2)
    assert len(second) == 1 and second.strings["record_id"] == ["r2"] and second.ints["expires_at"] == [2_000_000_000]
    (row,) = second.rows()  # pymilvus's row form, for clients without the column-wise path
    assert row["key"] == "agency-a:r2" and row["region"] == "" and row["captured_at"] == 1_600_000_000
    np.testing.assert_array_equal(row["embedding"], unit(2))


class _RecordingClient:
    """Stands in for MilvusClient's create_collection, recording its arguments."""

    def __init__(self):
        self.created = {}

    def create_collection(self, name, **kwargs):
        self.created[name] = kwargs


@pytest.mark.parametrize(("uri", "expected"), [("http://milvus:19530", {"num_shards": 3}), ("/tmp/g.db", {})])
def test_server_collections_get_the_configured_shards_and_lite_its_single_one(uri, expected):
    gallery = MilvusGallery(uri, shards=3)
    client = _RecordingClient()
    gallery._client = client
    schema, index_params = gallery._schema("m1", 4)
    gallery._create("faces_m1", "m1", schema, index_params)
    arguments = client.created["faces_m1"]
    assert {k: v for k, v in arguments.items() if k == "num_shards"} == expected
    assert arguments["consistency_level"] == "Bounded"


class _RacingIndexesClient:
    """A Milvus whose create_collection creates the collection and its indexes, but whose last
    index-state poll says "no index on collection" (Milvus Lite, once in the integration suite);
    or, with `indexes_appear=False`, one that created the collection without any index."""

    def __init__(self, indexes_appear=True):
        self.collections, self.loaded, self.indexes_appear = set(), [], indexes_appear

    def has_collection(self, name, timeout=None):
        return name in self.collections

    def create_collection(self, name, **kwargs):
        self.collections.add(name)
        raise MilvusException(code=700, message=f"no index on collection '{name}'")

    def list_indexes(self, name, timeout=None):
        return [*milvus_gallery._SCALAR_INDEXED, "embedding"] if self.indexes_appear else []

    def load_collection(self, name, timeout=None):
        self.loaded.append(name)


def test_a_collection_whose_creation_misreported_its_indexes_is_loaded_once_they_are_listed():
    gallery = MilvusGallery("/tmp/g.db")
    gallery._client = client = _RacingIndexesClient()
    gallery._create_collection("m1", "faces_m1", 4)
    assert client.loaded == ["faces_m1"] and gallery.known_dimension("m1") == 4


def test_a_collection_left_without_indexes_is_unavailable_naming_what_is_missing():
    gallery = MilvusGallery("/tmp/g.db")
    gallery._client = client = _RacingIndexesClient(indexes_appear=False)
    with deadlines.deadline_scope(0.5), pytest.raises(Unavailable, match="indexes missing: .*embedding"):
        gallery._create_collection("m1", "faces_m1", 4)
    assert client.loaded == [] and gallery.known_dimension("m1") is None
