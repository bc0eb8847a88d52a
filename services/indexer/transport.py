"""kinship.v1.Indexer over gRPC: protobuf <-> domain, nothing more.

Gallery calls block on Milvus, so each runs on the indexer's own bounded thread pool
(`GalleryExecutor`), never on the event loop and never on the pool the health ping
uses. Each call carries its context into that thread, with the call's deadline that the
interceptors bound (`kinship.runtime.deadlines`: the caller's, capped by the deployment),
which the Milvus adapter uses as its timeout.
The tenant of every call is decided by `kinship.runtime.tenancy.resolve_tenant`.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import grpc
import numpy as np

from kinship.domain.people import sex_from_pb
from kinship.runtime.errors import InvalidArgument
from kinship.runtime.tenancy import resolve_tenant
from kinship.v1 import common_pb2, indexer_pb2, indexer_pb2_grpc

from .domain.gallery import Gallery
from .domain.model import (
    Attributes,
    CollectionInfo,
    CollectionStats,
    Consistency,
    GalleryRecord,
    Hit,
    SearchFilter,
    Sex,
)

T = TypeVar("T")

_CONSISTENCY_FROM_PROTO = {
    indexer_pb2.READ_CONSISTENCY_UNSPECIFIED: Consistency.UNSPECIFIED,
    indexer_pb2.READ_CONSISTENCY_BOUNDED: Consistency.BOUNDED,
    indexer_pb2.READ_CONSISTENCY_STRONG: Consistency.STRONG,
}


class GalleryExecutor:
    """The indexer's own bounded pool for blocking gallery work, carrying each call's context."""

    def __init__(self, workers: int, name: str = "indexer-gallery"):
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)

    async def run(self, function: Callable[..., T], *args: object) -> T:
        call_context = contextvars.copy_context()  # the deadline and log context follow the call
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, partial(call_context.run, function, *args))

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


#: A bulk batch being stored: the stream's received total after it, its refused records, its store.
_Storing = tuple[int, list[indexer_pb2.EnrolFailure], "asyncio.Future[int]"]


@dataclass
class _EnrolTotals:
    enrolled: int = 0
    failed: int = 0


def _ignore_outcome(future: asyncio.Future) -> None:
    if not future.cancelled():
        future.exception()  # retrieved, so asyncio does not log it as never retrieved


class IndexerServicer(indexer_pb2_grpc.IndexerServicer):
    def __init__(
        self,
        gallery: Gallery,
        executor: GalleryExecutor,
        on_write: Callable[[str], None] = lambda _: None,
        *,
        bulk_depth: int = 1,
        bulk_executor: GalleryExecutor | None = None,
    ):
        self._gallery = gallery
        self._executor = executor
        self._on_write = on_write
        # Batches of one bulk-enrolment stream stored at once (1: one after another).
        self._bulk_depth = max(1, bulk_depth)
        # Bulk enrolments run on a pool of their own, so a load never takes the threads searches need.
        self._bulk_executor = bulk_executor or executor
        # How many bulk enrolments stream into each model now: only the last to end flushes.
        self._bulk_streams: collections.Counter[str] = collections.Counter()

    async def Upsert(self, request: indexer_pb2.UpsertRequest, context: grpc.aio.ServicerContext):
        tenant = resolve_tenant(request.tenant)
        records = [record_from_proto(r, f"records[{i}]") for i, r in enumerate(request.records)]
        result = await self._executor.run(self._gallery.upsert, request.model_id, records, tenant)
        self._on_write(request.model_id)
        return indexer_pb2.UpsertResponse(
            upserted_count=result.upserted_count, collection=result.collection, tenant=result.tenant
        )

    async def BulkEnrol(
        self, request_iterator: AsyncIterator[indexer_pb2.BulkEnrolRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[indexer_pb2.BulkEnrolResponse]:
        """Checks each batch in order, stores up to `bulk_depth` of them at once, answers in order.

        Storing a batch waits on Milvus (on 2.3 a Strong read, then the insert: about 0.5 s
        a batch at a million rows), while the stream's later batches are ready: storing one at
        a time left Milvus and the indexer half idle (docs/benchmarks.md). A batch's record ids
        are checked against the stream's earlier ones before any later batch is, so a repeat
        is refused as before; each answer still comes once its batch is stored.
        """
        model_id: str | None = None
        tenant = ""
        dimension: int | None = None
        received = 0
        seen: set[str] = set()
        totals = _EnrolTotals()
        storing: collections.deque[_Storing] = collections.deque()
        try:
            async for batch in request_iterator:
                if model_id is None:
                    model_id, tenant = batch.model_id, resolve_tenant(batch.tenant)
                    self._bulk_streams[model_id] += 1
                elif batch.model_id != model_id or (batch.tenant and resolve_tenant(batch.tenant) != tenant):
                    raise InvalidArgument(
                        f"every batch of a bulk enrolment must name model {model_id!r} and tenant {tenant!r}; the "
                        f"batch after record {received} names {batch.model_id!r} and {batch.tenant!r}: start another "
                        "stream for another model or tenant",
                        field="model_id",
                    )
                indexed, failures = [], []
                for index, message in enumerate(batch.records, start=received):
                    try:
                        indexed.append((index, record_from_proto(message, f"records[{index}]")))
                    except InvalidArgument as exc:  # a bad enum value: reported like any other bad record
                        failures.append(
                            indexer_pb2.EnrolFailure(record_id=message.record_id, index=index, reason=exc.message)
                        )
                checked = await self._bulk_executor.run(self._gallery.check_batch, model_id, indexed, seen, dimension)
                dimension = dimension or checked.dimension
                failures += [
                    indexer_pb2.EnrolFailure(record_id=f.record_id, index=f.index, reason=f.reason)
                    for f in checked.failures
                ]
                received += len(batch.records)
                store = asyncio.ensure_future(
                    self._bulk_executor.run(self._gallery.store_batch, model_id, tenant, checked)
                )
                storing.append((received, failures, store))
                while storing and (len(storing) >= self._bulk_depth or storing[0][2].done()):
                    yield await self._stored(model_id, storing.popleft(), totals)
            while storing:
                yield await self._stored(model_id, storing.popleft(), totals)
            if model_id is not None and totals.enrolled and self._bulk_streams[model_id] == 1:
                # The end of a bulk load: seal the fresh rows so they are indexed, not searched by brute force.
                # Only the last of concurrent loads into a model flushes: a flush at the end of each would
                # seal the others' half-filled segments, and Milvus would later merge the small segments
                # and index them again (docs/indexer.md); the last one's flush seals every stream's rows.
                await self._bulk_executor.run(self._gallery.flush, [model_id])
        finally:
            for _, _, store in storing:  # the stream failed: nobody waits for these any more
                store.add_done_callback(_ignore_outcome)
            if model_id is not None:
                self._bulk_streams[model_id] -= 1
                if self._bulk_streams[model_id] <= 0:
                    del self._bulk_streams[model_id]
        yield indexer_pb2.BulkEnrolResponse(
            received_total=received, enrolled_total=totals.enrolled, failed_total=totals.failed, done=True
        )

    async def _stored(
        self,
        model_id: str,
        entry: _Storing,
        totals: _EnrolTotals,
    ) -> indexer_pb2.BulkEnrolResponse:
        received, failures, store = entry
        stored = await store
        totals.enrolled += stored
        totals.failed += len(failures)
        if stored:
            self._on_write(model_id)
        return indexer_pb2.BulkEnrolResponse(
            received_total=received, enrolled_total=totals.enrolled, failed_total=totals.failed, failures=failures
        )

    async def Search(self, request: indexer_pb2.SearchRequest, context: grpc.aio.ServicerContext):
        tenant = resolve_tenant(request.tenant)
        queries = [_vector(q.embedding) for q in request.queries]
        flt = filter_from_proto(request.filter)
        consistency = consistency_from_proto(request.consistency)
        # On the event loop where the store can (no thread switch); else, or where that failed,
        # on a gallery thread, which retries within the deadline and says what failed.
        soon = self._gallery.search_soon(request.model_id, queries, request.top_k, flt, tenant, consistency)
        results = await soon if soon is not None else None
        if results is None:
            results = await self._executor.run(
                self._gallery.search, request.model_id, queries, request.top_k, flt, tenant, consistency
            )
        response = indexer_pb2.SearchResponse(
            results=[indexer_pb2.QueryResult(hits=[hit_to_proto(h) for h in hits]) for hits in results]
        )
        if request.count_excluded_unknown:
            excluded = await self._executor.run(self._gallery.count_excluded_unknown, request.model_id, flt, tenant)
            response.excluded_unknown.birth_year = excluded.birth_year
            response.excluded_unknown.sex = excluded.sex
        return response

    async def GetRecords(self, request: indexer_pb2.GetRecordsRequest, context: grpc.aio.ServicerContext):
        tenant = resolve_tenant(request.tenant)
        flt = filter_from_proto(request.filter)
        consistency = consistency_from_proto(request.consistency)
        with_embeddings = not request.omit_embeddings
        if request.all_people:
            if request.person_ids:
                raise InvalidArgument(
                    "give person_ids or all_people, not both (all_people lists every person)", field="person_ids"
                )
            page = await self._executor.run(
                partial(
                    self._gallery.list_people,
                    page_size=request.page_size,
                    page_token=request.page_token,
                    with_embeddings=with_embeddings,
                ),
                request.model_id,
                flt,
                tenant,
                consistency,
            )
            return indexer_pb2.GetRecordsResponse(
                records=[record_to_proto(r) for r in page.records], next_page_token=page.next_page_token
            )
        if request.page_size or request.page_token:
            raise InvalidArgument("page_size and page_token page a listing: set all_people too", field="page_token")
        records = await self._executor.run(
            partial(self._gallery.get_records, with_embeddings=with_embeddings),
            request.model_id,
            list(request.person_ids),
            flt,
            tenant,
            consistency,
        )
        return indexer_pb2.GetRecordsResponse(records=[record_to_proto(r) for r in records])

    async def Delete(self, request: indexer_pb2.DeleteRequest, context: grpc.aio.ServicerContext):
        tenant = resolve_tenant(request.tenant)
        result = await self._executor.run(
            partial(self._gallery.delete, await_compaction=request.await_compaction),
            request.model_id,
            list(request.person_ids),
            list(request.record_ids),
            tenant,
        )
        return indexer_pb2.DeleteResponse(
            deleted_count=result.deleted_count,
            compacted=result.compacted,
            compaction_seconds=result.compaction_seconds,
        )

    async def ListCollections(self, request: indexer_pb2.ListCollectionsRequest, context: grpc.aio.ServicerContext):
        collections = await self._executor.run(self._gallery.list_collections)
        return indexer_pb2.ListCollectionsResponse(collections=[collection_to_proto(c) for c in collections])

    async def Stats(self, request: indexer_pb2.StatsRequest, context: grpc.aio.ServicerContext):
        tenant = resolve_tenant(request.tenant)
        stats = await self._executor.run(self._gallery.stats, tenant)
        return indexer_pb2.StatsResponse(collections=[stats_to_proto(s) for s in stats], tenant=tenant)


def _vector(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def sex_from_proto(value: int, field: str) -> Sex:
    try:
        return sex_from_pb(value)
    except ValueError:
        raise InvalidArgument(
            f"unknown sex value {value}; use SEX_UNSPECIFIED, SEX_FEMALE or SEX_MALE", field=field
        ) from None


def consistency_from_proto(value: int) -> Consistency:
    try:
        return _CONSISTENCY_FROM_PROTO[value]
    except KeyError:
        raise InvalidArgument(
            f"unknown consistency value {value}; use READ_CONSISTENCY_BOUNDED or READ_CONSISTENCY_STRONG",
            field="consistency",
        ) from None


def attributes_from_proto(message: common_pb2.PersonAttributes, field: str) -> Attributes:
    return Attributes(
        birth_year=message.birth_year if message.HasField("birth_year") else None,
        sex=sex_from_proto(message.sex, f"{field}.sex"),
        region=message.region,
        source=message.source,
    )


def attributes_to_proto(attributes: Attributes) -> common_pb2.PersonAttributes:
    message = common_pb2.PersonAttributes(sex=int(attributes.sex), region=attributes.region, source=attributes.source)
    if attributes.birth_year is not None:
        message.birth_year = attributes.birth_year
    return message


def record_from_proto(message: indexer_pb2.GalleryRecord, field: str) -> GalleryRecord:
    return GalleryRecord(
        record_id=message.record_id,
        person_id=message.person_id,
        embedding=_vector(message.embedding),
        attributes=attributes_from_proto(message.attributes, f"{field}.attributes"),
        captured_at=message.captured_at.seconds if message.HasField("captured_at") else None,
        expires_at=message.expires_at.seconds if message.HasField("expires_at") else None,
    )


def record_to_proto(record: GalleryRecord) -> indexer_pb2.GalleryRecord:
    message = indexer_pb2.GalleryRecord(
        record_id=record.record_id,
        person_id=record.person_id,
        embedding=record.embedding.tolist(),
        attributes=attributes_to_proto(record.attributes),
        tenant=record.tenant,
    )
    for name in ("captured_at", "expires_at", "enrolled_at"):
        value = getattr(record, name)
        if value is not None:
            getattr(message, name).seconds = value
    return message


def filter_from_proto(message: indexer_pb2.SearchFilter) -> SearchFilter:
    years = message.birth_year
    return SearchFilter(
        birth_year_min=years.min if years.HasField("min") else None,
        birth_year_max=years.max if years.HasField("max") else None,
        sex=sex_from_proto(message.sex, "filter.sex"),
        regions=tuple(message.regions),
        exclude_person_ids=tuple(message.exclude_person_ids),
        include_unknown=message.include_unknown,
    )


def hit_to_proto(hit: Hit) -> indexer_pb2.SearchHit:
    return indexer_pb2.SearchHit(
        record_id=hit.record_id,
        person_id=hit.person_id,
        similarity=hit.similarity,
        attributes=attributes_to_proto(hit.attributes),
    )


def collection_to_proto(info: CollectionInfo) -> indexer_pb2.CollectionInfo:
    return indexer_pb2.CollectionInfo(
        model_id=info.model_id,
        name=info.name,
        dimension=info.dimension,
        record_count=info.record_count,
        schema_version=info.schema_version,
    )


def stats_to_proto(stats: CollectionStats) -> indexer_pb2.CollectionStats:
    return indexer_pb2.CollectionStats(
        collection=collection_to_proto(stats.collection),
        tenant_record_count=stats.tenant_record_count,
        index_type=stats.index_type,
        index_params=stats.index_params,
        indexed_rows=stats.indexed_rows,
        pending_index_rows=stats.pending_index_rows,
        index_state=stats.index_state,
    )
