"""The servicer's protobuf <-> domain translation, over the fake store (no network)."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest

from kinship.indexer.domain.gallery import Gallery
from kinship.indexer.domain.model import SearchFilter, Sex
from kinship.indexer.transport import GalleryExecutor, IndexerServicer
from kinship.runtime.errors import InvalidArgument, Unavailable
from kinship.v1 import common_pb2, indexer_pb2

from .conftest import FakeStore


def unit(seed):
    v = np.random.default_rng(seed).normal(size=4).astype(np.float32)
    return v / np.linalg.norm(v)


def call(method, request):
    return asyncio.run(method(request, None))


@pytest.fixture
def servicer(gallery):
    executor = GalleryExecutor(2)
    yield IndexerServicer(gallery, executor)
    executor.shutdown()


def enrol(servicer):
    records = [
        indexer_pb2.GalleryRecord(
            record_id="r1",
            person_id="p1",
            embedding=unit(1).tolist(),
            attributes=common_pb2.PersonAttributes(
                birth_year=1990, sex=common_pb2.SEX_FEMALE, region="IT-MI", source="s"
            ),
        ),
        indexer_pb2.GalleryRecord(record_id="r2", person_id="p2", embedding=unit(2).tolist()),
    ]
    return call(servicer.Upsert, indexer_pb2.UpsertRequest(model_id="m1", records=records))


def test_upsert_translates_records_and_attributes(servicer, store):
    reply = enrol(servicer)
    assert reply.upserted_count == 2 and reply.collection == "faces_m1"
    stored = {key[1]: r for key, r in store.collections["m1"][1].items() if key[0] == "default"}
    assert stored["r1"].attributes.birth_year == 1990 and stored["r1"].attributes.sex is Sex.FEMALE
    assert stored["r2"].attributes.birth_year is None  # unset optional stays unknown, not 0
    np.testing.assert_allclose(stored["r1"].embedding, unit(1), atol=1e-7)


def test_search_translates_filter_and_hits(servicer, store):
    enrol(servicer)
    unfiltered = indexer_pb2.SearchRequest(
        model_id="m1",
        queries=[
            indexer_pb2.QueryEmbedding(embedding=unit(1).tolist()),
            indexer_pb2.QueryEmbedding(embedding=unit(2).tolist()),
        ],
        top_k=2,
    )
    reply = call(servicer.Search, unfiltered)
    assert store.last_filter == SearchFilter()
    assert [r.hits[0].record_id for r in reply.results] == ["r1", "r2"]
    first = reply.results[0].hits[0]
    assert first.similarity == pytest.approx(1.0, abs=1e-6)
    assert first.attributes.birth_year == 1990 and first.attributes.sex == common_pb2.SEX_FEMALE
    assert not reply.results[1].hits[0].attributes.HasField("birth_year")
    request = indexer_pb2.SearchRequest(
        model_id="m1",
        queries=[
            indexer_pb2.QueryEmbedding(embedding=unit(1).tolist()),
            indexer_pb2.QueryEmbedding(embedding=unit(2).tolist()),
        ],
        top_k=2,
        filter=indexer_pb2.SearchFilter(
            birth_year=common_pb2.BirthYearRange(max=2000),
            sex=common_pb2.SEX_MALE,
            regions=["IT-MI"],
            exclude_person_ids=["p3"],
        ),
    )
    reply = call(servicer.Search, request)
    flt = store.last_filter
    assert (flt.birth_year_min, flt.birth_year_max, flt.sex) == (None, 2000, Sex.MALE)
    assert flt.regions == ("IT-MI",) and flt.exclude_person_ids == ("p3",)
    assert [len(r.hits) for r in reply.results] == [0, 0]  # no enrolled man from IT-MI


class _ThreadNotingStore(FakeStore):
    """Notes the thread each search ran on."""

    def __init__(self):
        super().__init__()
        self.search_threads: list[str] = []

    def search(self, *args):
        self.search_threads.append(threading.current_thread().name)
        return super().search(*args)


class _FailingSoonStore(_ThreadNotingStore):
    """A store whose thread-less search is started but fails (as a Milvus call can)."""

    def search_soon(self, model_id, tenant, queries, top_k, flt, consistency):
        async def failed():
            self.searched_soon += 1
            return None

        return failed()


@pytest.mark.parametrize(
    ("store_type", "soon", "threads"),
    [
        (_ThreadNotingStore, True, ["MainThread"]),  # answered on the event loop
        (_ThreadNotingStore, False, ["indexer-gallery_0"]),  # the store cannot: a gallery thread
        (_FailingSoonStore, True, ["indexer-gallery_0"]),  # it failed: a gallery thread answers
    ],
    ids=["on-the-loop", "cannot", "failed"],
)
def test_a_search_is_answered_on_the_event_loop_where_the_store_can_and_on_a_thread_otherwise(
    store_type, soon, threads
):
    store = store_type()
    store.soon = soon
    executor = GalleryExecutor(1)
    servicer = IndexerServicer(Gallery(store), executor)
    request = indexer_pb2.SearchRequest(
        model_id="m1", queries=[indexer_pb2.QueryEmbedding(embedding=unit(2).tolist())], top_k=1
    )
    try:
        enrol(servicer)
        reply = call(servicer.Search, request)
    finally:
        executor.shutdown()
    assert [h.record_id for h in reply.results[0].hits] == ["r2"]  # the same answer every way
    assert store.search_threads == threads
    assert store.searched_soon == (1 if soon else 0)


def test_the_thread_less_search_checks_what_the_blocking_one_checks(gallery, store):
    store.soon = True
    store.upsert("m1", 4, "default", [])
    with pytest.raises(InvalidArgument, match="top_k"):
        gallery.search_soon("m1", [unit(1)], 0, SearchFilter())
    with pytest.raises(InvalidArgument):
        gallery.search_soon("m1", [np.ones(3, dtype=np.float32) / np.sqrt(3)], 1, SearchFilter())  # wrong length
    assert gallery.search_soon("unknown-model", [unit(1)], 1, SearchFilter()) is None  # blocking path says NOT_FOUND
    assert store.searched_soon == 0


def test_get_records_translates_the_filter(servicer, store):
    enrol(servicer)
    request = indexer_pb2.GetRecordsRequest(
        model_id="m1",
        person_ids=["p1", "p2"],
        filter=indexer_pb2.SearchFilter(
            birth_year=common_pb2.BirthYearRange(min=1980, max=1995),
            sex=common_pb2.SEX_FEMALE,
            regions=["IT-MI"],
            exclude_person_ids=["p9"],
        ),
    )
    records = call(servicer.GetRecords, request).records
    assert [r.record_id for r in records] == ["r1"]  # p2 has no birth year, sex or region
    assert store.last_filter == SearchFilter(1980, 1995, Sex.FEMALE, ("IT-MI",), ("p9",))
    unfiltered = call(servicer.GetRecords, indexer_pb2.GetRecordsRequest(model_id="m1", person_ids=["p1", "p2"]))
    assert {r.record_id for r in unfiltered.records} == {"r1", "r2"} and store.last_filter == SearchFilter()


def test_get_records_with_a_bad_filter_is_invalid_argument(servicer):
    enrol(servicer)
    request = indexer_pb2.GetRecordsRequest(
        model_id="m1", person_ids=["p1"], filter=indexer_pb2.SearchFilter(sex=9, regions=["a b"])
    )
    with pytest.raises(InvalidArgument) as caught:
        call(servicer.GetRecords, request)
    assert caught.value.violations[0].field == "filter.sex"


def test_unknown_sex_value_is_invalid_argument(servicer):
    record = indexer_pb2.GalleryRecord(record_id="r", person_id="p", embedding=unit(1).tolist())
    record.attributes.sex = 7
    with pytest.raises(InvalidArgument) as caught:
        call(servicer.Upsert, indexer_pb2.UpsertRequest(model_id="m1", records=[record]))
    assert caught.value.violations[0].field == "records[0].attributes.sex"


def test_get_records_delete_and_list_collections(servicer):
    enrol(servicer)
    records = call(servicer.GetRecords, indexer_pb2.GetRecordsRequest(model_id="m1", person_ids=["p1"])).records
    assert [r.record_id for r in records] == ["r1"]
    np.testing.assert_allclose(records[0].embedding, unit(1), atol=1e-7)
    (info,) = call(servicer.ListCollections, indexer_pb2.ListCollectionsRequest()).collections
    assert (info.model_id, info.name, info.dimension, info.record_count) == ("m1", "faces_m1", 4, 2)
    assert call(servicer.Delete, indexer_pb2.DeleteRequest(person_ids=["p1"], record_ids=["r2"])).deleted_count == 2


def test_the_calls_deadline_reaches_the_gallery_thread():
    from kinship.runtime import deadlines

    executor = GalleryExecutor(1)
    try:
        # The interceptors bind the call's deadline; the executor carries it into the thread.
        with deadlines.deadline_scope(2.0):
            assert 1.5 < asyncio.run(executor.run(deadlines.remaining, 100.0)) <= 2.0
        assert asyncio.run(executor.run(deadlines.remaining, 7.0)) == 7.0  # no deadline: the adapter's own
    finally:
        executor.shutdown()


def test_requests_without_a_tenant_act_for_the_default_tenant(servicer, store):
    reply = enrol(servicer)
    assert reply.tenant == "default"
    assert {key[0] for key in store.collections["m1"][1]} == {"default"}
    other = indexer_pb2.UpsertRequest(
        model_id="m1",
        tenant="agency-x",
        records=[indexer_pb2.GalleryRecord(record_id="r1", person_id="p9", embedding=unit(3).tolist())],
    )
    assert call(servicer.Upsert, other).tenant == "agency-x"
    found = call(
        servicer.Search,
        indexer_pb2.SearchRequest(
            model_id="m1", queries=[indexer_pb2.QueryEmbedding(embedding=unit(3).tolist())], top_k=5, tenant="agency-x"
        ),
    )
    assert [h.person_id for h in found.results[0].hits] == ["p9"]


def _batch(first: int, count: int) -> indexer_pb2.BulkEnrolRequest:
    return indexer_pb2.BulkEnrolRequest(
        model_id="m1",
        records=[
            indexer_pb2.GalleryRecord(record_id=f"r{i}", person_id=f"p{i}", embedding=unit(i).tolist())
            for i in range(first, first + count)
        ],
    )


def test_only_the_last_of_concurrent_bulk_enrolments_into_a_model_flushes(servicer, store):
    # A flush at the end of each stream would seal the other streams' half-filled segments.
    async def scenario():
        first_may_end, second_may_end = asyncio.Event(), asyncio.Event()

        async def stream(first: int, may_end: asyncio.Event):
            yield _batch(first, 3)
            await may_end.wait()
            yield _batch(first + 3, 2)

        async def drain(replies):
            return [reply async for reply in replies]

        one = asyncio.create_task(drain(servicer.BulkEnrol(stream(0, first_may_end), None)))
        two = asyncio.create_task(drain(servicer.BulkEnrol(stream(100, second_may_end), None)))
        while len(store.collections.get("m1", (0, {}))[1]) < 6:  # both streams under way
            await asyncio.sleep(0.01)
        first_may_end.set()
        first = await one
        flushed_after_first = list(store.flushed)
        second_may_end.set()
        second = await two
        return first, flushed_after_first, second

    first, flushed_after_first, second = asyncio.run(scenario())
    assert first[-1].done and first[-1].enrolled_total == 5
    assert second[-1].done and second[-1].enrolled_total == 5
    assert flushed_after_first == []  # the other stream was still loading
    assert store.flushed == ["m1"]  # the last stream to end sealed everything
    assert len(store.collections["m1"][1]) == 10


def test_a_lone_bulk_enrolment_flushes_at_its_end(servicer, store):
    async def one_stream():
        yield _batch(0, 2)

    async def scenario():
        return [reply async for reply in servicer.BulkEnrol(one_stream(), None)]

    replies = asyncio.run(scenario())
    assert replies[-1].done and replies[-1].enrolled_total == 2
    assert store.flushed == ["m1"]


class SlowStore(FakeStore):
    """Writes take a while, as Milvus's round trips do; counts how many run at once, and can fail one."""

    def __init__(self, seconds: float, fail_batch_with: str | None = None):
        super().__init__()
        self._seconds = seconds
        self._fail_with = fail_batch_with
        self._lock = threading.Lock()
        self.running = self.most_at_once = 0

    def upsert(self, model_id, dimension, tenant, records):
        with self._lock:
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            time.sleep(self._seconds)
            if self._fail_with and any(r.record_id == self._fail_with for r in records):
                raise Unavailable("milvus went away")
            return super().upsert(model_id, dimension, tenant, records)
        finally:
            with self._lock:
                self.running -= 1


