"""The ranker's ports over gRPC: kinship.v1.Embedder and kinship.v1.Indexer clients.

Calls go through `kinship.runtime.clients.call`, which forwards the request id and
turns a failed call into the matching domain error (INVALID_ARGUMENT stays
InvalidArgument, an unreachable service becomes Unavailable, ...).
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
import numpy as np

from kinship.runtime import clients
from kinship.v1 import embedder_pb2, embedder_pb2_grpc, indexer_pb2, indexer_pb2_grpc

from ..domain.model import (
    Box,
    DetectedFace,
    EmbeddedImage,
    ExcludedUnknown,
    GalleryRecord,
    ModelKind,
    SearchFilter,
    SearchHit,
    ServedModel,
)
from .convert import attributes_from_pb, search_filter_to_pb

MODEL_KIND_FROM_PB = {
    embedder_pb2.MODEL_KIND_UNSPECIFIED: ModelKind.UNSPECIFIED,
    embedder_pb2.MODEL_KIND_IDENTITY: ModelKind.IDENTITY,
    embedder_pb2.MODEL_KIND_KINSHIP: ModelKind.KINSHIP,
}


class GrpcFaceEmbedder:
    """FaceEmbedder over kinship.v1.Embedder/Embed and /ListModels."""

    def __init__(self, channel: grpc.aio.Channel, timeout_seconds: float):
        self._stub = embedder_pb2_grpc.EmbedderStub(channel)
        self._timeout = timeout_seconds

    async def embed(
        self, image: bytes, model_id: str, additional_model_ids: Sequence[str] = (), *, pre_aligned: bool = False
    ) -> EmbeddedImage:
        # max_faces=0: every face comes back, so the ranker can pick the most prominent
        # one by size as well as confidence.
        request = embedder_pb2.EmbedRequest(
            image=image,
            model_id=model_id,
            max_faces=0,
            additional_model_ids=list(additional_model_ids),
            pre_aligned=pre_aligned,
        )
        reply = await clients.call(self._stub.Embed, request, service="embedder", timeout=self._timeout)
        faces = [
            DetectedFace(
                embedding=np.asarray(face.embedding, dtype=np.float32),
                box=Box(face.box.x_min, face.box.y_min, face.box.x_max, face.box.y_max),
                detection_score=face.detection_score,
                quality=face.quality,
                additional={e.model_id: np.asarray(e.values, dtype=np.float32) for e in face.additional_embeddings},
            )
            for face in reply.faces
        ]
        return EmbeddedImage(faces=faces, model_id=reply.model_id)

    async def list_models(self) -> list[ServedModel]:
        reply = await clients.call(
            self._stub.ListModels, embedder_pb2.ListModelsRequest(), service="embedder", timeout=self._timeout
        )
        return [
            ServedModel(
                model_id=m.model_id,
                kind=MODEL_KIND_FROM_PB.get(m.kind, ModelKind.UNSPECIFIED),
                artifact_id=m.artifact_id,
                bound_model_id=m.bound_model_id,
                is_default=m.is_default,
            )
            for m in reply.models
        ]


class GrpcGalleryIndex:
    """GalleryIndex over kinship.v1.Indexer/Search, /GetRecords and /Stats."""

    def __init__(self, channel: grpc.aio.Channel, timeout_seconds: float):
        self._stub = indexer_pb2_grpc.IndexerStub(channel)
        self._timeout = timeout_seconds

    async def search(
        self,
        model_id: str,
        queries: Sequence[np.ndarray],
        top_k: int,
        search_filter: SearchFilter,
    ) -> list[list[SearchHit]]:
        request = indexer_pb2.SearchRequest(
            model_id=model_id,
            queries=[indexer_pb2.QueryEmbedding(embedding=np.asarray(q, dtype=np.float32).tolist()) for q in queries],
            top_k=top_k,
            filter=search_filter_to_pb(search_filter),
            tenant=search_filter.tenant,
        )
        reply = await clients.call(self._stub.Search, request, service="indexer", timeout=self._timeout)
        return [
            [SearchHit(hit.record_id, hit.person_id, hit.similarity) for hit in result.hits] for result in reply.results
        ]

    async def get_records(
        self, model_id: str, person_ids: Sequence[str], search_filter: SearchFilter
    ) -> list[GalleryRecord]:
        request = indexer_pb2.GetRecordsRequest(
            model_id=model_id,
            person_ids=list(person_ids),
            filter=search_filter_to_pb(search_filter),
            tenant=search_filter.tenant,
        )
        reply = await clients.call(self._stub.GetRecords, request, service="indexer", timeout=self._timeout)
        return [
            GalleryRecord(
                record_id=record.record_id,
                person_id=record.person_id,
                embedding=np.asarray(record.embedding, dtype=np.float32),
                attributes=attributes_from_pb(record.attributes),
            )
            for record in reply.records
        ]

    async def excluded_unknown(self, model_id: str, query: np.ndarray, search_filter: SearchFilter) -> ExcludedUnknown:
        request = indexer_pb2.SearchRequest(
            model_id=model_id,
            queries=[indexer_pb2.QueryEmbedding(embedding=np.asarray(query, dtype=np.float32).tolist())],
            top_k=1,
            filter=search_filter_to_pb(search_filter),
            tenant=search_filter.tenant,
            count_excluded_unknown=True,
        )
        reply = await clients.call(self._stub.Search, request, service="indexer", timeout=self._timeout)
        return ExcludedUnknown(birth_year=reply.excluded_unknown.birth_year, sex=reply.excluded_unknown.sex)

    async def record_counts(self, tenant: str) -> dict[str, int]:
        request = indexer_pb2.StatsRequest(tenant=tenant)
        reply = await clients.call(self._stub.Stats, request, service="indexer", timeout=self._timeout)
        return {c.collection.model_id: c.tenant_record_count for c in reply.collections}
