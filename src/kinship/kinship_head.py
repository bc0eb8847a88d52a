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
) -> bytes:
    """The identity graph with the head grafted on: outputs `identity_output` (unchanged) and `embedding`.

    HeadError when the identity graph has no tensor `feature_map` or output
    `identity_output` (the head was made for another identity model).
    """
    base = onnx.ModelProto.FromString(identity)
    extra = onnx.ModelProto.FromString(head)
    produced = {name for node in base.graph.node for name in node.output}
    if feature_map not in produced:
        raise HeadError(f"the identity graph computes no tensor {feature_map!r}: the head was made for another model")
    if identity_output not in [o.name for o in base.graph.output]:
        raise HeadError(f"the identity graph has no output {identity_output!r}: the head was made for another model")
    wired = {HEAD_FEATURE_MAP: feature_map, HEAD_IDENTITY: identity_output}

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
