"""The kinship network built as ONNX from the default pack's identity model, run by onnxruntime."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest

from kinship.embedder.adapters.model_pack import recognizer_bytes
from kinship.training.network import FEATURES, fold_constants, kinship_network, trunk_model
from kinship.training.trainer import Projection


@pytest.fixture(scope="module")
def identity_model():
    return fold_constants(recognizer_bytes())


def _session(model: bytes) -> onnxruntime.InferenceSession:
    return onnxruntime.InferenceSession(model, providers=["CPUExecutionProvider"])


def test_the_network_is_the_trunk_mirrored_standardised_projected_and_normalised(identity_model) -> None:
    rng = np.random.default_rng(0)
    projection = Projection(
        mean=rng.normal(size=FEATURES).astype(np.float32),
        inv_scale=rng.uniform(0.5, 2.0, FEATURES).astype(np.float32),
        matrix=rng.normal(size=(FEATURES, 32)).astype(np.float32),
    )
    faces = rng.uniform(0, 255, (3, 3, 112, 112)).astype(np.float32)
    trunk = _session(trunk_model(identity_model))
    features, identity = trunk.run(["features", "identity"], {"data": faces})
    mirrored, _ = trunk.run(["features", "identity"], {"data": np.ascontiguousarray(faces[..., ::-1])})
    assert features.shape == (3, FEATURES) and identity.shape == (3, 128)

    network = _session(kinship_network(identity_model, projection.mean, projection.inv_scale, projection.matrix))
    (served,) = network.run(["embedding"], {"data": faces})
    expected = projection.embed(np.stack([features, mirrored], axis=1))
    assert served.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(served, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(served, expected, atol=1e-4)
    # Mirroring the input changes nothing: the network averages both views itself.
    (of_mirror,) = network.run(["embedding"], {"data": np.ascontiguousarray(faces[..., ::-1])})
    np.testing.assert_allclose(of_mirror, served, atol=1e-4)


def test_the_trunk_identity_output_is_the_served_identity_embedding(identity_model) -> None:
    from kinship.embedder.adapters.model_pack import load_pack

    pack = load_pack()
    face = np.random.default_rng(1).integers(0, 255, (112, 112, 3), dtype=np.uint8)
    served = pack.recognizer.embed(face)
    blob = np.ascontiguousarray(face[..., ::-1].transpose(2, 0, 1)[None].astype(np.float32))
    _, identity = _session(trunk_model(identity_model)).run(["features", "identity"], {"data": blob})
    cosine = float(served @ identity[0] / np.linalg.norm(served) / np.linalg.norm(identity[0]))
    assert cosine > 0.9999


def test_shapes_are_checked(identity_model) -> None:
    with pytest.raises(ValueError, match="projection"):
        kinship_network(identity_model, np.zeros(10), np.ones(FEATURES), np.zeros((FEATURES, 8)))
