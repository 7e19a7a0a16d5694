"""Export the ONNX test fixtures of mpc-pipe (tests/fixtures/onnx/) with torch, and record
onnxruntime's outputs as the independent reference the Rust tests compare against.

For each fixture NAME it writes NAME.onnx, NAME.input.npy (float32), NAME.ort.npy
(onnxruntime's float32 output) and NAME.f64.npy (the same torch module in float64 on the
same input and weights: a reference free of float32 rounding, for the f64 interpreter).
digits_cnn is trained here on scikit-learn's bundled digits; its held-out labels are saved
as digits_cnn.labels.npy. Run by scripts/make-onnx-fixtures.sh (which makes the venv);
never by `cargo test`. With `--torchvision DIR` it writes torchvision's ResNet-18 and VGG16
(random weights) to DIR instead (scripts/check-onnx-torchvision.sh).
"""
import os
import sys

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import TensorProto, helper, numpy_helper

OUT = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/onnx"  # or --torchvision DIR
OPSET = 17
torch.manual_seed(18)
nn = torch.nn


def save(name, path_onnx, x, f64=None, max_bytes=200_000):
    sess = ort.InferenceSession(path_onnx, providers=["CPUExecutionProvider"])
    (y,) = sess.run(None, {sess.get_inputs()[0].name: x})
    np.save(os.path.join(OUT, name + ".input.npy"), x)
    np.save(os.path.join(OUT, name + ".ort.npy"), y.astype(np.float32))
    if f64 is not None:
        np.save(os.path.join(OUT, name + ".f64.npy"), f64)
    size = os.path.getsize(path_onnx)
    assert size < max_bytes, f"{name}: {size} bytes"
    print(f"{name}: {size} bytes, output {y.shape}, max |y| {np.abs(y).max():.3f}")


def export(name, module, shape, scale=1.0, opset=OPSET):
    module.eval()
    x = (torch.randn(*shape) * scale).float()
    path = os.path.join(OUT, name + ".onnx")
    torch.onnx.export(module, (x,), path, dynamo=False, opset_version=opset,
                      input_names=["x"], output_names=["y"], do_constant_folding=True)
    with torch.no_grad():
        f64 = module.double()(x.double()).numpy()
    save(name, path, x.numpy(), f64)


