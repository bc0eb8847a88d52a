"""What the Embedder service does, free of gRPC: checks a request, picks the model, runs it."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from kinship.embedder.domain.images import DEFAULT_MAX_BYTES, decode_image, require_image
from kinship.embedder.domain.pipeline import EmbeddedFace, FaceOptions, FacePipeline
from kinship.runtime.errors import FieldViolation, InvalidArgument, KinshipError, NotFound

# At most this many problems are spelled out in an error message (all are in its details).
_MESSAGE_PROBLEMS = 3
#: Smallest side of a pre-aligned crop (KinFaceW-style research crops are 64x64).
MIN_ALIGNED_CROP = 32


class ModelKind(enum.Enum):
    """What a model's vectors are for."""

    IDENTITY = "identity"  # near vectors: the same person
    KINSHIP = "kinship"  # near vectors: likely close relatives (a trained kinship artifact)


@dataclass(frozen=True)
class ModelInfo:
    """An embedding model as callers see it.

    `model_id` names the whole chain that shapes an embedding (recognizer and the
    detector whose landmarks drive alignment); embeddings of different ids are never
    compared, so the id must change whenever either model changes. A kinship model
    names the trained artifact it comes from and the identity model it is bound to
    (whose detector and alignment it shares).
    """

    model_id: str
    dimension: int
    detector: str  # file name of the face detector
    recognizer: str  # file name of the face recognizer
    kind: ModelKind = ModelKind.IDENTITY
    artifact_id: str = ""  # kinship models only
    bound_model_id: str = ""  # kinship models only
    pack_id: str = ""  # the model pack it comes from ("" for a kinship model)
    execution_provider: str = ""  # onnxruntime provider that runs it
    has_attributes: bool = False  # whether faces get age and sex estimates
    licence: str = ""  # the pack's licence, as its manifest states it


@dataclass(frozen=True)
class ServedModel:
    info: ModelInfo
    pipeline: FacePipeline


@dataclass(frozen=True)
class EmbedResult:
    """Faces of one image. Each face's `additional_embeddings` follow `additional_model_ids`."""

    faces: list[EmbeddedFace]
    model_id: str
    dimension: int
    image_width: int
    image_height: int
    additional_model_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class EmbedItem:
    """One image of a request: Embed takes one, EmbedBatch many."""

    image: bytes
    model_id: str = ""
    max_faces: int = 0
    additional_model_ids: tuple[str, ...] = ()
    pre_aligned: bool = False
    min_face_size: float = 0.0
    min_quality: float = 0.0
    largest_face_only: bool = False


