"""The face pipeline and the Embed use case, with fake detector, aligner and recognizer."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest

from kinship.embedder.bootstrap import EmbedderService
from kinship.embedder.domain.pipeline import FacePipeline, l2_normalise
from kinship.embedder.domain.service import FaceEmbeddingService, ModelInfo, ServedModel
from kinship.runtime.errors import InvalidArgument, NotFound, Unavailable
from tests.unit.embedder.embedder_fakes import CropAligner, FakeDetector, RecordingRecognizer, detection

IMAGE = np.zeros((120, 160, 3), np.uint8)


def png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    assert ok
    return buf.tobytes()


def test_faces_come_most_confident_first_with_unit_embeddings():
    image = IMAGE.copy()
    image[10:20, 10:20] = 1  # the face at (10, 10) gets a different embedding scale than the others
    detector = FakeDetector([detection(0.7, x=50), detection(0.95, x=10), detection(0.8, x=100)])
    faces = FacePipeline(detector, CropAligner(), RecordingRecognizer()).run(image)
    assert [f.detection.score for f in faces] == [0.95, 0.8, 0.7]
    for face in faces:
        assert face.embedding.dtype == np.float32
        assert np.linalg.norm(face.embedding) == pytest.approx(1.0, abs=1e-6)
        assert face.embedding[:2] == pytest.approx([0.6, 0.8])  # (3, 4) / 5


def test_max_faces_keeps_the_most_confident_and_embeds_only_those():
    detector = FakeDetector([detection(s, x=10 * i) for i, s in enumerate([0.61, 0.99, 0.75, 0.9])])
    recognizer = RecordingRecognizer()
    faces = FacePipeline(detector, CropAligner(), recognizer).run(IMAGE, max_faces=2)
    assert [f.detection.score for f in faces] == [0.99, 0.9]
    assert recognizer.calls == 2


def test_zero_embedding_is_an_error_not_a_nan_vector():
    recognizer = RecordingRecognizer(vector=np.zeros(8, np.float32))
    with pytest.raises(ValueError, match="norm"):
        FacePipeline(FakeDetector([detection(0.9)]), CropAligner(), recognizer).run(IMAGE)
    with pytest.raises(ValueError):
        l2_normalise(np.array([np.nan, 1.0]))


def test_wrong_embedding_length_is_an_error():
    recognizer = RecordingRecognizer(dimension=8, vector=np.ones(5, np.float32))
    with pytest.raises(ValueError, match="5 values, not 8"):
        FacePipeline(FakeDetector([detection(0.9)]), CropAligner(), recognizer).run(IMAGE)


def make_service(detections=(), model_ids=("model-a",)) -> tuple[FaceEmbeddingService, list[FakeDetector]]:
    detectors, models = [], []
    for model_id in model_ids:
        detector = FakeDetector(list(detections))
        detectors.append(detector)
        pipeline = FacePipeline(detector, CropAligner(), RecordingRecognizer())
        models.append(ServedModel(ModelInfo(model_id, 8, f"{model_id}-det.onnx", f"{model_id}-rec.onnx"), pipeline))
    return FaceEmbeddingService(models, max_pixels=1_000_000), detectors


def test_embed_reports_model_and_image_size():
    service, (detector,) = make_service([detection(0.9), detection(0.8, x=60)])
    result = service.embed(png(IMAGE), max_faces=1)
    assert (result.model_id, result.dimension) == ("model-a", 8)
    assert (result.image_width, result.image_height) == (160, 120)
    assert len(result.faces) == 1 and result.faces[0].detection.score == 0.9
    assert detector.images[0].shape == (120, 160, 3)


def test_an_image_without_faces_is_not_an_error():
    service, _ = make_service([])
    result = service.embed(png(IMAGE))
    assert result.faces == [] and result.model_id == "model-a"


def test_model_id_selects_the_model_and_empty_means_the_first():
    service, (first, second) = make_service([detection(0.9)], model_ids=("model-a", "model-b"))
    assert service.embed(png(IMAGE), model_id="model-b").model_id == "model-b"
    assert (len(first.images), len(second.images)) == (0, 1)
    assert service.embed(png(IMAGE)).model_id == "model-a"
    assert [(info.model_id, default) for info, default in service.models()] == [("model-a", True), ("model-b", False)]


def test_unknown_model_id_is_not_found_and_lists_the_served_ids():
    service, detectors = make_service([detection(0.9)], model_ids=("model-a", "model-b"))
    with pytest.raises(NotFound) as caught:
        service.embed(png(IMAGE), model_id="arcface-r100")
    assert "'arcface-r100'" in caught.value.message and "model-a, model-b" in caught.value.message
    assert caught.value.reason == "MODEL_NOT_FOUND"
    assert all(d.images == [] for d in detectors)  # refused before any work


def test_empty_image_and_negative_max_faces_are_invalid_arguments():
    service, _ = make_service()
    with pytest.raises(InvalidArgument) as empty:
        service.embed(b"")
    assert empty.value.violations[0].field == "image" and "image is empty" in empty.value.message
    with pytest.raises(InvalidArgument) as negative:
        service.embed(png(IMAGE), max_faces=-1)
    assert negative.value.violations[0].field == "max_faces"


def test_undecodable_image_is_refused_before_detection():
    service, (detector,) = make_service([detection(0.9)])
    with pytest.raises(InvalidArgument, match="JPEG, PNG, WebP or BMP"):
        service.embed(b"GIF89a" + bytes(32))
    assert detector.images == []


def test_pixel_limit_comes_from_the_service():
    service, _ = make_service()
    with pytest.raises(InvalidArgument, match="megapixels"):
        service.embed(png(np.zeros((1001, 1000, 3), np.uint8)))


def test_service_is_ready_until_it_closes():
    service, _ = make_service()
    embedder = EmbedderService(pack=None, service=service, executor=ThreadPoolExecutor(max_workers=1))
    asyncio.run(embedder.check_ready())
    asyncio.run(embedder.close())
    with pytest.raises(Unavailable, match="shutting down"):
        asyncio.run(embedder.check_ready())
