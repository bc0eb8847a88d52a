"""Composition root of the ranker: settings, channels to its dependencies, the service."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from types import SimpleNamespace

import grpc

from kinship.runtime import clients, config
from kinship.runtime.config import Setting
from kinship.runtime.errors import Unavailable
from kinship.v1 import embedder_pb2, indexer_pb2, ranker_pb2, ranker_pb2_grpc

from .adapters.grpc_clients import GrpcFaceEmbedder, GrpcGalleryIndex
from .domain.service import KinshipRanker, RankerOptions
from .domain.validation import Limits
from .transport import KinshipRankerServicer

DEFAULT_PORT = 50053
SERVICE_NAME = ranker_pb2.DESCRIPTOR.services_by_name["KinshipRanker"].full_name
EMBEDDER_SERVICE = embedder_pb2.DESCRIPTOR.services_by_name["Embedder"].full_name
INDEXER_SERVICE = indexer_pb2.DESCRIPTOR.services_by_name["Indexer"].full_name


def _int_range(low: int, high: int):
    return lambda v: None if low <= v <= high else f"must be {low} to {high}, got {v}"


def settings() -> list[Setting]:
    return [
        *config.server_settings("ranker", DEFAULT_PORT),
        Setting(
            "embedder_address",
            "KINSHIP_EMBEDDER_ADDRESS",
            "127.0.0.1:50051",
            "gRPC address of the embedder (host:port or dns:///host:port)",
            check=config.address_check,
        ),
        Setting(
            "indexer_address",
            "KINSHIP_INDEXER_ADDRESS",
            "127.0.0.1:50052",
            "gRPC address of the indexer (host:port or dns:///host:port)",
            check=config.address_check,
        ),
        Setting(
            "candidate_k",
            "KINSHIP_RANKER_CANDIDATE_K",
            100,
            "gallery hits fetched per relative photo before exact scoring (the indexer allows 1-1000)",
            int,
            _int_range(1, 1000),
        ),
        Setting(
            "call_timeout_seconds",
            "KINSHIP_RANKER_CALL_TIMEOUT_SECONDS",
            30.0,
            "deadline of each call to the embedder or indexer",
            float,
            config.positive,
        ),
        Setting(
            "max_photos",
            "KINSHIP_RANKER_MAX_PHOTOS",
            32,
            "most photos (all relatives together) one FindRelatives request may hold",
            int,
            _int_range(1, 1000),
        ),
        Setting(
            "max_concurrent_embeds",
            "KINSHIP_RANKER_MAX_CONCURRENT_EMBEDS",
            4,
            "embedder calls one request may have in flight at once",
            int,
            _int_range(1, 256),
        ),
    ]


class RankerService:
    """The ranker as the runtime sees it: servicer, readiness (both dependencies SERVING), close."""

    name = "ranker"
    service_names: Sequence[str] = (SERVICE_NAME,)

    def __init__(self, ranker: KinshipRanker, embedder_channel: grpc.aio.Channel, indexer_channel: grpc.aio.Channel):
        self._ranker = ranker
        self._embedder_channel = embedder_channel
        self._indexer_channel = indexer_channel

    def register(self, server: grpc.aio.Server) -> None:
        ranker_pb2_grpc.add_KinshipRankerServicer_to_server(KinshipRankerServicer(self._ranker), server)

    async def check_ready(self) -> None:
        outcomes = await asyncio.gather(
            clients.check_serving(self._embedder_channel, service="embedder", service_name=EMBEDDER_SERVICE),
            clients.check_serving(self._indexer_channel, service="indexer", service_name=INDEXER_SERVICE),
            return_exceptions=True,
        )
        problems = [str(o) for o in outcomes if isinstance(o, BaseException)]
        if problems:
            raise Unavailable("; ".join(problems))

    async def close(self) -> None:
        await asyncio.gather(self._embedder_channel.close(), self._indexer_channel.close())


async def build(settings: SimpleNamespace) -> RankerService:
    embedder_channel = clients.aio_channel(settings.embedder_address, settings.max_message_mb)
    indexer_channel = clients.aio_channel(settings.indexer_address, settings.max_message_mb)
    ranker = KinshipRanker(
        GrpcFaceEmbedder(embedder_channel, settings.call_timeout_seconds),
        GrpcGalleryIndex(indexer_channel, settings.call_timeout_seconds),
        RankerOptions(
            candidate_k=settings.candidate_k,
            max_concurrent_embeds=settings.max_concurrent_embeds,
            limits=Limits(max_photos=settings.max_photos),
        ),
    )
    return RankerService(ranker, embedder_channel, indexer_channel)