class FaceEmbeddingService:
    """Serves one or more models; the first one given is the default."""

    def __init__(self, models: Sequence[ServedModel], *, max_pixels: int, max_bytes: int = DEFAULT_MAX_BYTES):
        if not models:
            raise ValueError("an embedder needs at least one model")
        self._models = {m.info.model_id: m for m in models}
        if len(self._models) != len(models):
            raise ValueError("two served models have the same model id")
        self._default = models[0].info.model_id
        self._max_pixels = max_pixels
        self._max_bytes = max_bytes

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
            raise self._not_found("model_id", model_id) from None

    def additional_models(self, primary: ServedModel, model_ids: Sequence[str]) -> list[ServedModel]:
        """The models of `additional_model_ids`, each checked against the primary model.

        INVALID_ARGUMENT (one field violation per bad entry) for an empty or repeated id,
        the primary model itself, or a model that does not share the primary's detector
        and aligner; otherwise NOT_FOUND for the first id this embedder does not serve.
        """
        problems: list[FieldViolation] = []
        unknown: list[tuple[str, str]] = []  # (field, model id)
        models: list[ServedModel] = []
        seen: dict[str, int] = {}
        primary_id = primary.info.model_id
        for i, model_id in enumerate(model_ids):
            field = f"additional_model_ids[{i}]"
            if not model_id:
                problems.append(FieldViolation(field, "is empty; name a served model id (see ListModels)"))
                continue
            if model_id == primary_id:
                problems.append(
                    FieldViolation(
                        field, f"{model_id!r} is the primary model already (its vector is Face.embedding); drop it"
                    )
                )
                continue
            if model_id in seen:
                problems.append(
                    FieldViolation(field, f"repeats {model_id!r} of additional_model_ids[{seen[model_id]}]; drop it")
                )
                continue
            seen[model_id] = i
            model = self._models.get(model_id)
            if model is None:
                unknown.append((field, model_id))
                continue
            if not primary.pipeline.shares_front_end(model.pipeline):
                problems.append(
                    FieldViolation(
                        field,
                        f"{model_id!r} does not share the detector and alignment of {primary_id!r} "
                        f"(detector {model.info.detector} vs {primary.info.detector}), so it cannot embed the same "
                        "faces; embed the image with it in a request of its own",
                    )
                )
                continue
            models.append(model)
        if problems:
            shown = "; ".join(f"{p.field}: {p.description}" for p in problems[:_MESSAGE_PROBLEMS])
            more = len(problems) - _MESSAGE_PROBLEMS
            suffix = f" (and {more} more problems)" if more > 0 else ""
            raise InvalidArgument(f"invalid additional_model_ids: {shown}{suffix}", violations=problems)
        if unknown:
            raise self._not_found(*unknown[0])
        return models

    def embed(
        self,
        image: bytes,
        *,
        model_id: str = "",
        max_faces: int = 0,
        additional_model_ids: Sequence[str] = (),
        pre_aligned: bool = False,
        min_face_size: float = 0.0,
        min_quality: float = 0.0,
        largest_face_only: bool = False,
    ) -> EmbedResult:
        """Decodes `image` and embeds its faces, most confident first. No face is not an error.

        Every face is also embedded by each model of `additional_model_ids`, from the
        same detection and aligned crop as the primary model's. With `pre_aligned` the
        image is one face crop already aligned to the ArcFace template (square, e.g.
        112x112 or 64x64): no detection, it is resized and embedded.
        """
        require_image(image)  # before the model lookup: an empty request is wrong whatever it names
        problems = []
        if max_faces < 0:
            problems.append(FieldViolation("max_faces", f"must be 0 (all faces) or more, got {max_faces}"))
        if not min_face_size >= 0:  # also catches NaN
            problems.append(
                FieldViolation("min_face_size", f"must be 0 (the service default) or more pixels, got {min_face_size}")
            )
        if not 0 <= min_quality <= 1:
            problems.append(FieldViolation("min_quality", f"must be between 0 and 1, got {min_quality}"))
        if problems:
            shown = "; ".join(f"{p.field} {p.description}" for p in problems)
            raise InvalidArgument(shown, violations=problems)
        model = self.model(model_id)
        additional = self.additional_models(model, additional_model_ids)
        decoded = decode_image(image, max_pixels=self._max_pixels, max_bytes=self._max_bytes)
        also = [m.pipeline for m in additional]
        if pre_aligned:
            faces = model.pipeline.run_aligned(self._aligned_crop(decoded.pixels), also, min_quality=min_quality)
        else:
            options = FaceOptions(
                max_faces=max_faces,
                min_face_size=min_face_size,
                min_quality=min_quality,
                largest_face_only=largest_face_only,
            )
            faces = model.pipeline.run(decoded.pixels, also=also, options=options)
        return EmbedResult(
            faces=faces,
            model_id=model.info.model_id,
            dimension=model.info.dimension,
            image_width=decoded.width,
            image_height=decoded.height,
            additional_model_ids=tuple(m.info.model_id for m in additional),
        )

    def embed_item(self, item: EmbedItem) -> EmbedResult:
        return self.embed(
            item.image,
            model_id=item.model_id,
            max_faces=item.max_faces,
            additional_model_ids=item.additional_model_ids,
            pre_aligned=item.pre_aligned,
            min_face_size=item.min_face_size,
            min_quality=item.min_quality,
            largest_face_only=item.largest_face_only,
        )

    def embed_or_error(self, item: EmbedItem) -> EmbedResult | KinshipError:
        """`embed_item`, with a caller's error returned instead of raised (EmbedBatch answers per item)."""
        try:
            return self.embed_item(item)
        except KinshipError as exc:
            return exc

    @staticmethod
    def _aligned_crop(pixels):
        height, width = pixels.shape[:2]
        if height != width or height < MIN_ALIGNED_CROP:
            raise InvalidArgument(
                f"a pre-aligned face crop must be square and at least {MIN_ALIGNED_CROP} px (112x112 as the ArcFace "
                f"template, or 64x64 research crops), got {width}x{height}; send the aligned crop, or send the "
                "photo with pre_aligned false to detect and align its faces",
                field="pre_aligned",
            )
        return pixels

    def _not_found(self, field: str, model_id: str) -> NotFound:
        served = ", ".join(sorted(self._models))
        hint = f" (or leave model_id empty for the default, {self._default})" if field == "model_id" else ""
        return NotFound(
            f"{field} {model_id!r} is not served by this embedder; served model ids: {served}{hint}",
            reason="MODEL_NOT_FOUND",
            metadata={"model_id": model_id, "served": served},
        )
