"""Embed with additional_model_ids: one detection and alignment, several models (fakes only)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from kinship.embedder.domain.pipeline import FacePipeline
from kinship.embedder.domain.service import FaceEmbeddingService, ModelInfo, ModelKind, ServedModel
from kinship.runtime.errors import InvalidArgument, NotFound
from tests.unit.embedder.embedder_fakes import CropAligner, FakeDetector, RecordingRecognizer, detection

IMAGE = np.zeros((120, 160, 3), np.uint8)
IMAGE[10:20, 10:20] = 1  # the face at (10, 10) gets another embedding scale than the one at (60, 10)
IDENTITY, KINSHIP, OTHER_KINSHIP, FOREIGN = "identity@det", "kinship-a@identity@det", "kinship-b@identity@det", "x@y"


def png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    assert ok
    return buf.tobytes()


def unit_vector(dimension: int, index: int) -> np.ndarray:
    vector = np.zeros(dimension, np.float32)
    vector[index] = 2.0  # not normalised: the pipeline must normalise it
    return vector


class Suite:
    """An identity model, two kinship models sharing its detector and aligner, and a model with its own."""

    def __init__(self) -> None:
        self.detector = FakeDetector([detection(0.8, x=60), detection(0.95, x=10)])
        self.foreign_detector = FakeDetector([detection(0.9)])
        aligner = CropAligner()
        self.identity = RecordingRecognizer(dimension=8)
        self.kinship = RecordingRecognizer(dimension=4, vector=unit_vector(4, 1))
        self.other_kinship = RecordingRecognizer(dimension=6, vector=unit_vector(6, 5))
        identity = FacePipeline(self.detector, aligner, self.identity)
        self.service = FaceEmbeddingService(
            [
                ServedModel(ModelInfo(IDENTITY, 8, "det.onnx", "id.onnx"), identity),
                ServedModel(
                    ModelInfo(KINSHIP, 4, "det.onnx", "kinship.onnx", ModelKind.KINSHIP, "a", IDENTITY),
                    identity.with_recognizer(self.kinship),
                ),
                ServedModel(
                    ModelInfo(OTHER_KINSHIP, 6, "det.onnx", "kinship.onnx", ModelKind.KINSHIP, "b", IDENTITY),
                    identity.with_recognizer(self.other_kinship),
                ),
                ServedModel(
                    ModelInfo(FOREIGN, 8, "other-det.onnx", "other.onnx"),
                    FacePipeline(self.foreign_detector, CropAligner(), RecordingRecognizer()),
                ),
            ],
            max_pixels=1_000_000,
        )


@pytest.fixture
def suite() -> Suite:
    return Suite()


def test_every_face_gets_one_vector_per_additional_model_in_request_order(suite):
    result = suite.service.embed(png(IMAGE), additional_model_ids=[OTHER_KINSHIP, KINSHIP])
    assert result.additional_model_ids == (OTHER_KINSHIP, KINSHIP)
    assert [f.detection.score for f in result.faces] == [0.95, 0.8]
    assert len(suite.detector.images) == 1  # detected once for all three models
    for face in result.faces:
        other, kinship = face.additional_embeddings
        np.testing.assert_allclose(other, unit_vector(6, 5) / 2)
        np.testing.assert_allclose(kinship, unit_vector(4, 1) / 2)
        assert face.embedding.shape == (8,)
    # Every model embedded the very same crop of each face, aligned once.
    for first, second, third in zip(suite.identity.crops, suite.other_kinship.crops, suite.kinship.crops, strict=True):
        assert first is second is third
    assert suite.identity.calls == suite.kinship.calls == suite.other_kinship.calls == 2


def test_without_additional_models_only_the_primary_runs(suite):
    result = suite.service.embed(png(IMAGE))
    assert result.additional_model_ids == ()
    assert all(face.additional_embeddings == () for face in result.faces)
    assert suite.kinship.calls == 0


def test_a_kinship_model_can_be_primary_with_the_identity_model_additional(suite):
    result = suite.service.embed(png(IMAGE), model_id=KINSHIP, additional_model_ids=[IDENTITY])
    assert (result.model_id, result.dimension, result.additional_model_ids) == (KINSHIP, 4, (IDENTITY,))
    assert result.faces[0].embedding.shape == (4,) and result.faces[0].additional_embeddings[0].shape == (8,)


def test_max_faces_applies_to_additional_models_too(suite):
    result = suite.service.embed(png(IMAGE), max_faces=1, additional_model_ids=[KINSHIP])
    assert len(result.faces) == 1 and suite.kinship.calls == 1


def test_unknown_additional_model_is_not_found_listing_the_served_ids(suite):
    with pytest.raises(NotFound) as caught:
        suite.service.embed(png(IMAGE), additional_model_ids=[KINSHIP, "kinship-zzz@identity@det"])
    message = caught.value.message
    assert "additional_model_ids[1]" in message and "'kinship-zzz@identity@det'" in message
    assert all(model_id in message for model_id in (IDENTITY, KINSHIP, OTHER_KINSHIP, FOREIGN))
    assert caught.value.reason == "MODEL_NOT_FOUND"
    assert suite.detector.images == []  # refused before any work


def test_a_model_with_another_detector_is_invalid_argument_naming_its_index(suite):
    with pytest.raises(InvalidArgument) as caught:
        suite.service.embed(png(IMAGE), additional_model_ids=[KINSHIP, FOREIGN])
    (violation,) = caught.value.violations
    assert violation.field == "additional_model_ids[1]"
    assert FOREIGN in violation.description and "does not share the detector" in violation.description
    assert suite.detector.images == [] and suite.foreign_detector.images == []


@pytest.mark.parametrize(
    ("ids", "field", "words"),
    [
        ([KINSHIP, OTHER_KINSHIP, KINSHIP], "additional_model_ids[2]", "repeats"),
        ([IDENTITY], "additional_model_ids[0]", "primary model already"),
        ([KINSHIP, ""], "additional_model_ids[1]", "is empty"),
    ],
    ids=["repeated", "the-primary", "empty"],
)
def test_repeated_primary_or_empty_ids_are_invalid_arguments(suite, ids, field, words):
    with pytest.raises(InvalidArgument) as caught:
        suite.service.embed(png(IMAGE), additional_model_ids=ids)
    assert [v.field for v in caught.value.violations] == [field]
    assert words in caught.value.message
    assert suite.detector.images == []


def test_a_malformed_list_is_invalid_argument_even_with_an_unknown_id_in_it(suite):
    with pytest.raises(InvalidArgument) as caught:
        suite.service.embed(png(IMAGE), additional_model_ids=["nobody@x", KINSHIP, KINSHIP])
    assert [v.field for v in caught.value.violations] == ["additional_model_ids[2]"]


def test_every_bad_entry_is_reported_at_once(suite):
    with pytest.raises(InvalidArgument) as caught:
        suite.service.embed(png(IMAGE), additional_model_ids=["", FOREIGN, KINSHIP, KINSHIP])
    assert [v.field for v in caught.value.violations] == [
        "additional_model_ids[0]",
        "additional_model_ids[1]",
        "additional_model_ids[3]",
    ]


def test_the_pipeline_refuses_a_pipeline_that_does_not_share_its_front_end(suite):
    identity = suite.service.model(IDENTITY).pipeline
    foreign = suite.service.model(FOREIGN).pipeline
    assert identity.shares_front_end(suite.service.model(KINSHIP).pipeline)
    assert not identity.shares_front_end(foreign)
    with pytest.raises(ValueError, match="does not share"):
        identity.run(IMAGE, also=[foreign])


def test_models_report_their_kind_artifact_and_binding(suite):
    infos = {info.model_id: (info, default) for info, default in suite.service.models()}
    assert infos[IDENTITY][0].kind is ModelKind.IDENTITY and infos[IDENTITY][1]
    kinship, default = infos[KINSHIP]
    assert (kinship.kind, kinship.artifact_id, kinship.bound_model_id, default) == (
        ModelKind.KINSHIP,
        "a",
        IDENTITY,
        False,
    )


def test_views_of_one_joint_recognizer_run_it_once_and_take_their_columns():
    from kinship.embedder.domain.pipeline import ColumnView

    joint_vector = np.concatenate([unit_vector(8, 2), unit_vector(4, 3)])
    joint = RecordingRecognizer(dimension=12, vector=joint_vector)
    detector = FakeDetector([detection(0.8, x=60), detection(0.95, x=10)])
    identity = FacePipeline(detector, CropAligner(), ColumnView(joint, 0, 8))
    kinship = identity.with_recognizer(ColumnView(joint, 8, 12))
    faces = identity.run(IMAGE, also=[kinship])
    assert len(faces) == 2
    assert joint.batches == [2]  # one run for both faces and both models
    for face in faces:
        assert face.embedding.shape == (8,) and face.embedding[2] > 0.99
        (kin,) = face.additional_embeddings
        assert kin.shape == (4,) and kin[3] > 0.99
    # alone, a view still runs its joint recognizer
    (alone,) = kinship.run_aligned(np.zeros((112, 112, 3), np.uint8))
    assert alone.embedding.shape == (4,) and len(joint.batches) == 2
    with pytest.raises(ValueError, match="not within"):
        ColumnView(joint, 8, 13)