def _bulk(servicer, batches):
    async def stream():
        for batch in batches:
            yield batch

    async def scenario():
        return [reply async for reply in servicer.BulkEnrol(stream(), None)]

    return asyncio.run(scenario())


def test_a_bulk_stream_stores_several_batches_at_once_and_answers_in_order():
    store = SlowStore(0.05)
    executor = GalleryExecutor(8)
    try:
        servicer = IndexerServicer(Gallery(store), executor, bulk_depth=4)
        batches = [_batch(10 * n, 2) for n in range(6)]
        batches[3].records[1].embedding[:] = [2.0, 0, 0, 0]  # not normalised: refused, the rest stored
        replies = _bulk(servicer, batches)
    finally:
        executor.shutdown()
    assert store.most_at_once == 4
    assert [r.received_total for r in replies[:-1]] == [2, 4, 6, 8, 10, 12]
    assert [r.enrolled_total for r in replies[:-1]] == [2, 4, 6, 7, 9, 11]
    assert [len(r.failures) for r in replies[:-1]] == [0, 0, 0, 1, 0, 0]
    assert replies[3].failures[0].record_id == "r31" and replies[3].failures[0].index == 7
    assert replies[-1].done and replies[-1].enrolled_total == 11 and replies[-1].failed_total == 1
    assert len(store.collections["m1"][1]) == 11


