"""Composition root of the ranker: settings, the trained artifact, channels to its dependencies, the service.

At start the ranker loads the active kinship artifact from --artifacts-dir (a broken
one stops it with the reason); without one it runs uncalibrated and says so, in a
warning at start, in every response's ScoringInfo and in DescribeScoring.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from types import SimpleNamespace

import grpc

from kinship.artifacts import load_active
from kinship.runtime import clients, config
from kinship.runtime.config import Setting
from kinship.runtime.errors import Unavailable
from kinship.runtime.logs import get_logger
from kinship.security.settings import server_settings
from kinship.security.transport import ClientTls
from kinship.v1 import embedder_pb2, indexer_pb2, ranker_pb2, ranker_pb2_grpc

from .adapters.grpc_clients import GrpcFaceEmbedder, GrpcGalleryIndex
from .domain.scoring import DEFAULT_PRIOR, DEFAULT_STRONG_LOG10_LR, ScoringConfig
from .domain.service import KinshipRanker, RankerOptions
from .domain.validation import Limits
from .transport import KinshipRankerServicer

DEFAULT_PORT = 50053
SERVICE_NAME = ranker_pb2.DESCRIPTOR.services_by_name["KinshipRanker"].full_name
EMBEDDER_SERVICE = embedder_pb2.DESCRIPTOR.services_by_name["Embedder"].full_name
INDEXER_SERVICE = indexer_pb2.DESCRIPTOR.services_by_name["Indexer"].full_name


log = get_logger("kinship.ranker")


def _int_range(low: int, high: int):
    return lambda v: None if low <= v <= high else f"must be {low} to {high}, got {v}"


def _probability(value: float) -> str | None:
    return None if 0.0 < value < 1.0 else f"must be above 0 and below 1, got {value}"


def _finite(value: float) -> str | None:
    return None if math.isfinite(value) else f"must be a finite number, got {value}"


def settings() -> list[Setting]:
    return [
        *server_settings("ranker", DEFAULT_PORT),
        *config.client_settings(),
        config.artifacts_dir_setting(),
        Setting(
            "prior_probability",
            "KINSHIP_RANKER_PRIOR_PROBABILITY",
            DEFAULT_PRIOR,
            "prior probability that any one candidate is the missing person, for posterior probabilities "
            "(a request may state its own)",
            float,
            _probability,
        ),
        Setting(
            "strong_candidate_log10_lr",
            "KINSHIP_RANKER_STRONG_CANDIDATE_LOG10_LR",
            DEFAULT_STRONG_LOG10_LR,
            "fused log10 likelihood ratio a candidate must reach to be marked strong (2 = a ratio of 100)",
            float,
            _finite,
        ),
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
            "family_pool",
            "KINSHIP_RANKER_FAMILY_POOL",
            1000,
            "records the family query (one search of the combined [kinship; identity] collection per candidate "
            "sex) returns at least, max(10 x top_n, this) within the indexer's 1000; 0: per-photo searches only",
            int,
            _int_range(0, 1000),
        ),
        Setting(
            "per_photo_search",
            "KINSHIP_RANKER_PER_PHOTO_SEARCH",
            False,
            "also run the per-photo identity and kinship searches (candidate_k each) beside the family query",
            config.parse_bool,
        ),
        Setting(
            "family_check_seconds",
            "KINSHIP_RANKER_FAMILY_CHECK_SECONDS",
            30.0,
            "how long the check that a tenant's combined collection covers its gallery (the indexer's row "
            "counts; fewer combined rows than identity rows: per-photo searches) is trusted; 0: every call",
            float,
            config.non_negative,
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
        """SERVING when the embedder and indexer are, and the embedder serves the artifact's models."""
        outcomes = await asyncio.gather(
            clients.check_serving(self._embedder_channel, service="embedder", service_name=EMBEDDER_SERVICE),
            clients.check_serving(self._indexer_channel, service="indexer", service_name=INDEXER_SERVICE),
            return_exceptions=True,
        )
        problems = [str(o) for o in outcomes if isinstance(o, BaseException)]
        if not isinstance(outcomes[0], BaseException):
            try:
                await self._ranker.check_models()
            except Exception as exc:  # noqa: BLE001 - any failure is a reason not to serve, reported as is
                problems.append(str(getattr(exc, "message", exc)))
        if problems:
            raise Unavailable("; ".join(problems))

    async def close(self) -> None:
        await asyncio.gather(self._embedder_channel.close(), self._indexer_channel.close())


def scoring_config(settings: SimpleNamespace) -> ScoringConfig:
    """The scoring the settings ask for: the active artifact's calibration, or uncalibrated (with a warning)."""
    artifact = load_active(settings.artifacts_dir)
    scoring = ScoringConfig.from_artifact(
        artifact,
        prior_probability=settings.prior_probability,
        strong_candidate_log10_lr=settings.strong_candidate_log10_lr,
    )
    if artifact is None:
        log.warning(
            "the artifacts folder's ACTIVE says none: the ranker runs UNCALIBRATED (identity cosine only, no "
            "likelihood ratios, no strong candidates); remove ACTIVE to serve the shipped artifact, or train one",
            artifacts_dir=str(settings.artifacts_dir),
        )
    else:
        log.info(
            "kinship artifact loaded",
            artifact_id=artifact.artifact_id,
            shipped=artifact.shipped,
            calibration_id=artifact.calibration.calibration_id,
            identity_model_id=artifact.identity_model_id,
            kinship_model_id=artifact.kinship_model_id,
        )
    return scoring


async def build(settings: SimpleNamespace) -> RankerService:
    scoring = scoring_config(settings)
    # With a TLS folder the ranker calls the others with the suite's own client certificate (service.crt).
    tls = ClientTls(settings.tls_dir) if getattr(settings, "tls_dir", None) is not None else None
    # round_robin over every pod a dns:/// name resolves to, pinging as the servers allow.
    balancing = {
        "keepalive_seconds": settings.keepalive_seconds,
        "dns_min_refresh_seconds": settings.dns_min_refresh_seconds,
    }
    embedder_channel = clients.aio_channel(settings.embedder_address, settings.max_message_mb, tls, **balancing)
    indexer_channel = clients.aio_channel(settings.indexer_address, settings.max_message_mb, tls, **balancing)
    ranker = KinshipRanker(
        GrpcFaceEmbedder(embedder_channel, settings.call_timeout_seconds),
        GrpcGalleryIndex(indexer_channel, settings.call_timeout_seconds),
        RankerOptions(
            candidate_k=settings.candidate_k,
            family_pool=settings.family_pool,
            per_photo_search=settings.per_photo_search,
            family_check_seconds=settings.family_check_seconds,
            max_concurrent_embeds=settings.max_concurrent_embeds,
            limits=Limits(max_photos=settings.max_photos),
        ),
        scoring,
    )
    return RankerService(ranker, embedder_channel, indexer_channel)
