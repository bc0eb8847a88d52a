"""The kinship network adapter: input/output contract, binding to the identity model, self-test (fakes only)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kinship.artifacts import ArtifactError, KinshipArtifact, kinship_model_id
from kinship.embedder.adapters.kinship_model import check_binding, kinship_recognizer, self_test
from kinship.embedder.adapters.model_pack import DEFAULT_PACK
from kinship.runtime.errors import ConfigError
from tests.kinship_artifact import hand_calibration
from tests.unit.embedder.embedder_fakes import FakeOnnxSession


def artifact(identity_model_id: str = DEFAULT_PACK.model_id, dimension: int = 4) -> KinshipArtifact:
    return KinshipArtifact(
        artifact_id="kin-unit-0001",
        path=Path("/artifacts/kin-unit-0001"),
        identity_model_id=identity_model_id,
        kinship_model_id=kinship_model_id("kin-unit-0001", identity_model_id),
        dimension=dimension,
        network_file="kinship.onnx",
        network_sha256="0" * 64,
        calibration=hand_calibration(),
        created_at="2026-11-27T00:00:00Z",
    )


def test_the_network_gets_one_rgb_float_face_named_data_and_answers_embedding():
    session = FakeOnnxSession({"embedding": np.array([[0.6, 0.8, 0.0, 0.0]], np.float32)})
    recognizer = kinship_recognizer(session, dimension=4)
    face = np.zeros((112, 112, 3), np.uint8)
    face[..., 0], face[..., 1], face[..., 2] = 10, 20, 30  # B, G, R
    vector = recognizer.embed(face)
    np.testing.assert_allclose(vector, [0.6, 0.8, 0.0, 0.0])
    (feed,) = session.feeds
    (blob,) = feed.values()
    assert list(feed) == ["data"] and blob.shape == (1, 3, 112, 112) and blob.dtype == np.float32
    assert (blob[0, 0, 0, 0], blob[0, 1, 0, 0], blob[0, 2, 0, 0]) == (30.0, 20.0, 10.0)  # RGB, 0..255


def test_the_network_refuses_a_crop_of_another_size():
    recognizer = kinship_recognizer(FakeOnnxSession({"embedding": np.ones((1, 4))}), dimension=4)
    with pytest.raises(ValueError, match="112x112"):
        recognizer.embed(np.zeros((64, 64, 3), np.uint8))


def test_an_artifact_bound_to_the_served_identity_model_passes():
    check_binding(artifact(), DEFAULT_PACK.model_id)


def test_an_artifact_bound_to_another_identity_model_is_refused_saying_what_to_do():
    with pytest.raises(ArtifactError) as caught:
        check_binding(artifact(identity_model_id="arcface-r100@retinaface"), DEFAULT_PACK.model_id)
    message = str(caught.value)
    assert "kin-unit-0001" in message and "'arcface-r100@retinaface'" in message
    assert repr(DEFAULT_PACK.model_id) in message and "kinship train" in message and "ACTIVE" in message
    assert isinstance(caught.value, ConfigError)  # the service refuses to start


@pytest.mark.parametrize(
    ("output", "words"),
    [
        (np.ones((1, 3), np.float32), "gives 3 values, its manifest says 4"),
        (np.zeros((1, 4), np.float32), "unusable vector"),
        (np.array([[np.nan, 1, 1, 1]], np.float32), "unusable vector"),
    ],
    ids=["wrong-dimension", "zero-vector", "nan"],
)
def test_self_test_refuses_a_network_that_gives_no_usable_vector(output, words):
    recognizer = kinship_recognizer(FakeOnnxSession({"embedding": output}), dimension=4)
    with pytest.raises(ArtifactError, match=words):
        self_test(artifact(), recognizer)


def test_self_test_passes_a_finite_vector_of_the_declared_dimension():
    session = FakeOnnxSession({"embedding": np.array([[0.0, 1.0, 0.0, 0.0]], np.float32)})
    self_test(artifact(), kinship_recognizer(session, dimension=4))
    assert len(session.feeds) == 1  # it really ran the network once


def test_self_test_reports_a_network_that_fails_to_run():
    class BrokenSession:
        def run(self, output_names, input_feed):
            raise RuntimeError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid dimensions")

    with pytest.raises(ArtifactError, match="failed its self-test run.*invalid dimensions"):
        self_test(artifact(), kinship_recognizer(BrokenSession(), dimension=4))