def test_a_record_id_repeated_in_a_later_batch_is_refused_while_the_first_is_still_being_stored():
    store = SlowStore(0.1)
    executor = GalleryExecutor(8)
    try:
        servicer = IndexerServicer(Gallery(store), executor, bulk_depth=4)
        replies = _bulk(servicer, [_batch(0, 2), _batch(1, 2)])  # r1 in both
    finally:
        executor.shutdown()
    assert [f.record_id for f in replies[1].failures] == ["r1"]
    assert "repeats 'r1' earlier in this stream" in replies[1].failures[0].reason
    assert replies[-1].enrolled_total == 3


def test_a_failed_batch_ends_the_stream_with_its_error_after_the_batches_before_it_are_answered():
    store = SlowStore(0.02, fail_batch_with="r20")
    executor = GalleryExecutor(8)
    answered = []

    async def scenario():
        async def stream():
            for n in range(6):
                yield _batch(10 * n, 2)

        async for reply in servicer.BulkEnrol(stream(), None):
            answered.append(reply)

    try:
        servicer = IndexerServicer(Gallery(store), executor, bulk_depth=4)
        with pytest.raises(Unavailable, match="milvus went away"):
            asyncio.run(scenario())
    finally:
        executor.shutdown()
    # Batches 0 and 1 were stored and answered; batch 2 failed; nothing after it was acknowledged.
    assert [r.enrolled_total for r in answered] == [2, 4]


