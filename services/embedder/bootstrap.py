"""Composition root of the embedder: settings, and wiring the model pack (and the kinship artifact) into the service."""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import grpc

from kinship.artifacts import KinshipArtifact, load_active
from kinship.embedder.adapters.kinship_model import check_binding, load_kinship_model
from kinship.embedder.adapters.model_pack import DEFAULT_PACK, LoadedPack, RuntimeOptions, load_pack
from kinship.embedder.adapters.providers import resolve_providers
from kinship.embedder.adapters.yunet import DEFAULT_NMS_IOU, DEFAULT_SCORE_THRESHOLD
from kinship.embedder.domain.batching import MicroBatcher
from kinship.embedder.domain.pipeline import ColumnView
from kinship.embedder.domain.service import FaceEmbeddingService, ServedModel
from kinship.embedder.domain.tiling import MultiScale
from kinship.embedder.transport import DEFAULT_MAX_BATCH_ITEMS, EmbedderServicer
from kinship.runtime import config
from kinship.runtime.config import Setting
from kinship.runtime.errors import Unavailable
from kinship.runtime.logs import get_logger
from kinship.runtime.priority import call_in_lowered_thread, lower_this_thread
from kinship.security.settings import server_settings
from kinship.v1 import embedder_pb2, embedder_pb2_grpc

DEFAULT_PORT = 50051
log = get_logger("kinship.embedder")


def _unit_interval(value: float) -> str | None:
    return None if 0 < value < 1 else f"must be between 0 and 1 (exclusive), got {value}"