class Attention(nn.Module):
    """One self-attention head block: Reshape with -1, Transpose, batched MatMul."""

    def __init__(self, d=16, heads=2):
        super().__init__()
        self.h, self.d = heads, d
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x):
        b, s, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=-1)
        q = q.reshape(b, s, self.h, -1).transpose(1, 2)
        k = k.reshape(b, s, self.h, -1).transpose(1, 2)
        v = v.reshape(b, s, self.h, -1).transpose(1, 2)
        a = torch.softmax(q @ k.transpose(-2, -1) / (d // self.h) ** 0.5, dim=-1)
        o = (a @ v).transpose(1, 2).reshape(b, s, -1)
        return self.proj(o)


class BasicBlock(nn.Module):
    """ResNet basic block with an identity skip Add."""

    def __init__(self, c=4):
        super().__init__()
        self.c1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.b1 = nn.BatchNorm2d(c)
        self.c2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.b2 = nn.BatchNorm2d(c)

    def forward(self, x):
        y = torch.relu(self.b1(self.c1(x)))
        return torch.relu(self.b2(self.c2(y)) + x)


class Elementwise(nn.Module):
    """Mul of two activations, Sub, Div by a tensor, broadcast Add, Sigmoid, Concat, Split,
    Slice, Squeeze/Unsqueeze."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 6)
        self.register_buffer("d", torch.tensor([1.5, 2.0, -4.0, 0.5, 3.0, 1.0]))
        self.register_buffer("c", torch.linspace(-1, 1, 6))

    def forward(self, x):
        y = self.lin(x)
        a, b = y.split(3, dim=-1)
        m = a * b - x[:, :3]
        s = torch.sigmoid(y / self.d + self.c)
        z = torch.cat([m, s[:, 1:4]], dim=-1).unsqueeze(1)
        return z.squeeze(1) * 0.5


class Pools(nn.Module):
    """AveragePool both ways of counting pads, MaxPool with pad, GlobalAveragePool."""

    def forward(self, x):
        a = nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=False)
        b = nn.functional.avg_pool2d(x, 3, 2, 1, count_include_pad=True)
        c = nn.functional.max_pool2d(a, 3, 2, 1)
        g = nn.functional.adaptive_avg_pool2d(x, 1)
        gg = torch.cat([g, g], dim=1)  # [1, 4, 1, 1]: broadcast in a product of activations
        return torch.cat([b + c, b - c], dim=1) * gg + gg


def lenet_avg():
    return nn.Sequential(
        nn.Conv2d(1, 4, 5, padding=2), nn.ReLU(), nn.AvgPool2d(2),
        nn.Conv2d(4, 8, 5), nn.ReLU(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(8 * 5 * 5, 32), nn.ReLU(), nn.Linear(32, 10))


def bn_cnn():
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Flatten(), nn.Linear(8 * 4 * 4, 10))


def mlp():
    return nn.Sequential(
        nn.Linear(12, 32), nn.LayerNorm(32), nn.GELU(), nn.Linear(32, 8), nn.Softmax(dim=-1))


def randomize_bn(m):
    # Trained-looking statistics, so the folding is exercised with non-trivial values.
    for b in m.modules():
        if isinstance(b, nn.BatchNorm2d):
            b.running_mean.uniform_(-0.5, 0.5)
            b.running_var.uniform_(0.5, 2.0)
            b.weight.data.uniform_(0.5, 1.5)
            b.bias.data.uniform_(-0.3, 0.3)
    return m


def handmade():
    """Ops torch does not emit alone: Gemm with alpha, beta, transA/transB, Identity,
    Dropout, Constant, Flatten, an unfolded BatchNormalization, Reshape with 0 and -1."""
    r = np.random.default_rng(18)
    # x [1, 2, 2, 2] -> Flatten [1, 8] -> Gemm(transB) by w [10, 8] -> [1, 10] -> Reshape
    # [1, 2, 5] -> BatchNorm over 2 channels -> Reshape [1, 10] -> Gemm(w2 [3, 10], ·ᵀ) -> [3, 1]
    w = r.normal(0, 0.3, (10, 8)).astype(np.float32)
    c = r.normal(0, 0.3, (10,)).astype(np.float32)
    w2 = r.normal(0, 0.3, (3, 10)).astype(np.float32)
    bn = [r.uniform(0.5, 1.5, 2).astype(np.float32), r.uniform(-.3, .3, 2).astype(np.float32),
          r.uniform(-.5, .5, 2).astype(np.float32), r.uniform(.5, 2, 2).astype(np.float32)]
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(c, "c"),
             numpy_helper.from_array(w2, "w2"),
             numpy_helper.from_array(np.array([0, -1], np.int64), "shape0m1"),
             numpy_helper.from_array(np.array([0, 2, 5], np.int64), "shape3")]
    inits += [numpy_helper.from_array(v.astype(np.float32), n) for v, n in zip(bn, ["s", "b", "m", "v"])]
    nodes = [
        helper.make_node("Identity", ["x"], ["xi"], name="identity"),
        helper.make_node("Dropout", ["xi"], ["xd"], name="dropout"),
        helper.make_node("Flatten", ["xd"], ["xf"], name="flatten", axis=1),
        helper.make_node("Gemm", ["xf", "w", "c"], ["g1"], name="gemm_ab", alpha=0.5, beta=2.0, transB=1),
        helper.make_node("Relu", ["g1"], ["r1"], name="relu"),
        helper.make_node("Reshape", ["r1", "shape3"], ["r3"], name="reshape0"),
        helper.make_node("BatchNormalization", ["r3", "s", "b", "m", "v"], ["bnout"], name="bn_unfolded", epsilon=1e-5),
        helper.make_node("Reshape", ["bnout", "shape0m1"], ["r2"], name="reshape_m1"),
        helper.make_node("Constant", [], ["k"], name="const", value=numpy_helper.from_array(np.float32(0.25).reshape(()))),
        helper.make_node("Mul", ["r2", "k"], ["y0"], name="mul_k"),
        helper.make_node("Gemm", ["w2", "y0"], ["y"], name="gemm_ta", alpha=1.5, transA=0, transB=1),
    ]
    g = helper.make_graph(nodes, "handmade", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 2, 2])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [3, 1])], inits)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    path = os.path.join(OUT, "handmade.onnx")
    onnx.save(m, path)
    x = r.normal(0, 1, (1, 2, 2, 2)).astype(np.float32)
    # The same function in numpy float64, written out independently of any exporter.
    d = lambda a: a.astype(np.float64)
    h = np.maximum(0.5 * (d(x).reshape(1, 8) @ d(w).T) + 2.0 * d(c), 0).reshape(1, 2, 5)
    s_, b_, m_, v_ = (d(t).reshape(1, 2, 1) for t in bn)
    h = ((h - m_) / np.sqrt(v_ + 1e-5) * s_ + b_).reshape(1, 10) * 0.25
    save("handmade", path, x, 1.5 * d(w2) @ h.T)


def digits_cnn():
    """A small CNN trained on real data: scikit-learn's bundled 8x8 handwritten digits
    (no download). Trains on 1437 images, saves the 360 held-out ones as one batch."""
    from sklearn.datasets import load_digits
    d = load_digits()
    x = torch.tensor(d.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(d.target)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(18))
    tr, te = perm[:1437], perm[1437:]
    m = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(), nn.AvgPool2d(2),
                      nn.Flatten(), nn.Linear(16 * 2 * 2, 10))
    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    with torch.enable_grad():
        for epoch in range(40):
            m.train()
            for i in range(0, len(tr), 64):
                b = tr[i:i + 64]
                opt.zero_grad()
                loss = nn.functional.cross_entropy(m(x[b]), y[b])
                loss.backward()
                opt.step()
    m.eval()
    acc = (m(x[te]).argmax(1) == y[te]).float().mean().item()
    print(f"digits_cnn: held-out accuracy {acc:.4f}")
    xt = x[te].contiguous()
    path = os.path.join(OUT, "digits_cnn.onnx")
    torch.onnx.export(m, (xt,), path, dynamo=False, opset_version=OPSET,
                      input_names=["x"], output_names=["y"], do_constant_folding=True)
    np.save(os.path.join(OUT, "digits_cnn.labels.npy"), y[te].numpy().astype(np.float64))
    save("digits_cnn", path, xt.numpy(), m.double()(xt.double()).detach().numpy())


class ConcatConst(nn.Module):
    """Concat with constant inputs: a learned token prepended on the sequence axis (as
    ViT's class token) and a constant block appended on the feature axis, batch 2 (so
    inter-batch hands each micro-batch its rows of the constants)."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(6, 6)
        self.tok = nn.Parameter(torch.randn(1, 1, 6))
        self.register_buffer("side", torch.linspace(-1, 1, 2 * 5 * 2).reshape(2, 5, 2))
        self.out = nn.Linear(8, 3)

    def forward(self, x):
        h = torch.relu(self.lin(x))
        t = torch.cat([self.tok.expand(2, 1, 6), h], dim=1)
        return self.out(torch.cat([t, self.side], dim=2))


def bad_models():
    """Models the importer must refuse: an unsupported op (Cos), and a dynamic input."""
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="first_relu"),
             helper.make_node("Cos", ["r"], ["y"], name="the_cosine")]
    g = helper.make_graph(nodes, "bad", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)])
    m.ir_version = 8
    onnx.save(m, os.path.join(OUT, "unsupported_cos.onnx"))
    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"], name="relu")], "dyn",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", OPSET)])
    m.ir_version = 8
    path = os.path.join(OUT, "dynamic_relu.onnx")
    onnx.save(m, path)


