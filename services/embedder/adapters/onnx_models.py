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
    folded_reshape: int = 0
    dynamic_batch: bool = False


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


def fold_constant_reshape(model: onnx.ModelProto) -> int:
    """Replaces each Reshape of an initializer by a constant-shape initializer (SFace reshapes its weights).

    Weight reshapes look like batch reshapes to `make_batch_dynamic`; folding them first
    leaves only the activations' reshapes. Returns how many nodes were folded.
    """
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    kept: list[onnx.NodeProto] = []
    folded: list[onnx.TensorProto] = []
    for node in graph.node:
        if node.op_type != "Reshape" or not all(name in initializers for name in node.input[:2]):
            kept.append(node)
            continue
        data = numpy_helper.to_array(initializers[node.input[0]])
        shape = [int(v) for v in numpy_helper.to_array(initializers[node.input[1]])]
        # allowzero=0 (the default): a 0 copies that dimension from the input.
        shape = [data.shape[i] if v == 0 else v for i, v in enumerate(shape)]
        folded.append(numpy_helper.from_array(data.reshape(shape), name=node.output[0]))
    del graph.node[:]
    graph.node.extend(kept)
    graph.initializer.extend(folded)
    return len(folded)


def _constant_tensors(graph: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    """Initializers and the values of Constant nodes, by output name."""
    values = {init.name: init for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    values[node.output[0]] = attr.t
    return values


def make_batch_dynamic(model: onnx.ModelProto) -> None:
    """Turns a graph fixed at batch 1 into one that takes any batch (symbolic first dimension `N`).

    The first input's and every output's first dimension become `N`; a Reshape of an
    activation whose constant target shape starts with the fixed batch 1 gets 0 there
    (copy the input's batch); stale shape annotations are dropped so onnxruntime
    infers them again. Raises ValueError for a graph whose batch cannot be freed this way.
    """
    graph = model.graph
    initialized = {init.name for init in graph.initializer}
    inputs = [i for i in graph.input if i.name not in initialized]
    if len(inputs) != 1:
        raise ValueError(f"a recognizer must have one image input, this graph has {len(inputs)}")
    for value in [inputs[0], *graph.output]:
        dims = value.type.tensor_type.shape.dim
        if not dims:
            raise ValueError(f"tensor {value.name!r} declares no shape")
        dims[0].Clear()
        dims[0].dim_param = "N"
    constants = _constant_tensors(graph)
    for node in graph.node:
        if node.op_type != "Reshape" or node.input[0] in constants:
            continue
        target = constants.get(node.input[1])
        if target is None:
            continue  # a computed shape follows the input's batch by itself
        shape = numpy_helper.to_array(target).copy()
        allow_zero = int(_attributes(node).get("allowzero", 0))
        if shape.size and shape[0] == 1:
            if allow_zero:
                raise ValueError(f"Reshape {node.name!r} fixes the batch with allowzero=1; it cannot be made dynamic")
            shape[0] = 0
            target.CopyFrom(numpy_helper.from_array(shape, name=target.name))
    del graph.value_info[:]


def prepare_model(data: bytes, *, dynamic_batch: bool = False) -> tuple[bytes, PreparationReport]:
    """Folds constant dequantization and drops unused inputs; returns the new model's bytes.

    With `dynamic_batch` (recognizers), constant weight reshapes are folded too and the
    batch dimension is freed (see `make_batch_dynamic`), so all faces run in one call.
    """
    model = onnx.load_model_from_string(data)
    folded = fold_constant_dequantize(model)
    folded_reshape = 0
    if dynamic_batch:
        folded_reshape = fold_constant_reshape(model)
    dropped_inputs, dropped_initializers = drop_unused(model)
    if dynamic_batch:
        make_batch_dynamic(model)
    report = PreparationReport(folded, dropped_inputs, dropped_initializers, folded_reshape, dynamic_batch)
    return model.SerializeToString(), report


def create_session(
    model: bytes | str,
    *,
    intra_op_threads: int,
    inter_op_threads: int = 1,
    providers: list[str] | None = None,
    optimization: onnxruntime.GraphOptimizationLevel = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL,
    spinning: bool = True,
) -> onnxruntime.InferenceSession:
    """A session over prepared model bytes; one run at a time uses `intra_op_threads` cores.

    `providers` (default CPU only) is checked after the session is made: onnxruntime
    quietly falls back to the CPU when a GPU provider fails to load, and that would
    be a silent change of the deployment (see `kinship.embedder.adapters.providers`).
    Sessions are safe to run from several threads at once, so one session per model
    serves every worker.
    """
    from kinship.embedder.adapters.providers import check_session_providers

    wanted = providers or ["CPUExecutionProvider"]
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = inter_op_threads
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = optimization
    options.log_severity_level = 3  # errors only: warnings about the graph are ours to fix, not the operator's
    if not spinning:
        # Idle pool threads sleep instead of spinning: in a service they would steal the cores other work needs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = onnxruntime.InferenceSession(model, sess_options=options, providers=wanted)
    check_session_providers(session, wanted)
    return session
