"""The block head: SFace's last block re-run with its own weights, the identity layer borrowed from the graph.

The identity graph here is hand-made with SFace's tensor and weight names (conv_13_relu ->
depthwise Conv -> PRelu -> Conv -> PRelu -> bn1 -> Flatten -> Gemm -> BatchNormalization -> fc1),
so the test runs without any model file.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

from kinship.kinship_head import BLOCK_BORROWED, BLOCK_FEATURE_MAP, HeadError, block_head_model, compose
from kinship.training.head_training import borrowed_weights, identity_layer, last_block

FEATURES = 1024 * 7 * 7
DIMENSION = 8


def sface_tail(rng: np.random.Generator) -> bytes:
    w = {
        "dw_w": rng.normal(0, 0.3, (1024, 1, 3, 3)),
        "dw_b": rng.normal(0, 0.1, 1024),
        "dw_gamma": rng.uniform(0.1, 0.3, (1024, 1, 1)),
        "pw_w": rng.normal(0, 0.03, (1024, 1024, 1, 1)),
        "pw_b": rng.normal(0, 0.1, 1024),
        "pw_gamma": rng.uniform(0.1, 0.3, (1024, 1, 1)),
        "bn1_gamma": rng.uniform(0.5, 1.5, 1024),
        "bn1_beta": rng.normal(0, 0.1, 1024),
        "bn1_moving_mean": rng.normal(0, 0.1, 1024),
        "bn1_moving_var": rng.uniform(0.5, 2.0, 1024),
        "pre_fc1_weight_dequantized": rng.normal(0, 0.01, (DIMENSION, FEATURES)),
        "pre_fc1_bias_dequantized": rng.normal(0, 0.1, DIMENSION),
        "fc1_gamma": rng.uniform(0.5, 1.5, DIMENSION),
        "fc1_beta": rng.normal(0, 0.1, DIMENSION),
        "fc1_moving_mean": rng.normal(0, 0.1, DIMENSION),
        "fc1_moving_var": rng.uniform(0.5, 2.0, DIMENSION),
    }
    nodes = [
        helper.make_node("Relu", ["data"], [BLOCK_FEATURE_MAP]),
        helper.make_node(
            "Conv", [BLOCK_FEATURE_MAP, "dw_w", "dw_b"], ["dw"], group=1024, kernel_shape=[3, 3], pads=[1, 1, 1, 1]
        ),
        helper.make_node("PRelu", ["dw", "dw_gamma"], ["dw_relu"]),
        helper.make_node("Conv", ["dw_relu", "pw_w", "pw_b"], ["pw"], kernel_shape=[1, 1]),
        helper.make_node("PRelu", ["pw", "pw_gamma"], ["pw_relu"]),
        helper.make_node(
            "BatchNormalization",
            ["pw_relu", "bn1_gamma", "bn1_beta", "bn1_moving_mean", "bn1_moving_var"],
            ["bn1"],
            epsilon=2e-5,
        ),
        helper.make_node("Flatten", ["bn1"], ["flat"], axis=1),
        helper.make_node(
            "Gemm", ["flat", "pre_fc1_weight_dequantized", "pre_fc1_bias_dequantized"], ["pre_fc1"], transB=1
        ),
        helper.make_node(
            "BatchNormalization",
            ["pre_fc1", "fc1_gamma", "fc1_beta", "fc1_moving_mean", "fc1_moving_var"],
            ["fc1"],
            epsilon=2e-5,
        ),
    ]
    graph = helper.make_graph(
        nodes,
        "identity",
        [helper.make_tensor_value_info("data", TensorProto.FLOAT, ["N", 1024, 7, 7])],
        [helper.make_tensor_value_info("fc1", TensorProto.FLOAT, ["N", DIMENSION])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in w.items()],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model.SerializeToString()


def session(model: bytes) -> onnxruntime.InferenceSession:
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])


def zero_change(rank: int = 1):
    return (
        np.zeros((DIMENSION, rank), np.float32),
        np.zeros((rank, FEATURES), np.float32),
        np.zeros(DIMENSION, np.float32),
    )


def test_the_unchanged_block_head_is_the_identity_model():
    rng = np.random.default_rng(0)
    identity = sface_tail(rng)
    block = last_block(onnx.ModelProto.FromString(identity))
    joint = session(
        compose(
            identity, block_head_model(block, *zero_change()), feature_map=BLOCK_FEATURE_MAP, borrowed=BLOCK_BORROWED
        )
    )
    x = rng.uniform(-1, 1, (4, 1024, 7, 7)).astype(np.float32)
    fc1, embedding = joint.run(["fc1", "embedding"], {"data": x})
    (alone,) = session(identity).run(["fc1"], {"data": x})
    np.testing.assert_array_equal(fc1, alone)
    cosine = np.einsum("nd,nd->n", embedding, fc1 / np.linalg.norm(fc1, axis=1, keepdims=True))
    assert cosine.min() > 0.9999  # float16 copies of the block's weights


def test_a_changed_block_and_layer_compute_the_stated_formula():
    rng = np.random.default_rng(1)
    identity = sface_tail(rng)
    model = onnx.ModelProto.FromString(identity)
    block = last_block(model)
    block["pw_weight"] = block["pw_weight"] + rng.normal(0, 0.01, block["pw_weight"].shape).astype(np.float32)
    left = rng.normal(0, 0.1, (DIMENSION, 3)).astype(np.float32)
    right = rng.normal(0, 0.01, (3, FEATURES)).astype(np.float32)
    bias = rng.normal(0, 0.1, DIMENSION).astype(np.float32)
    head = block_head_model(block, left, right, bias)
    x = rng.uniform(-1, 1, (3, 1024, 7, 7)).astype(np.float32)
    # The head alone, its borrowed weights fed as inputs (what training measures), equals the grafted one.
    (alone,) = session(head).run(["embedding"], {"feature_map": np.maximum(x, 0), **borrowed_weights(model)})
    joint = session(compose(identity, head, feature_map=BLOCK_FEATURE_MAP, borrowed=BLOCK_BORROWED))
    (embedding,) = joint.run(["embedding"], {"data": x})
    np.testing.assert_allclose(alone, embedding, atol=1e-5)
    # ... and the numpy formula (float16 weights): fc1 of the re-run block, plus the low-rank change.
    h = lambda a: a.astype(np.float16).astype(np.float32)  # noqa: E731
    m = np.maximum(x, 0)
    padded = np.pad(m, ((0, 0), (0, 0), (1, 1), (1, 1)))
    dw = (
        sum(
            padded[:, :, i : i + 7, j : j + 7] * h(block["dw_weight"])[None, :, 0, i, j, None, None]
            for i in range(3)
            for j in range(3)
        )
        + h(block["dw_bias"])[None, :, None, None]
    )
    dw = np.where(dw > 0, dw, dw * h(block["dw_slope"])[None])
    pw = np.einsum("nchw,oc->nohw", dw, h(block["pw_weight"])[:, :, 0, 0]) + h(block["pw_bias"])[None, :, None, None]
    pw = np.where(pw > 0, pw, pw * h(block["pw_slope"])[None])
    flat = (pw * h(block["bn_scale"]) + h(block["bn_shift"])).reshape(3, -1)
    weight, layer_bias = identity_layer(model)
    raw = flat @ weight.T + layer_bias + (flat @ h(right).T) @ h(left).T + bias
    np.testing.assert_allclose(embedding, raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-4)


def test_a_block_head_refuses_a_graph_without_its_weights_or_an_unbound_input():
    rng = np.random.default_rng(2)
    identity = sface_tail(rng)
    head = block_head_model(last_block(onnx.ModelProto.FromString(identity)), *zero_change())
    with pytest.raises(HeadError, match="bound to nothing"):
        compose(identity, head, feature_map=BLOCK_FEATURE_MAP)
    with pytest.raises(HeadError, match="no weight 'fc9_gamma'"):
        compose(
            identity, head, feature_map=BLOCK_FEATURE_MAP, borrowed={**BLOCK_BORROWED, "identity_gamma": "fc9_gamma"}
        )
    with pytest.raises(HeadError, match="block weight dw_bias missing"):
        block_head_model({"dw_weight": np.zeros((1024, 1, 3, 3))}, *zero_change())


def test_the_last_block_is_read_only_from_an_sface_tail():
    broken = onnx.ModelProto.FromString(sface_tail(np.random.default_rng(3)))
    broken.graph.node[2].op_type = "Relu"
    del broken.graph.node[2].input[1:]
    with pytest.raises(ValueError, match="does not end conv_13_relu"):
        last_block(broken)
