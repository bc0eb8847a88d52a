"""Composition root of the embedder: settings, and wiring the model pack (and the kinship artifact) into the service."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import grpc

from kinship.artifacts import KinshipArtifact, load_active
from kinship.embedder.adapters.kinship_model import check_binding, load_kinship_model
from kinship.embedder.adapters.model_pack import DEFAULT_PACK, LoadedPack, load_pack
from kinship.embedder.adapters.yunet import DEFAULT_NMS_IOU, DEFAULT_SCORE_THRESHOLD
from kinship.embedder.domain.service import FaceEmbeddingService
from kinship.embedder.transport import EmbedderServicer
from kinship.runtime import config
from kinship.runtime.config import Setting
from kinship.runtime.errors import Unavailable
from kinship.runtime.logs import get_logger
from kinship.v1 import embedder_pb2, embedder_pb2_grpc

DEFAULT_PORT = 50051
log = get_logger("kinship.embedder")


def _unit_interval(value: float) -> str | None:
    return None if 0 < value < 1 else f"must be between 0 and 1 (exclusive), got {value}"


def settings() -> list[Setting]:
    return config.server_settings("embedder", DEFAULT_PORT) + [
        Setting(
            "workers",
            "KINSHIP_EMBEDDER_WORKERS",
            2,
            "images processed at the same time (threads running the models); about the number of cores "
            "divided by intra_op_threads",
            int,
            config.positive,
        ),
        Setting(
            "intra_op_threads",
            "KINSHIP_EMBEDDER_INTRA_OP_THREADS",
            1,
            "cores onnxruntime uses inside one model run; 1 gives the best throughput when workers "
            "already fill the cores, more lowers the latency of a lone request",
            int,
            config.positive,
        ),
        Setting(
            "max_megapixels",
            "KINSHIP_EMBEDDER_MAX_MEGAPIXELS",
            40.0,
            "largest image accepted, in millions of pixels (checked from the file header before decoding)",
            float,
            config.positive,
        ),
        Setting(
            "detection_threshold",
            "KINSHIP_EMBEDDER_DETECTION_THRESHOLD",
            DEFAULT_SCORE_THRESHOLD,
            "lowest face detection score kept (YuNet; OpenCV's 0.9 misses small faces)",
            float,
            _unit_interval,
        ),
        Setting(
            "nms_iou",
            "KINSHIP_EMBEDDER_NMS_IOU",
            DEFAULT_NMS_IOU,
            "overlap (IoU) above which two detections count as the same face",
            float,
            _unit_interval,
        ),
        # The active artifact's kinship network is served beside the identity model.
        config.artifacts_dir_setting(),
    ]


class EmbedderService:
    """runtime.server.Service for the embedder: the loaded pack behind the gRPC servicer."""

    name = "embedder"
    service_names = (embedder_pb2.DESCRIPTOR.services_by_name["Embedder"].full_name,)

    def __init__(
        self,
        pack: LoadedPack,
        service: FaceEmbeddingService,
        executor: ThreadPoolExecutor,
        artifact: KinshipArtifact | None = None,
    ):
        self.pack = pack
        self.artifact = artifact  # the kinship artifact whose network is served, None when none is active
        self.service = service
        self._executor = executor
        self._closed = False

    def register(self, server: grpc.aio.Server) -> None:
        embedder_pb2_grpc.add_EmbedderServicer_to_server(EmbedderServicer(self.service, self._executor), server)

    async def check_ready(self) -> None:
        # The pack ran once at load (self-test) before this object existed; what can
        # still go wrong is a shutdown in progress.
        if self._closed:
            raise Unavailable("the embedder is shutting down")

    async def close(self) -> None:
        self._closed = True
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)


async def build(settings: SimpleNamespace) -> EmbedderService:
    """Verifies and loads the default model pack and the active kinship artifact, if any.

    Raises ModelPackError or ArtifactError (both ConfigError: the embedder refuses to
    start) when a model file is missing or altered, when the artifact is bound to
    another identity model, or when a network fails its self-test.
    """
    # The artifact's manifest first: a wrong binding fails in milliseconds, before the pack loads.
    artifact = await asyncio.to_thread(load_active, settings.artifacts_dir)
    if artifact is not None:
        check_binding(artifact, DEFAULT_PACK.model_id)
    pack = await asyncio.to_thread(
        load_pack,
        DEFAULT_PACK,
        intra_op_threads=settings.intra_op_threads,
        score_threshold=settings.detection_threshold,
        nms_iou=settings.nms_iou,
    )
    models = [pack.model]
    if artifact is None:
        log.info(
            "no kinship artifact is active: serving the identity model only (kinship train makes one)",
            artifacts_dir=str(settings.artifacts_dir),
        )
    else:
        kinship = await asyncio.to_thread(
            load_kinship_model, artifact, pack, intra_op_threads=settings.intra_op_threads
        )
        models.append(kinship.model)
    service = FaceEmbeddingService(models, max_pixels=int(settings.max_megapixels * 1_000_000))
    executor = ThreadPoolExecutor(max_workers=settings.workers, thread_name_prefix="embedder")
    log.info(
        "embedder built",
        model_id=pack.spec.model_id,
        model_ids=[m.info.model_id for m in models],
        artifact_id=artifact.artifact_id if artifact else None,
        workers=settings.workers,
    )
    embedder = EmbedderService(pack, service, executor, artifact)
    # Admission bound (runtime.admission): each worker busy and one call waiting per worker, so the
    # executor's queue never grows past `workers` and an admitted call waits at most one call's time.
    embedder.max_concurrent_calls = 2 * settings.workers
    return embedder
