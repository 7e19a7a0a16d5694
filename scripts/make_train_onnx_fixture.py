"""The ONNX fixture `mpc-pipe train` trains and writes back (tests/fixtures/onnx/trainable_cnn.*):
a small CNN on 1x8x8 digits whose every weight is an initializer taken verbatim by the
importer (no batch norm to fold, no Gemm alpha or beta), so `train --save-weights` can write
the trained values back into a copy of the file. Built with onnx.helper (no torch), with
onnxruntime's output as the independent reference, like scripts/make_onnx_fixtures.py.

    python scripts/make_train_onnx_fixture.py [OUT_DIR]        # writes the fixture
    python scripts/make_train_onnx_fixture.py --check M.onnx X.npy [Y.npy]
        # runs M.onnx in onnxruntime on X.npy and prints the output (and its largest
        # difference from Y.npy): checks that a model written by `train --save-weights`
        # loads and runs there.

Needs numpy, onnx and onnxruntime (scripts/make-onnx-fixtures.sh makes a venv with them).
"""
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OPSET = 17


def run(path, x):
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {sess.get_inputs()[0].name: x})
    return y


def trainable_cnn(out):
    r = np.random.default_rng(19)
    he = lambda shape, fan_in: (r.normal(0, np.sqrt(2.0 / fan_in), shape)).astype(np.float32)
    w1, b1 = he((4, 1, 3, 3), 9), np.zeros(4, np.float32)
    w2, b2 = he((6, 4, 3, 3), 36), np.full(6, 0.01, np.float32)
    w3, b3 = he((10, 96), 96), np.zeros(10, np.float32)
    inits = [numpy_helper.from_array(v, n) for v, n in
             [(w1, "conv1.weight"), (b1, "conv1.bias"), (w2, "conv2.weight"), (b2, "conv2.bias"),
              (w3, "fc.weight"), (b3, "fc.bias")]]
    nodes = [
        helper.make_node("Conv", ["x", "conv1.weight", "conv1.bias"], ["c1"], name="conv1",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("MaxPool", ["r1"], ["p1"], name="pool1", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "conv2.weight", "conv2.bias"], ["c2"], name="conv2",
                         kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Flatten", ["r2"], ["f"], name="flatten", axis=1),
        helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["y"], name="fc", transB=1),
    ]
    g = helper.make_graph(nodes, "trainable_cnn",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)],
                          producer_name="mpc-pipe fixture")
    m.ir_version = 8
    m.doc_string = "kept byte for byte by train --save-weights"
    onnx.checker.check_model(m)
    path = os.path.join(out, "trainable_cnn.onnx")
    onnx.save(m, path)
    x = r.uniform(0, 1, (1, 1, 8, 8)).astype(np.float32)
    y = run(path, x)
    np.save(os.path.join(out, "trainable_cnn.input.npy"), x)
    np.save(os.path.join(out, "trainable_cnn.ort.npy"), y.astype(np.float32))
    print(f"trainable_cnn: {os.path.getsize(path)} bytes, output {y.shape}, max |y| {np.abs(y).max():.3f}")


def check(model, x_path, ref_path=None):
    x = np.load(x_path).astype(np.float32)
    y = run(model, x)
    print(f"{model}: output {y.shape} {np.array2string(y.ravel(), precision=5)}")
    if ref_path:
        ref = np.load(ref_path)
        print(f"max |onnxruntime - reference| = {np.abs(y.astype(np.float64) - ref).max():.3e}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--check":
        check(*sys.argv[2:])
    else:
        trainable_cnn(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/onnx")
