"""The kinship head: its formula, its grafting onto an identity graph, and refusal of a graph it does not fit.

The identity graph here is a hand-made one with SFace's tensor names (bn1 -> Flatten ->
Gemm -> BatchNormalization -> fc1), so the test runs without any model file.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from kinship.kinship_head import HeadError, compose, head_dimension, head_model
from kinship.training.head_training import identity_layer

FEATURES = 1024 * 7 * 7


def identity_graph(rng: np.random.Generator, dimension: int = 8) -> tuple[bytes, dict[str, np.ndarray]]:
    """data (N, 1024, 7, 7) -> Relu -> bn1 -> Flatten -> Gemm(pre_fc1) -> BatchNormalization -> fc1."""
    weights = {
        "pre_fc1_w": rng.normal(0, 0.01, (dimension, FEATURES)).astype(np.float32),
        "pre_fc1_b": rng.normal(0, 0.1, dimension).astype(np.float32),
        "gamma": rng.uniform(0.5, 1.5, dimension).astype(np.float32),
        "beta": rng.normal(0, 0.1, dimension).astype(np.float32),
        "mean": rng.normal(0, 0.1, dimension).astype(np.float32),
        "var": rng.uniform(0.5, 2.0, dimension).astype(np.float32),
    }
    nodes = [
        helper.make_node("Relu", ["data"], ["bn1"]),
        helper.make_node("Flatten", ["bn1"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "pre_fc1_w", "pre_fc1_b"], ["pre_fc1"], transB=1),
        helper.make_node("BatchNormalization", ["pre_fc1", "gamma", "beta", "mean", "var"], ["fc1"], epsilon=2e-5),
    ]
    graph = helper.make_graph(
        nodes,
        "identity",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["N", 1024, 7, 7])],
        [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, ["N", dimension])],
        [numpy_helper.from_array(v, k) for k, v in weights.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString(), weights


def session(model: bytes) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


def factors(rng: np.random.Generator, dimension: int = 8, rank: int = 3):
    return (
        rng.normal(0, 0.1, (dimension, rank)).astype(np.float32),
        rng.normal(0, 0.01, (rank, FEATURES)).astype(np.float32),
        rng.normal(0, 0.1, dimension).astype(np.float32),
    )


def test_the_grafted_graph_keeps_the_identity_output_and_adds_the_heads_embedding():
    rng = np.random.default_rng(0)
    identity, _ = identity_graph(rng)
    left, right, bias = factors(rng)
    joint = session(compose(identity, head_model(left, right, bias)))
    x = rng.uniform(-1, 1, (5, 1024, 7, 7)).astype(np.float32)
    (alone,) = session(identity).run(["fc1"], {"data": x})
    fc1, embedding = joint.run(["fc1", "embedding"], {"data": x})
    np.testing.assert_array_equal(fc1, alone)  # the identity vector is untouched by the graft
    flat = np.maximum(x, 0).reshape(5, -1)
    half = lambda a: a.astype(np.float16).astype(np.float32)  # noqa: E731 - factors are stored as float16
    raw = alone + (flat @ half(right).T) @ half(left).T + bias
    np.testing.assert_allclose(embedding, raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(embedding, axis=1), 1.0, atol=1e-6)


def test_a_zero_change_gives_the_identity_direction():
    rng = np.random.default_rng(1)
    identity, _ = identity_graph(rng)
    zero = np.zeros((8, 2), np.float32), np.zeros((2, FEATURES), np.float32), np.zeros(8, np.float32)
    x = rng.uniform(-1, 1, (3, 1024, 7, 7)).astype(np.float32)
    fc1, embedding = session(compose(identity, head_model(*zero))).run(["fc1", "embedding"], {"data": x})
    np.testing.assert_allclose(embedding, fc1 / np.linalg.norm(fc1, axis=1, keepdims=True), atol=1e-6)


def test_the_head_is_small_and_says_its_dimension():
    rng = np.random.default_rng(2)
    head = head_model(*factors(rng, dimension=8, rank=4))
    assert head_dimension(head) == 8
    assert len(head) < FEATURES * 4 * 2 + 10_000  # float16 factors: 2 bytes per value


def test_a_head_for_another_graph_is_refused_with_what_is_missing():
    rng = np.random.default_rng(3)
    identity, _ = identity_graph(rng)
    head = head_model(*factors(rng))
    with pytest.raises(HeadError, match="no tensor 'conv_9'"):
        compose(identity, head, feature_map="conv_9")
    with pytest.raises(HeadError, match="no output 'embedding_out'"):
        compose(identity, head, identity_output="embedding_out")
    with pytest.raises(HeadError, match="do not make a head"):
        head_model(np.zeros((8, 3), np.float32), np.zeros((2, FEATURES), np.float32), np.zeros(8, np.float32))


def test_the_identity_layer_is_read_with_its_batch_norm_folded():
    rng = np.random.default_rng(4)
    identity, w = identity_graph(rng)
    weight, bias = identity_layer(onnx.ModelProto.FromString(identity))
    x = rng.uniform(0, 1, (4, 1024, 7, 7)).astype(np.float32)
    (fc1,) = session(identity).run(["fc1"], {"data": x})
    np.testing.assert_allclose(x.reshape(4, -1) @ weight.T + bias, fc1, rtol=1e-4, atol=1e-4)
    broken = onnx.ModelProto.FromString(identity)
    broken.graph.node[1].op_type = "Identity"
    with pytest.raises(ValueError, match="does not end bn1"):
        identity_layer(broken)
