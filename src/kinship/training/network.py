"""The kinship network as ONNX, built from the identity model's own graph.

The identity model (SFace) ends in a 1024-channel 7x7 feature map (`bn1`) followed
by its identity embedding layer. Identity layers are trained to tell people apart,
which throws away much of what relatives share; the feature map before them keeps
it. The kinship network is therefore:

    aligned face x (N, 3, 112, 112)
      -> the identity model's trunk on x and on x mirrored left-right
      -> global average pool of `bn1` for each, averaged over the two views (N, 1024)
      -> (f - mean) * inv_scale            standardised with the training set's statistics
      -> f @ projection                   (1024, d), learned by `kinship train`
      -> L2 normalisation                 -> kinship embedding (N, d)

`trunk_model` is the identity model without mirroring or projection, with the pooled
features as a second output: one run gives training both the features it learns the
projection from and the identity embedding (the zero-shot baseline, and the
similarity that RELATION_SELF is calibrated on). Both are built with onnx and
numpy only, and serve on onnxruntime like any model of the pack.
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import onnx
import onnxruntime
from onnx import TensorProto, helper, numpy_helper

from kinship.artifacts import NETWORK_INPUT, NETWORK_OUTPUT

#: The feature map of the identity model that the kinship network starts from.
FEATURE_MAP = "bn1"
FEATURES = 1024


def fold_constants(prepared: bytes) -> onnx.ModelProto:
    """onnxruntime's basic optimisation of the prepared identity model, constants folded, batch made dynamic.

    SFace's conv weights reach its Conv nodes through constant Reshapes; folding them
    leaves plain initializers, which a graph cut and a dynamic batch need.
    """
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.log_severity_level = 3
    with tempfile.TemporaryDirectory() as folder:
        options.optimized_model_filepath = os.path.join(folder, "basic.onnx")
        onnxruntime.InferenceSession(prepared, sess_options=options, providers=["CPUExecutionProvider"])
        model = onnx.load(options.optimized_model_filepath)
    del model.graph.value_info[:]
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    return model


def _cut(model: onnx.ModelProto, output: str) -> onnx.ModelProto:
    """The part of the graph that computes `output` (nodes after it removed)."""
    nodes = list(model.graph.node)
    needed = {output}
    kept = []
    for node in reversed(nodes):
        if any(name in needed for name in node.output):
            kept.append(node)
            needed.update(name for name in node.input if name)
    kept.reverse()
    used = {name for node in kept for name in node.input}
    graph = model.graph
    del graph.node[:]
    graph.node.extend(kept)
    initializers = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    del graph.output[:]
    return model


def _finish(model: onnx.ModelProto, output: str, dimension: int) -> bytes:
    model.graph.output.append(helper.make_tensor_value_info(output, TensorProto.FLOAT, ["N", dimension]))
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _pool(graph: onnx.GraphProto, source: str, output: str) -> None:
    axes = f"{output}_axes"
    graph.initializer.append(numpy_helper.from_array(np.array([2, 3], dtype=np.int64), axes))
    graph.node.append(helper.make_node("ReduceMean", [source, axes], [output], keepdims=0))


def trunk_model(identity_model: onnx.ModelProto) -> bytes:
    """(N, 3, 112, 112) aligned faces -> `features` (N, 1024) pooled `bn1` and `identity` (N, 128), raw.

    `identity` is the identity model's own output (not normalised), one row per image as given.
    """
    model = onnx.ModelProto.FromString(identity_model.SerializeToString())
    (identity_output,) = [o.name for o in model.graph.output]
    _pool(model.graph, FEATURE_MAP, "features")
    model.graph.node.append(helper.make_node("Identity", [identity_output], ["identity"]))
    del model.graph.output[:]
    model.graph.output.append(helper.make_tensor_value_info("features", TensorProto.FLOAT, ["N", FEATURES]))
    model.graph.output.append(helper.make_tensor_value_info("identity", TensorProto.FLOAT, ["N", None]))
    onnx.checker.check_model(model)
    return model.SerializeToString()


def kinship_network(
    identity_model: onnx.ModelProto, mean: np.ndarray, inv_scale: np.ndarray, projection: np.ndarray
) -> bytes:
    """The served kinship network (see the module's docstring); `projection` is (1024, d)."""
    if mean.shape != (FEATURES,) or inv_scale.shape != (FEATURES,) or projection.shape[0] != FEATURES:
        raise ValueError(
            f"expected mean and inv_scale of ({FEATURES},) and projection of ({FEATURES}, d); got "
            f"{mean.shape}, {inv_scale.shape}, {projection.shape}"
        )
    model = _cut(onnx.ModelProto.FromString(identity_model.SerializeToString()), FEATURE_MAP)
    graph = model.graph
    original_input = graph.input[0].name
    # The trunk now reads `both`: the batch and its mirror image, stacked along N.
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == original_input:
                node.input[i] = "both"
    graph.input[0].name = NETWORK_INPUT
    constants = {
        "flip_starts": np.array([-1], dtype=np.int64),
        "flip_ends": np.array([np.iinfo(np.int64).min], dtype=np.int64),
        "flip_axes": np.array([3], dtype=np.int64),
        "flip_steps": np.array([-1], dtype=np.int64),
        "views_shape": np.array([2, -1, FEATURES], dtype=np.int64),
        "views_axis": np.array([0], dtype=np.int64),
        "feature_mean": mean.astype(np.float32),
        "feature_inv_scale": inv_scale.astype(np.float32),
        "projection": projection.astype(np.float32),
    }
    graph.initializer.extend(numpy_helper.from_array(value, name) for name, value in constants.items())
    head = [
        helper.make_node("Slice", [NETWORK_INPUT, "flip_starts", "flip_ends", "flip_axes", "flip_steps"], ["mirrored"]),
        helper.make_node("Concat", [NETWORK_INPUT, "mirrored"], ["both"], axis=0),
    ]
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(head + nodes)
    _pool(graph, FEATURE_MAP, "pooled_views")
    graph.node.extend(
        [
            helper.make_node("Reshape", ["pooled_views", "views_shape"], ["views"]),
            helper.make_node("ReduceMean", ["views", "views_axis"], ["pooled"], keepdims=0),
            helper.make_node("Sub", ["pooled", "feature_mean"], ["centred"]),
            helper.make_node("Mul", ["centred", "feature_inv_scale"], ["standardised"]),
            helper.make_node("MatMul", ["standardised", "projection"], ["projected"]),
            helper.make_node("LpNormalization", ["projected"], [NETWORK_OUTPUT], axis=1, p=2),
        ]
    )
    return _finish(model, NETWORK_OUTPUT, int(projection.shape[1]))
