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

from ..domain.model import Box, DetectedFace, EmbeddedImage, GalleryRecord, SearchFilter, SearchHit
from .convert import SEX_TO_PB, attributes_from_pb, birth_year_range_to_pb


class GrpcFaceEmbedder:
    """FaceEmbedder over kinship.v1.Embedder/Embed."""

    def __init__(self, channel: grpc.aio.Channel, timeout_seconds: float):
        self._stub = embedder_pb2_grpc.EmbedderStub(channel)
        self._timeout = timeout_seconds

    async def embed(self, image: bytes, model_id: str) -> EmbeddedImage:
        # max_faces=0: every face comes back, so the ranker can pick the most prominent
        # one by size as well as confidence.
        request = embedder_pb2.EmbedRequest(image=image, model_id=model_id, max_faces=0)
        reply = await clients.call(self._stub.Embed, request, service="embedder", timeout=self._timeout)
        faces = [
            DetectedFace(
                embedding=np.asarray(face.embedding, dtype=np.float32),
                box=Box(face.box.x_min, face.box.y_min, face.box.x_max, face.box.y_max),
                detection_score=face.detection_score,
            )
            for face in reply.faces
        ]
        return EmbeddedImage(faces=faces, model_id=reply.model_id)


class GrpcGalleryIndex:
    """GalleryIndex over kinship.v1.Indexer/Search and /GetRecords."""

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
        filter_pb = indexer_pb2.SearchFilter(
            sex=SEX_TO_PB[search_filter.sex],
            regions=list(search_filter.regions),
            exclude_person_ids=list(search_filter.exclude_person_ids),
        )
        if search_filter.birth_year_min is not None or search_filter.birth_year_max is not None:
            filter_pb.birth_year.CopyFrom(
                birth_year_range_to_pb(search_filter.birth_year_min, search_filter.birth_year_max)
            )
        request = indexer_pb2.SearchRequest(
            model_id=model_id,
            queries=[indexer_pb2.QueryEmbedding(embedding=np.asarray(q, dtype=np.float32).tolist()) for q in queries],
            top_k=top_k,
            filter=filter_pb,
        )
        reply = await clients.call(self._stub.Search, request, service="indexer", timeout=self._timeout)
        return [
            [SearchHit(hit.record_id, hit.person_id, hit.similarity) for hit in result.hits] for result in reply.results
        ]

    async def get_records(self, model_id: str, person_ids: Sequence[str]) -> list[GalleryRecord]:
        request = indexer_pb2.GetRecordsRequest(model_id=model_id, person_ids=list(person_ids))
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