def available_cores() -> int:
    """Cores this process may run on (the CPU affinity mask; a container's CPU limit is not seen here)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _model_packs(text: str) -> list[Path]:
    return [Path(part.strip()).expanduser() for part in text.split(",") if part.strip()]


def settings() -> list[Setting]:
    cores = available_cores()
    return server_settings("embedder", DEFAULT_PORT) + [
        Setting(
            "workers",
            "KINSHIP_EMBEDDER_WORKERS",
            4 * cores,
            "requests in the pipeline at once (threads that decode, detect and align; each then waits for the "
            "recognizer's micro-batch, so there are more of them than cores: with only as many as the cores, "
            "batches could never hold more faces than that); default 4 per core present. In a container with a "
            "CPU limit, base it on the limit",
            int,
            config.positive,
        ),
        Setting(
            "intra_op_threads",
            "KINSHIP_EMBEDDER_INTRA_OP_THREADS",
            1,
            "cores onnxruntime uses inside one model run; 1 gives the best throughput when workers and batch "
            "runners already fill the cores (measured: docs/benchmarks.md), more lowers a lone request's latency",
            int,
            config.positive,
        ),
        Setting(
            "inter_op_threads",
            "KINSHIP_EMBEDDER_INTER_OP_THREADS",
            1,
            "onnxruntime threads running independent graph branches; the face models are sequential chains, so 1",
            int,
            config.positive,
        ),
        Setting(
            "batch_runners",
            "KINSHIP_EMBEDDER_BATCH_RUNNERS",
            1,
            "recognizer runs at the same time, each on one micro-batch; with 1, each batch runs on all "
            "recognizer_threads (several runners on a CPU leave cores idle: one takes the whole queue)",
            int,
            config.positive,
        ),
        Setting(
            "recognizer_threads",
            "KINSHIP_EMBEDDER_RECOGNIZER_THREADS",
            0,
            "cores onnxruntime uses inside one recognizer run; 0: the cores divided by batch_runners",
            int,
            config.non_negative,
        ),
        Setting(
            "batch_max_size",
            "KINSHIP_EMBEDDER_BATCH_MAX_SIZE",
            16,
            "most faces of concurrent requests gathered into one recognizer run",
            int,
            config.positive,
        ),
        Setting(
            "batch_max_wait_ms",
            "KINSHIP_EMBEDDER_BATCH_MAX_WAIT_MS",
            2.0,
            "longest a face waits for others to join its batch, in milliseconds (a lone request's latency grows "
            "by at most this); 0 batches only what is already queued. Raise it on a GPU",
            float,
            config.non_negative,
        ),
        Setting(
            "worker_nice",
            "KINSHIP_EMBEDDER_WORKER_NICE",
            10,
            "how far below the event loop the embedding threads run (a nice increment, 0-19, Linux): the "
            "workers, the micro-batch runners and onnxruntime's pools, so that a refusal or a health check "
            "is answered at once while they fill the cores (measured: docs/benchmarks.md); 0 runs them all "
            "at one priority",
            int,
            lambda v: None if 0 <= v <= 19 else f"must be between 0 and 19, got {v}",
        ),
        Setting(
            "execution_provider",
            "KINSHIP_EMBEDDER_EXECUTION_PROVIDER",
            "cpu",
            "onnxruntime execution provider: cpu, cuda, tensorrt, or a full provider name; cuda and tensorrt need "
            "onnxruntime-gpu installed in place of onnxruntime. Refuses to start when it is missing (no silent "
            "CPU fallback)",
        ),
        Setting(
            "model_packs",
            "KINSHIP_EMBEDDER_MODEL_PACKS",
            "",
            "comma-separated folders of insightface model packs (each with kinship-pack.json) served beside the "
            "default pack; see docs/model-packs.md",
        ),
        Setting(
            "default_model_id",
            "KINSHIP_EMBEDDER_DEFAULT_MODEL_ID",
            "",
            "model id used when a request names none; empty: the bundled default pack",
        ),
        Setting(
            "min_face_size",
            "KINSHIP_EMBEDDER_MIN_FACE_SIZE",
            32.0,
            "smallest face searched for, in pixels, when a request gives no min_face_size: larger photos are "
            "searched in tiles down to it (a 4000x3000 photo at 32 px: 12 extra detector runs)",
            float,
            config.positive,
        ),
        Setting(
            "max_image_mb",
            "KINSHIP_EMBEDDER_MAX_IMAGE_MB",
            15.0,
            "largest encoded image accepted, in MiB (before anything is decoded)",
            float,
            config.positive,
        ),
        Setting(
            "max_batch_items",
            "KINSHIP_EMBEDDER_MAX_BATCH_ITEMS",
            DEFAULT_MAX_BATCH_ITEMS,
            "most images one EmbedBatch call may carry",
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
        *,
        batchers: list[MicroBatcher] | None = None,
        max_batch_items: int = DEFAULT_MAX_BATCH_ITEMS,
        packs: list[LoadedPack] | None = None,
    ):
        self.pack = pack
        self.packs = packs or [pack]  # every pack served, the default pack first
        self.artifact = artifact  # the kinship artifact whose network is served, None when none is active
        self.service = service
        self._executor = executor
        self._batchers = batchers or []
        self._max_batch_items = max_batch_items
        self._closed = False

    def register(self, server: grpc.aio.Server) -> None:
        servicer = EmbedderServicer(self.service, self._executor, max_batch_items=self._max_batch_items)
        embedder_pb2_grpc.add_EmbedderServicer_to_server(servicer, server)

    async def check_ready(self) -> None:
        # The pack ran once at load (self-test) before this object existed; what can
        # still go wrong is a shutdown in progress.
        if self._closed:
            raise Unavailable("the embedder is shutting down")

    async def close(self) -> None:
        self._closed = True
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
        for batcher in self._batchers:
            await asyncio.to_thread(batcher.close)


def recognizer_threads(settings: SimpleNamespace) -> int:
    return settings.recognizer_threads or max(1, available_cores() // settings.batch_runners)


def runtime_options(settings: SimpleNamespace) -> RuntimeOptions:
    """onnxruntime threads and provider, and the multi-scale search, from the settings (provider checked here)."""
    return RuntimeOptions(
        intra_op_threads=settings.intra_op_threads,
        inter_op_threads=settings.inter_op_threads,
        recognizer_threads=recognizer_threads(settings),
        spinning=False,
        providers=tuple(resolve_providers(settings.execution_provider)),
        multiscale=MultiScale(default_min_face_size=settings.min_face_size),
    )


def batched_recognizer(recognizer, settings: SimpleNamespace, batchers: list[MicroBatcher]) -> MicroBatcher:
    batcher = MicroBatcher(
        recognizer,
        max_batch=settings.batch_max_size,
        max_wait=settings.batch_max_wait_ms / 1000.0,
        runners=settings.batch_runners,
        thread_init=partial(lower_this_thread, settings.worker_nice),
    )
    batchers.append(batcher)
    return batcher


def batched(model: ServedModel, settings: SimpleNamespace, batchers: list[MicroBatcher]) -> ServedModel:
    """The model with its recognizer behind a MicroBatcher (same detector and aligner, so kinship still pairs)."""
    batcher = batched_recognizer(model.pipeline.recognizer, settings, batchers)
    return ServedModel(info=model.info, pipeline=model.pipeline.with_recognizer(batcher))


async def build(settings: SimpleNamespace) -> EmbedderService:
    """Verifies and loads the default model pack, the configured insightface packs and the active kinship artifact.

    Raises ModelPackError, ExecutionProviderError or ArtifactError (all ConfigError:
    the embedder refuses to start) when a model file is missing or altered, the
    execution provider is absent, the artifact is bound to another identity model,
    or a network fails its self-test.
    """
    # The artifact's manifest first: a wrong binding fails in milliseconds, before the pack loads.
    artifact = await asyncio.to_thread(load_active, settings.artifacts_dir)
    if artifact is not None:
        check_binding(artifact, DEFAULT_PACK.model_id)
    runtime = runtime_options(settings)
    # Sessions are made on a lowered thread: onnxruntime's pool threads inherit its priority.
    pack = await asyncio.to_thread(
        call_in_lowered_thread,
        settings.worker_nice,
        load_pack,
        DEFAULT_PACK,
        score_threshold=settings.detection_threshold,
        nms_iou=settings.nms_iou,
        runtime=runtime,
    )
    packs = [pack]
    for folder in _model_packs(settings.model_packs):
        from kinship.embedder.adapters.insightface_pack import load_insightface_pack

        packs.append(
            await asyncio.to_thread(
                call_in_lowered_thread, settings.worker_nice, load_insightface_pack, folder, runtime
            )
        )
    batchers: list[MicroBatcher] = []
    kinship = None
    if artifact is None:
        log.info(
            "kinship artifact: ACTIVE says none, serving the identity model only",
            artifacts_dir=str(settings.artifacts_dir),
        )
    else:
        kinship = await asyncio.to_thread(
            call_in_lowered_thread,
            settings.worker_nice,
            load_kinship_model,
            artifact,
            pack,
            intra_op_threads=recognizer_threads(settings),
        )
    if kinship is not None and kinship.joint is not None:
        # One joint graph (identity trunk + kinship head) behind one batcher; both models are views of it,
        # so a request for both runs the trunk once per face.
        joint = batched_recognizer(kinship.joint, settings, batchers)
        identity = ServedModel(
            info=pack.model.info,
            pipeline=pack.model.pipeline.with_recognizer(ColumnView(joint, *kinship.joint.identity_columns)),
        )
        kinship_model = ServedModel(
            info=kinship.model.info,
            pipeline=identity.pipeline.with_recognizer(ColumnView(joint, *kinship.joint.kinship_columns)),
        )
    else:
        identity = batched(pack.model, settings, batchers)
        kinship_model = None
        if kinship is not None:
            # A format 1 network shares the identity model's (batched) front end, so one detection feeds both.
            kinship_model = batched(
                ServedModel(info=kinship.model.info, pipeline=identity.pipeline.with_recognizer(kinship.recognizer)),
                settings,
                batchers,
            )
    models = [identity] + [batched(other.model, settings, batchers) for other in packs[1:]]
    if kinship_model is not None:
        models.append(kinship_model)
    if settings.default_model_id:
        chosen = [m for m in models if m.info.model_id == settings.default_model_id]
        if not chosen:
            from kinship.runtime.errors import ConfigError

            raise ConfigError(
                f"--default-model-id {settings.default_model_id!r} is not served; served: "
                f"{', '.join(m.info.model_id for m in models)}"
            )
        models = chosen + [m for m in models if m is not chosen[0]]
    service = FaceEmbeddingService(
        models,
        max_pixels=int(settings.max_megapixels * 1_000_000),
        max_bytes=int(settings.max_image_mb * 1024 * 1024),
    )
    executor = ThreadPoolExecutor(
        max_workers=settings.workers,
        thread_name_prefix="embedder",
        initializer=lower_this_thread,
        initargs=(settings.worker_nice,),
    )
    log.info(
        "embedder built",
        model_id=pack.spec.model_id,
        model_ids=[m.info.model_id for m in models],
        artifact_id=artifact.artifact_id if artifact else None,
        workers=settings.workers,
        worker_nice=settings.worker_nice,
        intra_op_threads=settings.intra_op_threads,
        batch_runners=[len(b._threads) for b in batchers],
        provider=runtime.providers[0],
    )
    embedder = EmbedderService(
        pack, service, executor, artifact, batchers=batchers, max_batch_items=settings.max_batch_items, packs=packs
    )
    # Admission bound (runtime.admission): each worker busy and one call waiting per worker, so the
    # executor's queue never grows past `workers` and an admitted call waits at most one call's time.
    embedder.max_concurrent_calls = 2 * settings.workers
    return embedder
