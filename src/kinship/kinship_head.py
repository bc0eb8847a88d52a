"""The kinship head: a small ONNX graph over the identity model's own feature map, and its composition.

An artifact of format 2 ships only this head (kilobytes to a few megabytes), not a
second copy of the face trunk. At load the embedder grafts it onto the identity
graph it already serves, so ONE run of the trunk per face gives both vectors:

    aligned face -> SFace trunk -> bn1 (N, 1024, 7, 7) -> SFace's identity layer -> fc1 (N, 128)  identity
                                      |                                              |
                                      +-> flatten -> @ V (50176, r) -> @ U (r, 128) -+-> + bias -> L2 -> embedding

The head is the identity layer plus a learned low-rank correction: training starts
from the identity layer itself (what recognises a person) and learns, from kin pairs
of families, the few directions in which relatives resemble each other more than
strangers do. The rank keeps the file small and the extra work per face negligible
(50176 x r multiply-adds against the trunk's ~0.5 G).

Built and composed with onnx and numpy only: the embedder, `kinship train` and
`kinship eval --artifact` share this one definition.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

#: Tensor names of the head's inputs and output.
HEAD_FEATURE_MAP = "feature_map"
HEAD_IDENTITY = "identity"
HEAD_OUTPUT = "embedding"
#: The identity model's tensors the head reads (SFace): its last feature map and its raw identity output.
IDENTITY_FEATURE_MAP = "bn1"
IDENTITY_OUTPUT = "fc1"
FEATURE_MAP_SHAPE = (1024, 7, 7)
_PREFIX = "kinship_head/"


class HeadError(ValueError):
    """The head does not fit the identity graph it is to be grafted on."""


def head_model(left: np.ndarray, right: np.ndarray, bias: np.ndarray) -> bytes:
    """The head as ONNX: embedding = L2(identity + (flatten(feature_map) @ right.T) @ left.T + bias).

    `left` is (d, r), `right` (r, 50176), `bias` (d,), with d the identity dimension.
    Factors are stored as float16 (half the bytes, no measurable change in scores) and
    cast once when the session is made (onnxruntime folds the constant Cast).
    """
    features = int(np.prod(FEATURE_MAP_SHAPE))
    dimension, rank = left.shape
    if right.shape != (rank, features) or bias.shape != (dimension,):
        raise HeadError(f"factors of shape {left.shape}, {right.shape}, {bias.shape} do not make a head")
    initializers = [
        numpy_helper.from_array(np.ascontiguousarray(right.T).astype(np.float16), "right_half"),
        numpy_helper.from_array(np.ascontiguousarray(left.T).astype(np.float16), "left_half"),
        numpy_helper.from_array(bias.astype(np.float32), "bias"),
    ]
    nodes = [
        helper.make_node("Cast", ["right_half"], ["right"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["left_half"], ["left"], to=TensorProto.FLOAT),
        helper.make_node("Flatten", [HEAD_FEATURE_MAP], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "right"], ["low"]),
        helper.make_node("MatMul", ["low", "left"], ["correction"]),
        helper.make_node("Add", [HEAD_IDENTITY, "correction"], ["corrected"]),
        helper.make_node("Add", ["corrected", "bias"], ["raw"]),
        helper.make_node("LpNormalization", ["raw"], [HEAD_OUTPUT], axis=1, p=2),
    ]
    graph = helper.make_graph(
        nodes,
        "kinship_head",
        [
            helper.make_tensor_value_info(HEAD_FEATURE_MAP, TensorProto.FLOAT, ["N", *FEATURE_MAP_SHAPE]),
            helper.make_tensor_value_info(HEAD_IDENTITY, TensorProto.FLOAT, ["N", dimension]),
        ],
        [helper.make_tensor_value_info(HEAD_OUTPUT, TensorProto.FLOAT, ["N", dimension])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="kinship train")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def head_dimension(head: bytes) -> int:
    model = onnx.ModelProto.FromString(head)
    return int(model.graph.output[0].type.tensor_type.shape.dim[1].dim_value)


def compose(
    identity: bytes,
    head: bytes,
    *,
    feature_map: str = IDENTITY_FEATURE_MAP,
    identity_output: str = IDENTITY_OUTPUT,
    borrowed: Mapping[str, str] | None = None,
) -> bytes:
    """The identity graph with the head grafted on: outputs `identity_output` (unchanged) and `embedding`.

    `borrowed` binds further head inputs to the identity graph's own weights (head input ->
    initializer name), so a head that reuses a layer of the trunk need not ship a copy.
    HeadError when the identity graph has no tensor `feature_map`, output `identity_output`
    or borrowed weight (the head was made for another identity model), or when the head
    has an input nothing binds.
    """
    base = onnx.ModelProto.FromString(identity)
    extra = onnx.ModelProto.FromString(head)
    produced = {name for node in base.graph.node for name in node.output}
    if feature_map not in produced:
        raise HeadError(f"the identity graph computes no tensor {feature_map!r}: the head was made for another model")
    if identity_output not in [o.name for o in base.graph.output]:
        raise HeadError(f"the identity graph has no output {identity_output!r}: the head was made for another model")
    weights = {init.name for init in base.graph.initializer}
    for name, target in (borrowed or {}).items():
        if target not in weights:
            raise HeadError(
                f"the identity graph has no weight {target!r} for the head's {name!r}: made for another model"
            )
    wired = {HEAD_FEATURE_MAP: feature_map, HEAD_IDENTITY: identity_output, **(borrowed or {})}
    unbound = [i.name for i in extra.graph.input if i.name not in wired]
    if unbound:
        raise HeadError(f"the head's inputs {unbound} are bound to nothing in the identity graph")

    def rename(name: str) -> str:
        if not name:
            return name
        return wired.get(name, name if name == HEAD_OUTPUT else _PREFIX + name)

    for init in extra.graph.initializer:
        init.name = rename(init.name)
        base.graph.initializer.append(init)
    for node in extra.graph.node:
        node.input[:] = [rename(n) for n in node.input]
        node.output[:] = [rename(n) for n in node.output]
        node.name = _PREFIX + (node.name or node.output[0])
        base.graph.node.append(node)
    base.graph.output.append(extra.graph.output[0])
    # The head's opset (13) is at most the identity graph's; keep the larger of the two.
    own = {o.domain: o.version for o in base.opset_import}
    if own.get("", 0) < 13:
        for o in base.opset_import:
            if o.domain == "":
                o.version = 13
    onnx.checker.check_model(base)
    return base.SerializeToString()


#: A block head re-runs SFace's last block (conv_14: depthwise 3x3 and pointwise 1x1 with
#: PReLUs, then bn1) with its own fine-tuned weights from the map before it, then the
#: identity layer borrowed from the identity graph plus a low-rank change, as `head_model`.
BLOCK_FEATURE_MAP = "conv_13_relu"
#: The head's borrowed inputs -> SFace's weights of the identity layer (pre_fc1 Gemm, fc1 batch norm).
BLOCK_BORROWED = {
    "identity_weight": "pre_fc1_weight_dequantized",
    "identity_bias": "pre_fc1_bias_dequantized",
    "identity_gamma": "fc1_gamma",
    "identity_beta": "fc1_beta",
    "identity_mean": "fc1_moving_mean",
    "identity_var": "fc1_moving_var",
}
BLOCK_SHAPES = {
    "dw_weight": (1024, 1, 3, 3),
    "dw_bias": (1024,),
    "dw_slope": (1024, 1, 1),
    "pw_weight": (1024, 1024, 1, 1),
    "pw_bias": (1024,),
    "pw_slope": (1024, 1, 1),
    "bn_scale": (1, 1024, 1, 1),
    "bn_shift": (1, 1024, 1, 1),
}


def block_head_model(
    block: dict[str, np.ndarray],
    left: np.ndarray,
    right: np.ndarray,
    bias: np.ndarray,
    *,
    epsilon: float = 2e-5,
) -> bytes:
    """embedding = L2(fc1(bn1') + flatten(bn1') @ right.T @ left.T + bias), bn1' = the re-run last block.

    `block` holds BLOCK_SHAPES' arrays (batch norms folded into the convolutions, bn1 as
    scale and shift); fc1 is SFace's own identity layer, bound at composition (BLOCK_BORROWED).
    """
    features = int(np.prod(FEATURE_MAP_SHAPE))
    dimension, rank = left.shape
    if right.shape != (rank, features) or bias.shape != (dimension,):
        raise HeadError(f"factors of shape {left.shape}, {right.shape}, {bias.shape} do not make a head")
    for name, shape in BLOCK_SHAPES.items():
        if name not in block or tuple(block[name].shape) != shape:
            raise HeadError(f"block weight {name} missing or not of shape {shape}")
    halves = {
        **{k: block[k] for k in BLOCK_SHAPES},
        "right": np.ascontiguousarray(right.T),
        "left": np.ascontiguousarray(left.T),
    }
    initializers = [numpy_helper.from_array(v.astype(np.float16), f"{k}_half") for k, v in halves.items()]
    initializers.append(numpy_helper.from_array(bias.astype(np.float32), "bias"))
    nodes = [helper.make_node("Cast", [f"{k}_half"], [k], to=TensorProto.FLOAT) for k in halves]
    nodes += [
        helper.make_node(
            "Conv",
            [HEAD_FEATURE_MAP, "dw_weight", "dw_bias"],
            ["dw"],
            group=1024,
            kernel_shape=[3, 3],
            pads=[1, 1, 1, 1],
        ),
        helper.make_node("PRelu", ["dw", "dw_slope"], ["dw_act"]),
        helper.make_node("Conv", ["dw_act", "pw_weight", "pw_bias"], ["pw"], kernel_shape=[1, 1]),
        helper.make_node("PRelu", ["pw", "pw_slope"], ["pw_act"]),
        helper.make_node("Mul", ["pw_act", "bn_scale"], ["scaled"]),
        helper.make_node("Add", ["scaled", "bn_shift"], ["map"]),
        helper.make_node("Flatten", ["map"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "identity_weight", "identity_bias"], ["pre"], transB=1),
        helper.make_node(
            "BatchNormalization",
            ["pre", "identity_gamma", "identity_beta", "identity_mean", "identity_var"],
            ["identity_of_map"],
            epsilon=epsilon,
        ),
        helper.make_node("MatMul", ["flat", "right"], ["low"]),
        helper.make_node("MatMul", ["low", "left"], ["correction"]),
        helper.make_node("Add", ["identity_of_map", "correction"], ["corrected"]),
        helper.make_node("Add", ["corrected", "bias"], ["raw"]),
        helper.make_node("LpNormalization", ["raw"], [HEAD_OUTPUT], axis=1, p=2),
    ]
    borrowed_shapes = {
        "identity_weight": [dimension, features],
        **{
            k: [dimension]
            for k in ("identity_bias", "identity_gamma", "identity_beta", "identity_mean", "identity_var")
        },
    }
    graph = helper.make_graph(
        nodes,
        "kinship_block_head",
        [helper.make_tensor_value_info(HEAD_FEATURE_MAP, TensorProto.FLOAT, ["N", *FEATURE_MAP_SHAPE])]
        + [helper.make_tensor_value_info(k, TensorProto.FLOAT, s) for k, s in borrowed_shapes.items()],
        [helper.make_tensor_value_info(HEAD_OUTPUT, TensorProto.FLOAT, ["N", dimension])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="kinship train")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()