class BlockingStore(FakeStore):
    """Writes wait until released, as a bulk load waits on a busy Milvus."""

    def __init__(self):
        super().__init__()
        self.release = threading.Event()
        self.writing = threading.Semaphore(0)

    def upsert(self, model_id, dimension, tenant, records):
        if self.collections.get(model_id):  # the first write, which creates the collection, goes through
            self.writing.release()
            self.release.wait(10)
        return super().upsert(model_id, dimension, tenant, records)


def test_a_search_is_answered_while_a_bulk_load_holds_every_bulk_thread():
    store = BlockingStore()
    searches, bulk = GalleryExecutor(2), GalleryExecutor(2, name="bulk")
    try:
        servicer = IndexerServicer(Gallery(store), searches, bulk_depth=4, bulk_executor=bulk)
        call(servicer.Upsert, indexer_pb2.UpsertRequest(model_id="m1", records=_batch(100, 1).records))

        async def scenario():
            async def stream():
                for n in range(4):
                    yield _batch(10 * n, 2)

            load = asyncio.create_task(servicer.BulkEnrol(stream(), None).__anext__())
            for _ in range(2):  # both bulk threads are now stuck in a write
                await asyncio.to_thread(store.writing.acquire, True, 10)
            query = indexer_pb2.SearchRequest(
                model_id="m1", queries=[indexer_pb2.QueryEmbedding(embedding=unit(100).tolist())], top_k=1
            )
            found = await asyncio.wait_for(servicer.Search(query, None), 5)
            store.release.set()
            await load
            return found

        found = asyncio.run(scenario())
    finally:
        store.release.set()
        searches.shutdown()
        bulk.shutdown()
    assert [h.record_id for h in found.results[0].hits] == ["r100"]
