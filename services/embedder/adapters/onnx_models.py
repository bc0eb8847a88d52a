"""ONNX models in memory: load-time preparation and onnxruntime sessions.

OpenCV Zoo's int8 "bq" (block-quantized) models store each weight as an int8
initializer behind a `DequantizeLinear` node. onnxruntime refuses one of them (a
`block_size` with a one-element scale, "block_size must be 0 for per-tensor
quantization"), and the SFace file also declares graph inputs that no node reads,
which onnxruntime then demands at run time. Folding every constant
`DequantizeLinear` into a float32 initializer once, and dropping unused inputs,
fixes both and makes the graphs faster (no dequantization per run). Nothing is
written to disk: the prepared model is returned as bytes for
`onnxruntime.InferenceSession`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import onnx
import onnxruntime
from onnx import numpy_helper


class OnnxSession(Protocol):
    """The part of onnxruntime.InferenceSession that detectors and recognizers use."""

    def run(self, output_names: list[str] | None, input_feed: dict[str, np.ndarray]) -> list[Any]: ...


@dataclass(frozen=True)
class PreparationReport:
    """What `prepare_model` changed: for logs and tests."""

    folded_dequantize: int
    dropped_inputs: int
    dropped_initializers: int


def dequantize(
    quantized: np.ndarray,
    scale: np.ndarray,
    zero_point: np.ndarray | None,
    axis: int = 1,
    block_size: int = 0,
) -> np.ndarray:
    """(q - zero_point) * scale in float32, with ONNX DequantizeLinear's broadcasting rules.

    - scale with one element: per-tensor (whatever `block_size` says; this is the
      case onnxruntime refuses);
    - 1-D scale without `block_size`: per-axis, one value per slice along `axis`;
    - `block_size` > 0: scale has the shape of the input with `axis` divided into
      blocks of `block_size`; each value is repeated over its block.
    """
    q = quantized.astype(np.float32)
    s = scale.astype(np.float32)
    zp = np.zeros_like(s) if zero_point is None else zero_point.astype(np.float32)
    if s.size == 1:
        return ((q - zp.reshape(())) * s.reshape(())).astype(np.float32)
    axis = axis % q.ndim
    if block_size > 0:
        length = q.shape[axis]
        s = np.repeat(s, block_size, axis=axis).take(np.arange(length), axis=axis)
        zp = np.repeat(zp, block_size, axis=axis).take(np.arange(length), axis=axis)
    else:
        shape = [1] * q.ndim
        shape[axis] = -1
        s, zp = s.reshape(shape), zp.reshape(shape)
    return ((q - zp) * s).astype(np.float32)


def _attributes(node: onnx.NodeProto) -> dict[str, object]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def fold_constant_dequantize(model: onnx.ModelProto) -> int:
    """Replaces each DequantizeLinear whose inputs are all initializers by a float32 initializer.

    Returns how many nodes were folded. Initializers left unused are removed later
    by `drop_unused`.
    """
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    kept: list[onnx.NodeProto] = []
    folded: list[onnx.TensorProto] = []
    for node in graph.node:
        inputs = [name for name in node.input if name]
        if node.op_type != "DequantizeLinear" or not all(name in initializers for name in inputs):
            kept.append(node)
            continue
        attrs = _attributes(node)
        arrays = [numpy_helper.to_array(initializers[name]) for name in inputs]
        value = dequantize(
            arrays[0],
            arrays[1],
            arrays[2] if len(arrays) > 2 else None,
            axis=int(attrs.get("axis", 1)),
            block_size=int(attrs.get("block_size", 0)),
        )
        folded.append(numpy_helper.from_array(value, name=node.output[0]))
    del graph.node[:]
    graph.node.extend(kept)
    graph.initializer.extend(folded)
    return len(folded)


def drop_unused(model: onnx.ModelProto) -> tuple[int, int]:
    """Removes graph inputs and initializers that no node (and no graph output) reads.

    Inputs that merely expose an initializer are removed too: onnxruntime treats
    such inputs as overridable and then skips constant folding on them. Returns
    (inputs dropped, initializers dropped).
    """
    graph = model.graph
    used = {name for node in graph.node for name in node.input}
    used |= {out.name for out in graph.output}
    initialized = {init.name for init in graph.initializer}
    inputs = [i for i in graph.input if i.name in used and i.name not in initialized]
    initializers = [i for i in graph.initializer if i.name in used]
    dropped = (len(graph.input) - len(inputs), len(graph.initializer) - len(initializers))
    del graph.input[:]
    graph.input.extend(inputs)
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    return dropped


def prepare_model(data: bytes) -> tuple[bytes, PreparationReport]:
    """Folds constant dequantization and drops unused inputs; returns the new model's bytes."""
    model = onnx.load_model_from_string(data)
    folded = fold_constant_dequantize(model)
    dropped_inputs, dropped_initializers = drop_unused(model)
    report = PreparationReport(folded, dropped_inputs, dropped_initializers)
    return model.SerializeToString(), report


def create_session(model: bytes, *, intra_op_threads: int) -> onnxruntime.InferenceSession:
    """A CPU session over prepared model bytes; one run at a time uses `intra_op_threads` cores.

    Sessions are safe to run from several threads at once, so one session per model
    serves every worker.
    """
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: warnings about the graph are ours to fix, not the operator's
    return onnxruntime.InferenceSession(model, sess_options=options, providers=["CPUExecutionProvider"])
