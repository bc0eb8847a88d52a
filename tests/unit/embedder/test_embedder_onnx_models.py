"""Load-time folding of constant DequantizeLinear nodes, on tiny hand-built graphs run by onnxruntime."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from kinship.embedder.adapters.onnx_models import create_session, dequantize, prepare_model


def test_dequantize_per_tensor_ignores_block_size():
    q = np.array([-2, 0, 3], np.int8)
    out = dequantize(q, np.array([0.5], np.float32), np.array([1], np.int8), axis=0, block_size=64)
    assert out.dtype == np.float32 and out.tolist() == [-1.5, -0.5, 1.0]


def test_dequantize_blocked_repeats_each_scale_over_its_block_with_a_short_last_block():
    q = np.array([1, 2, 3, 4, 5], np.int8)
    out = dequantize(q, np.array([1.0, 2.0, 3.0], np.float32), np.array([0, 0, 1], np.int8), axis=0, block_size=2)
    assert out.tolist() == [1.0, 2.0, 6.0, 8.0, 12.0]


def test_dequantize_blocked_along_axis_one():
    q = np.array([[1, 1, 1, 1], [2, 2, 2, 2]], np.int8)
    scale = np.array([[1.0, 10.0], [0.5, 0.25]], np.float32)
    out = dequantize(q, scale, np.zeros((2, 2), np.int8), axis=1, block_size=2)
    assert out.tolist() == [[1.0, 1.0, 10.0, 10.0], [1.0, 1.0, 0.5, 0.5]]


def test_dequantize_per_axis_broadcasts_along_the_axis():
    q = np.array([[1, 2, 3], [4, 5, 6]], np.int8)
    out = dequantize(q, np.array([1.0, 0.5, 2.0], np.float32), None, axis=1)
    assert out.tolist() == [[1.0, 1.0, 6.0], [4.0, 2.5, 12.0]]
    out = dequantize(q, np.array([1.0, -1.0], np.float32), np.array([1, 0], np.int8), axis=0)
    assert out.tolist() == [[0.0, 1.0, 2.0], [-4.0, -5.0, -6.0]]


def tiny_quantized_model() -> onnx.ModelProto:
    """x [2, 4] -> y = x + bias, z = x @ w, with bias and w int8 behind DequantizeLinear.

    The bias uses a one-element scale with a block_size (what onnxruntime refuses in
    YuNet); w is block-quantized along axis 0. The graph also declares an input that
    nothing reads (as SFace does) and one that only exposes an initializer.
    """
    inits = [
        numpy_helper.from_array(np.array([1, -2, 3, 4], np.int8), "bias_q"),
        numpy_helper.from_array(np.array([0.5], np.float32), "bias_scale"),
        numpy_helper.from_array(np.array([0], np.int8), "bias_zp"),
        numpy_helper.from_array(np.arange(12, dtype=np.int8).reshape(4, 3), "w_q"),
        numpy_helper.from_array(np.array([[1.0, 1.0, 1.0], [0.5, 0.5, 2.0]], np.float32), "w_scale"),
        numpy_helper.from_array(np.zeros((2, 3), np.int8), "w_zp"),
        numpy_helper.from_array(np.array(2.0, np.float32), "two"),
    ]
    nodes = [
        helper.make_node("DequantizeLinear", ["bias_q", "bias_scale", "bias_zp"], ["bias"], axis=0, block_size=4),
        helper.make_node("DequantizeLinear", ["w_q", "w_scale", "w_zp"], ["w"], axis=0, block_size=2),
        helper.make_node("Add", ["x", "bias"], ["y"]),
        helper.make_node("MatMul", ["x", "w"], ["xw"]),
        helper.make_node("Mul", ["xw", "two"], ["z"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        inputs=[
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4]),
            helper.make_tensor_value_info("unused", TensorProto.FLOAT, [3]),
            helper.make_tensor_value_info("two", TensorProto.FLOAT, []),
        ],
        outputs=[
            helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4]),
            helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 3]),
        ],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    return model


def test_prepared_model_has_no_dequantize_nor_unused_inputs_and_runs_with_the_same_values():
    prepared, report = prepare_model(tiny_quantized_model().SerializeToString())
    graph = onnx.load_model_from_string(prepared).graph
    assert report.folded_dequantize == 2
    assert [n.op_type for n in graph.node] == ["Add", "MatMul", "Mul"]
    assert [i.name for i in graph.input] == ["x"]
    assert not {"bias_q", "w_q", "w_scale"} & {i.name for i in graph.initializer}

    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    y, z = create_session(prepared, intra_op_threads=1).run(["y", "z"], {"x": x})
    bias = np.array([0.5, -1.0, 1.5, 2.0], np.float32)
    w = np.array([[0, 1, 2], [3, 4, 5], [3.0, 3.5, 16.0], [4.5, 5.0, 22.0]], np.float32)
    assert y == pytest.approx(x + bias)
    assert z == pytest.approx(2 * (x @ w))


def test_nodes_fed_by_a_graph_input_are_not_folded():
    model = tiny_quantized_model()
    model.graph.node[0].input[0] = "x_q"  # bias now comes from the caller
    model.graph.input.append(helper.make_tensor_value_info("x_q", TensorProto.INT8, [4]))
    prepared, report = prepare_model(model.SerializeToString())
    graph = onnx.load_model_from_string(prepared).graph
    assert report.folded_dequantize == 1
    assert [n.op_type for n in graph.node].count("DequantizeLinear") == 1
    assert {"x", "x_q"} == {i.name for i in graph.input}
