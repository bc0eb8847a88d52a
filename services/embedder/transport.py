"""gRPC servicer of kinship.v1.Embedder: protobuf <-> domain, nothing more.

Inference is blocking (OpenCV, onnxruntime), so it runs on a small thread pool;
the event loop stays free for health checks and other calls. Each job carries the
call's context variables, so log lines from the pool keep the request id.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import Executor
from typing import TypeVar

from kinship.embedder.domain.pipeline import EmbeddedFace
from kinship.embedder.domain.service import EmbedResult, FaceEmbeddingService
from kinship.v1 import common_pb2, embedder_pb2, embedder_pb2_grpc

T = TypeVar("T")


def face_to_proto(face: EmbeddedFace, model_id: str, dimension: int) -> embedder_pb2.Face:
    x_min, y_min, x_max, y_max = face.detection.box
    return embedder_pb2.Face(
        box=common_pb2.BoundingBox(x_min=x_min, y_min=y_min, x_max=x_max, y_max=y_max),
        landmarks=[common_pb2.Point(x=float(x), y=float(y)) for x, y in face.detection.landmarks],
        detection_score=face.detection.score,
        embedding=face.embedding.tolist(),
        model_id=model_id,
        dimension=dimension,
    )


def result_to_proto(result: EmbedResult) -> embedder_pb2.EmbedResponse:
    return embedder_pb2.EmbedResponse(
        faces=[face_to_proto(f, result.model_id, result.dimension) for f in result.faces],
        model_id=result.model_id,
        dimension=result.dimension,
        image_width=result.image_width,
        image_height=result.image_height,
    )


class EmbedderServicer(embedder_pb2_grpc.EmbedderServicer):
    def __init__(self, service: FaceEmbeddingService, executor: Executor):
        self._service = service
        self._executor = executor

    async def _off_loop(self, fn: Callable[..., T], *args, **kwargs) -> T:
        context = contextvars.copy_context()
        job = functools.partial(context.run, fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._executor, job)

    async def Embed(self, request: embedder_pb2.EmbedRequest, context) -> embedder_pb2.EmbedResponse:
        result = await self._off_loop(
            self._service.embed, request.image, model_id=request.model_id, max_faces=request.max_faces
        )
        return result_to_proto(result)

    async def ListModels(self, request: embedder_pb2.ListModelsRequest, context) -> embedder_pb2.ListModelsResponse:
        return embedder_pb2.ListModelsResponse(
            models=[
                embedder_pb2.ModelInfo(
                    model_id=info.model_id,
                    dimension=info.dimension,
                    detector=info.detector,
                    recognizer=info.recognizer,
                    is_default=is_default,
                )
                for info, is_default in self._service.models()
            ]
        )