def torchvision_models(out):
    """torchvision's ResNet-18 and VGG16 with their random initial weights (no download),
    one 224x224 image each: too large to commit (45 MB and 530 MB), so written to `out`
    for scripts/check-onnx-torchvision.sh."""
    import torchvision
    global OUT
    OUT = out
    os.makedirs(out, exist_ok=True)
    torch.manual_seed(18)
    for name, ctor in [("resnet18", torchvision.models.resnet18),
                       ("vgg16", torchvision.models.vgg16)]:
        m = ctor(weights=None).eval()
        x = torch.randn(1, 3, 224, 224)
        path = os.path.join(out, name + ".onnx")
        with torch.no_grad():
            torch.onnx.export(m, (x,), path, dynamo=False, opset_version=OPSET,
                              input_names=["x"], output_names=["y"], do_constant_folding=True)
        save(name, path, x.numpy(), max_bytes=1 << 30)


def main():
    os.makedirs(OUT, exist_ok=True)
    with torch.no_grad():
        export("conv_relu", nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()), (2, 3, 8, 8))
        export("bn_cnn", randomize_bn(bn_cnn()), (2, 3, 16, 16))
        export("resnet_block", randomize_bn(BasicBlock()), (2, 4, 8, 8))
        export("mlp_ln_gelu_softmax", mlp(), (2, 12))
        export("gelu_tanh", nn.Sequential(nn.Linear(8, 8), nn.GELU(approximate="tanh")), (2, 8), scale=2.0)
        export("attention", Attention(), (2, 4, 16))
        export("lenet_avg", lenet_avg(), (2, 1, 28, 28))
        export("elementwise", Elementwise(), (2, 6))
        export("pools", Pools(), (1, 2, 7, 7))
    handmade()
    digits_cnn()
    with torch.no_grad():
        # Opset 13 has no LayerNormalization: torch spells it out (ReduceMean, Pow, Sqrt, ...).
        export("mlp_opset13", mlp(), (2, 12), opset=13)
    bad_models()
    with torch.no_grad():
        # Last, so the fixtures above draw the same random numbers as before it was added.
        export("concat_const", ConcatConst(), (2, 4, 6))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--torchvision":
        torchvision_models(sys.argv[2])
    else:
        main()
