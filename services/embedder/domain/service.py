"""What the Embedder service does, free of gRPC: checks a request, picks the model, runs it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kinship.embedder.domain.images import decode_image, require_image
from kinship.embedder.domain.pipeline import EmbeddedFace, FacePipeline
from kinship.runtime.errors import InvalidArgument, NotFound


@dataclass(frozen=True)
class ModelInfo:
    """An embedding model as callers see it.

    `model_id` names the whole chain that shapes an embedding (recognizer and the
    detector whose landmarks drive alignment); embeddings of different ids are never
    compared, so the id must change whenever either model changes.
    """

    model_id: str
    dimension: int
    detector: str  # file name of the face detector
    recognizer: str  # file name of the face recognizer


@dataclass(frozen=True)
class ServedModel:
    info: ModelInfo
    pipeline: FacePipeline


@dataclass(frozen=True)
class EmbedResult:
    faces: list[EmbeddedFace]
    model_id: str
    dimension: int
    image_width: int
    image_height: int


class FaceEmbeddingService:
    """Serves one or more models; the first one given is the default."""

    def __init__(self, models: Sequence[ServedModel], *, max_pixels: int):
        if not models:
            raise ValueError("an embedder needs at least one model")
        self._models = {m.info.model_id: m for m in models}
        self._default = models[0].info.model_id
        self._max_pixels = max_pixels

    @property
    def default_model_id(self) -> str:
        return self._default

    def models(self) -> list[tuple[ModelInfo, bool]]:
        """Each served model with whether it is the default."""
        return [(m.info, m.info.model_id == self._default) for m in self._models.values()]

    def model(self, model_id: str) -> ServedModel:
        """The model named `model_id` ("" means the default); NotFound lists the served ids."""
        if not model_id:
            return self._models[self._default]
        try:
            return self._models[model_id]
        except KeyError:
            served = ", ".join(sorted(self._models))
            raise NotFound(
                f"model_id {model_id!r} is not served by this embedder; served model ids: {served} "
                f"(or leave model_id empty for the default, {self._default})",
                reason="MODEL_NOT_FOUND",
                metadata={"model_id": model_id, "served": served},
            ) from None

    def embed(self, image: bytes, *, model_id: str = "", max_faces: int = 0) -> EmbedResult:
        """Decodes `image` and embeds its faces, most confident first. No face is not an error."""
        require_image(image)  # before the model lookup: an empty request is wrong whatever it names
        if max_faces < 0:
            raise InvalidArgument(f"max_faces must be 0 (all faces) or more, got {max_faces}", field="max_faces")
        model = self.model(model_id)
        decoded = decode_image(image, max_pixels=self._max_pixels)
        faces = model.pipeline.run(decoded.pixels, max_faces=max_faces)
        return EmbedResult(
            faces=faces,
            model_id=model.info.model_id,
            dimension=model.info.dimension,
            image_width=decoded.width,
            image_height=decoded.height,
        )
