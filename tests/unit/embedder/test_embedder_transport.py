"""The Embedder servicer's protobuf <-> domain translation, over fakes (no network, no model)."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from kinship.embedder.domain.pipeline import FacePipeline
from kinship.embedder.domain.service import FaceEmbeddingService, ModelInfo, ModelKind, ServedModel
from kinship.embedder.transport import EmbedderServicer
from kinship.runtime.errors import InvalidArgument
from kinship.v1 import embedder_pb2
from tests.unit.embedder.embedder_fakes import CropAligner, FakeDetector, RecordingRecognizer, detection

IDENTITY, KINSHIP = "identity@det", "kinship-kin-1@identity@det"


@pytest.fixture
def servicer():
    pipeline = FacePipeline(FakeDetector([detection(0.9), detection(0.7, x=60)]), CropAligner(), RecordingRecognizer())
    kinship = np.array([0.0, 3.0, 4.0], np.float32)
    service = FaceEmbeddingService(
        [
            ServedModel(ModelInfo(IDENTITY, 8, "det.onnx", "rec.onnx"), pipeline),
            ServedModel(
                ModelInfo(KINSHIP, 3, "det.onnx", "kinship.onnx", ModelKind.KINSHIP, "kin-1", IDENTITY),
                pipeline.with_recognizer(RecordingRecognizer(dimension=3, vector=kinship)),
            ),
        ],
        max_pixels=1_000_000,
    )
    with ThreadPoolExecutor(max_workers=1) as executor:
        yield EmbedderServicer(service, executor)


def png() -> bytes:
    image = np.zeros((100, 120, 3), np.uint8)
    rows, cols = np.indices(image.shape[:2])
    image[(rows + cols) % 2 == 1] = 200  # sharp everywhere: quality equals the detection score
    ok, buf = cv2.imencode(".png", image)
    assert ok
    return buf.tobytes()


def test_embed_sends_additional_embeddings_and_quality(servicer):
    request = embedder_pb2.EmbedRequest(image=png(), additional_model_ids=[KINSHIP])
    reply = asyncio.run(servicer.Embed(request, None))
    assert (reply.model_id, reply.dimension, len(reply.faces)) == (IDENTITY, 8, 2)
    for face in reply.faces:
        (extra,) = face.additional_embeddings
        assert extra.model_id == KINSHIP
        assert list(extra.values) == pytest.approx([0.0, 0.6, 0.8])
        assert (face.model_id, face.dimension, len(face.embedding)) == (IDENTITY, 8, 8)
    assert [face.quality for face in reply.faces] == pytest.approx([0.9, 0.7])


def test_embed_without_additional_models_sends_none(servicer):
    reply = asyncio.run(servicer.Embed(embedder_pb2.EmbedRequest(image=png()), None))
    assert all(len(face.additional_embeddings) == 0 for face in reply.faces)


def test_a_bad_additional_model_id_reaches_the_caller_as_invalid_argument(servicer):
    request = embedder_pb2.EmbedRequest(image=png(), additional_model_ids=[KINSHIP, KINSHIP])
    with pytest.raises(InvalidArgument) as caught:
        asyncio.run(servicer.Embed(request, None))
    assert caught.value.violations[0].field == "additional_model_ids[1]"


def test_list_models_gives_kind_artifact_and_binding(servicer):
    identity, kinship = asyncio.run(servicer.ListModels(embedder_pb2.ListModelsRequest(), None)).models
    assert (identity.model_id, identity.kind, identity.is_default) == (IDENTITY, embedder_pb2.MODEL_KIND_IDENTITY, True)
    assert (identity.artifact_id, identity.bound_model_id) == ("", "")
    assert (kinship.model_id, kinship.kind, kinship.is_default) == (KINSHIP, embedder_pb2.MODEL_KIND_KINSHIP, False)
    assert (kinship.artifact_id, kinship.bound_model_id, kinship.dimension) == ("kin-1", IDENTITY, 3)
    assert (kinship.detector, kinship.recognizer) == ("det.onnx", "kinship.onnx")
