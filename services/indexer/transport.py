"""kinship.v1.Indexer over gRPC: protobuf <-> domain, nothing more.

Gallery calls block on Milvus, so each runs in a worker thread; the event loop
stays free for health checks and other calls.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

import grpc
import numpy as np

from kinship.runtime.errors import InvalidArgument
from kinship.v1 import common_pb2, indexer_pb2, indexer_pb2_grpc

from .domain.gallery import Gallery
from .domain.model import Attributes, CollectionInfo, GalleryRecord, Hit, SearchFilter, Sex

T = TypeVar("T")

_SEX_FROM_PROTO = {
    common_pb2.SEX_UNSPECIFIED: Sex.UNSPECIFIED,
    common_pb2.SEX_FEMALE: Sex.FEMALE,
    common_pb2.SEX_MALE: Sex.MALE,
}
_SEX_TO_PROTO = {sex: value for value, sex in _SEX_FROM_PROTO.items()}


class IndexerServicer(indexer_pb2_grpc.IndexerServicer):
    def __init__(self, gallery: Gallery):
        self._gallery = gallery

    async def Upsert(self, request: indexer_pb2.UpsertRequest, context: grpc.aio.ServicerContext):
        records = [record_from_proto(r, f"records[{i}]") for i, r in enumerate(request.records)]
        result = await _off_loop(self._gallery.upsert, request.model_id, records)
        return indexer_pb2.UpsertResponse(upserted_count=result.upserted_count, collection=result.collection)

    async def Search(self, request: indexer_pb2.SearchRequest, context: grpc.aio.ServicerContext):
        queries = [_vector(q.embedding) for q in request.queries]
        flt = filter_from_proto(request.filter)
        results = await _off_loop(self._gallery.search, request.model_id, queries, request.top_k, flt)
        return indexer_pb2.SearchResponse(
            results=[indexer_pb2.QueryResult(hits=[hit_to_proto(h) for h in hits]) for hits in results]
        )

    async def GetRecords(self, request: indexer_pb2.GetRecordsRequest, context: grpc.aio.ServicerContext):
        flt = filter_from_proto(request.filter)
        records = await _off_loop(self._gallery.get_records, request.model_id, list(request.person_ids), flt)
        return indexer_pb2.GetRecordsResponse(records=[record_to_proto(r) for r in records])

    async def Delete(self, request: indexer_pb2.DeleteRequest, context: grpc.aio.ServicerContext):
        deleted = await _off_loop(
            self._gallery.delete, request.model_id, list(request.person_ids), list(request.record_ids)
        )
        return indexer_pb2.DeleteResponse(deleted_count=deleted)

    async def ListCollections(self, request: indexer_pb2.ListCollectionsRequest, context: grpc.aio.ServicerContext):
        collections = await _off_loop(self._gallery.list_collections)
        return indexer_pb2.ListCollectionsResponse(collections=[collection_to_proto(c) for c in collections])


async def _off_loop(function: Callable[..., T], *args: object) -> T:
    return await asyncio.to_thread(function, *args)


def _vector(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def sex_from_proto(value: int, field: str) -> Sex:
    try:
        return _SEX_FROM_PROTO[value]
    except KeyError:
        raise InvalidArgument(
            f"unknown sex value {value}; use SEX_UNSPECIFIED, SEX_FEMALE or SEX_MALE", field=field
        ) from None


def attributes_from_proto(message: common_pb2.PersonAttributes, field: str) -> Attributes:
    return Attributes(
        birth_year=message.birth_year if message.HasField("birth_year") else None,
        sex=sex_from_proto(message.sex, f"{field}.sex"),
        region=message.region,
        source=message.source,
    )


def attributes_to_proto(attributes: Attributes) -> common_pb2.PersonAttributes:
    message = common_pb2.PersonAttributes(
        sex=_SEX_TO_PROTO[attributes.sex], region=attributes.region, source=attributes.source
    )
    if attributes.birth_year is not None:
        message.birth_year = attributes.birth_year
    return message


def record_from_proto(message: indexer_pb2.GalleryRecord, field: str) -> GalleryRecord:
    return GalleryRecord(
        record_id=message.record_id,
        person_id=message.person_id,
        embedding=_vector(message.embedding),
        attributes=attributes_from_proto(message.attributes, f"{field}.attributes"),
    )


def record_to_proto(record: GalleryRecord) -> indexer_pb2.GalleryRecord:
    return indexer_pb2.GalleryRecord(
        record_id=record.record_id,
        person_id=record.person_id,
        embedding=record.embedding.tolist(),
        attributes=attributes_to_proto(record.attributes),
    )


def filter_from_proto(message: indexer_pb2.SearchFilter) -> SearchFilter:
    years = message.birth_year
    return SearchFilter(
        birth_year_min=years.min if years.HasField("min") else None,
        birth_year_max=years.max if years.HasField("max") else None,
        sex=sex_from_proto(message.sex, "filter.sex"),
        regions=tuple(message.regions),
        exclude_person_ids=tuple(message.exclude_person_ids),
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
        model_id=info.model_id, name=info.name, dimension=info.dimension, record_count=info.record_count
    )
