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

from kinship.domain.people import sex_from_name
from kinship.embedder.domain.pipeline import EmbeddedFace
from kinship.embedder.domain.service import EmbedItem, EmbedResult, FaceEmbeddingService, ModelInfo, ModelKind
from kinship.runtime.errors import InvalidArgument, KinshipError
from kinship.runtime.grpc_errors import to_rpc_status
from kinship.v1 import common_pb2, embedder_pb2, embedder_pb2_grpc

T = TypeVar("T")

#: Items one EmbedBatch call may carry (each may be up to the message limit in total).
DEFAULT_MAX_BATCH_ITEMS = 256

_KIND_TO_PROTO = {
    ModelKind.IDENTITY: embedder_pb2.MODEL_KIND_IDENTITY,
    ModelKind.KINSHIP: embedder_pb2.MODEL_KIND_KINSHIP,
}


def face_to_proto(
    face: EmbeddedFace, model_id: str, dimension: int, additional_model_ids: tuple[str, ...] = ()
) -> embedder_pb2.Face:
    x_min, y_min, x_max, y_max = face.detection.box
    return embedder_pb2.Face(
        box=common_pb2.BoundingBox(x_min=x_min, y_min=y_min, x_max=x_max, y_max=y_max),
        landmarks=[common_pb2.Point(x=float(x), y=float(y)) for x, y in face.detection.landmarks],
        detection_score=face.detection.score,
        embedding=face.embedding.tolist(),
        model_id=model_id,
        dimension=dimension,
        additional_embeddings=[
            common_pb2.Embedding(values=vector.tolist(), model_id=other)
            for other, vector in zip(additional_model_ids, face.additional_embeddings, strict=True)
        ],
        quality=face.quality,
        quality_details=(
            embedder_pb2.FaceQuality(
                size=face.details.size,
                detection_score=face.details.detection_score,
                sharpness=face.details.sharpness,
                landmark_symmetry=face.details.symmetry,
            )
            if face.details is not None
            else None
        ),
        attributes=(
            embedder_pb2.FaceAttributes(age=face.attributes.age, sex=int(sex_from_name(face.attributes.sex)))
            if face.attributes is not None
            else None
        ),
        pre_aligned=face.pre_aligned,
    )


def model_info_to_proto(info: ModelInfo, is_default: bool) -> embedder_pb2.ModelInfo:
    return embedder_pb2.ModelInfo(
        model_id=info.model_id,
        dimension=info.dimension,
        detector=info.detector,
        recognizer=info.recognizer,
        is_default=is_default,
        kind=_KIND_TO_PROTO[info.kind],
        artifact_id=info.artifact_id,
        bound_model_id=info.bound_model_id,
        pack_id=info.pack_id,
        execution_provider=info.execution_provider,
        has_attributes=info.has_attributes,
        licence=info.licence,
    )


def item_from_proto(request: embedder_pb2.EmbedRequest) -> EmbedItem:
    return EmbedItem(
        image=request.image,
        model_id=request.model_id,
        max_faces=request.max_faces,
        additional_model_ids=tuple(request.additional_model_ids),
        pre_aligned=request.pre_aligned,
        min_face_size=request.min_face_size,
        min_quality=request.min_quality,
        largest_face_only=request.largest_face_only,
    )


def error_to_proto(error: KinshipError, index: int) -> embedder_pb2.ItemError:
    status = to_rpc_status(error)
    fields = [v.field for v in getattr(error, "violations", None) or []]
    return embedder_pb2.ItemError(
        code=status.code,
        status=error.status_name,
        message=f"items[{index}]: {error.message}",
        reason=error.reason,
        fields=fields,
    )


def result_to_proto(result: EmbedResult) -> embedder_pb2.EmbedResponse:
    return embedder_pb2.EmbedResponse(
        faces=[face_to_proto(f, result.model_id, result.dimension, result.additional_model_ids) for f in result.faces],
        model_id=result.model_id,
        dimension=result.dimension,
        image_width=result.image_width,
        image_height=result.image_height,
    )


class EmbedderServicer(embedder_pb2_grpc.EmbedderServicer):
    def __init__(
        self, service: FaceEmbeddingService, executor: Executor, *, max_batch_items: int = DEFAULT_MAX_BATCH_ITEMS
    ):
        self._service = service
        self._executor = executor
        self._max_batch_items = max_batch_items

    async def _off_loop(self, fn: Callable[..., T], *args, **kwargs) -> T:
        context = contextvars.copy_context()
        job = functools.partial(context.run, fn, *args, **kwargs)
        return await asyncio.get_running_loop().run_in_executor(self._executor, job)

    async def Embed(self, request: embedder_pb2.EmbedRequest, context) -> embedder_pb2.EmbedResponse:
        result = await self._off_loop(self._service.embed_item, item_from_proto(request))
        return result_to_proto(result)

    async def EmbedBatch(self, request: embedder_pb2.EmbedBatchRequest, context) -> embedder_pb2.EmbedBatchResponse:
        count = len(request.items)
        if count == 0:
            raise InvalidArgument("items is empty: send at least one image (EmbedRequest) to embed", field="items")
        if count > self._max_batch_items:
            raise InvalidArgument(
                f"items holds {count} images, more than the limit of {self._max_batch_items} per call; "
                "split them over several calls",
                field="items",
            )
        # Every item runs on the worker pool at once, so their faces meet in the recognizer's micro-batches.
        outcomes = await asyncio.gather(
            *(self._off_loop(self._service.embed_or_error, item_from_proto(item)) for item in request.items)
        )
        results = []
        for index, outcome in enumerate(outcomes):
            if isinstance(outcome, KinshipError):
                results.append(embedder_pb2.EmbedBatchResult(error=error_to_proto(outcome, index)))
            else:
                results.append(embedder_pb2.EmbedBatchResult(response=result_to_proto(outcome)))
        return embedder_pb2.EmbedBatchResponse(results=results)

    async def ListModels(self, request: embedder_pb2.ListModelsRequest, context) -> embedder_pb2.ListModelsResponse:
        return embedder_pb2.ListModelsResponse(
            models=[model_info_to_proto(info, is_default) for info, is_default in self._service.models()]
        )
