"""The peers comparison's workloads (issue 20 item 5, bench-configs/peers.toml) under CrypTen.

Run by scripts/compare-crypten.sh, which makes the venv; never by `cargo test`:

    python scripts/crypten_workloads.py [--only W1,W2] [--reps N] [--out FILE.csv]
                                        [--mpc-pipe-csv FILE.csv] [--table-only]

The workloads, 2 parties, private weights (party 0 encrypts the model) and secret input
(party 1 encrypts it), CrypTen's default fixed point (16 fractional bits) and provider
(trusted first party, TFP, which makes each Beaver triple inside the computation):
  W1 matmul [256x1024]·[1024x1024], both secret      (CrypTen tensor ops)
  W2 ReLU on 2^20 values                             (CrypTen tensor ops)
  W3 conv2d [1,64,56,56]*[64,64,3,3], padding 1, no bias, input and weights secret
                                                     (CrypTen tensor ops)
  W4 LeNet, batch 32: conv 1->6 5x5, relu, maxpool 2, conv 6->16 5x5, relu, maxpool 2,
     flatten, fc 256->120, relu, fc 120->84, relu, fc 84->10   (crypten.nn.from_pytorch)
  W5 torchvision ResNet-18, 10 classes, 32x32 input, batch 1      (from_pytorch)
  W6 one BERT-base encoder layer, sequence 128, batch 1 (hidden 768, 12 heads, FFN 3072,
     GELU, post-LayerNorm), written with CrypTen tensor ops: from_pytorch cannot import it
     (torch.nn.TransformerEncoderLayer fails in the ONNX export CrypTen drives, and CrypTen
     has no LayerNormalization or GELU module). CrypTen has no GELU: it is PUMA's
     piecewise polynomial, mpc-pipe's default (protocols.md §4.1), so both systems compute
     the same function. (What from_pytorch makes of torch's GELU, 0.5·x·(1 + erf(x/√2))
     with CrypTen's 8-term Taylor erf, was tried: it saves the comparisons, about a fifth
     of the layer's time, but the series diverges on this layer's larger pre-activations
     and overflows the fixed point: the output was garbage, max error 4e9.) LayerNorm is the exact formula with
     CrypTen's inv_sqrt; softmax is CrypTen's own (max, exp, reciprocal).
  W7 torchvision VGG16, 224x224, batch 1                          (from_pytorch)
In the from_pytorch workloads, constant initial parameters (torchvision's zero biases,
BatchNorm's ones and zeros) are replaced by small random values, as a trained model's
would be, because torch's exporter merges equal initializers into ONNX Identity nodes,
which CrypTen cannot import.

Each workload runs in a fresh Python process (`--worker`), which builds the plaintext
model and data, computes the float64 plaintext reference, and forks the 2 parties with
crypten.mpc.run_multiprocess (gloo over loopback). Each party runs torch with one thread,
an untimed warm-up, then --reps timed repetitions of the whole job: encrypt the model and
the input, compute, reveal the output to both parties (get_plain_text). Starting the
processes, crypten.init and converting the model (from_pytorch) are not timed, as
mpc-pipe's e2e_s leaves out building the model.

The CSV (--out) holds one row per workload: it is rewritten after each workload, keeping
the rows of an earlier run for the workloads this run does not measure. Its columns (times
in seconds, for the whole job, the slowest party's):
  model          W1..W7
  system         crypten
  workload       what the workload is
  batch          samples in the job (W1: the 256 rows of the left operand; W4: 32; else 1);
                 mpc-pipe's bench rows are per inference, so their job is e2e_s × batch
  parties, weights, provider, threads_per_party
                 2, private, TFP, 1
  reps           timed repetitions (after one warm-up)
  e2e_s          median over the repetitions of the whole job: a barrier, then encrypting
                 the model and the input, the computation (with TFP's triple generation),
                 and revealing the output
  e2e_s_min, e2e_s_max
                 the fastest and slowest repetition
  online_s       median of the part after encryption (a barrier once both parties have
                 encrypted, to the revealed output). Not an online phase in mpc-pipe's
                 sense: TFP makes its triples inside it
  max_abs_err    max |revealed output - float64 plaintext reference| of the last repetition
                 (a check that the job computed the workload; W6's includes the GELU,
                 softmax and inv_sqrt approximations)
  commit         the versions measured, crypten-<v>+torch-<v>
  host           hostname
  command        the command line that made the row
"""
import argparse
import copy
import csv
import json
import math
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

ALL = ["W1", "W2", "W3", "W4", "W5", "W6", "W7"]
DESCRIBE = {
    "W1": "matmul [256x1024]x[1024x1024], both secret",
    "W2": "ReLU on 2^20 values",
    "W3": "conv2d [1,64,56,56]*[64,64,3,3] pad 1, no bias",
    "W4": "LeNet, batch 32",
    "W5": "ResNet-18 (torchvision, 10 classes), 32x32, batch 1",
    "W6": "BERT-base encoder layer, seq 128, batch 1, PUMA GELU",
    "W7": "VGG16 (torchvision), 224x224, batch 1",
}
BATCH = {"W1": 256, "W4": 32}
COLUMNS = [
    "model", "system", "workload", "batch", "parties", "weights", "provider",
    "threads_per_party", "reps", "e2e_s", "e2e_s_min", "e2e_s_max", "online_s",
    "max_abs_err", "commit", "host", "command",
]
# A worker still running after this long is stopped and its workload reported failed.
WORKER_TIMEOUT_S = 4 * 3600


# --------------------------------------------------------------------------- workloads
# Each builder returns a Job: plaintext data (built once, before the parties fork, so both
# hold the same shapes), `encrypt()` and `compute(state)` run inside the parties, and the
# float64 reference. The party that does not own a tensor passes the same plaintext to
# crypten.cryptensor only for its shape: CrypTen ignores a non-source party's values.


class Job:
    def __init__(self, encrypt, compute, reference):
        self.encrypt, self.compute, self.reference = encrypt, compute, reference


def _gen(seed):
    import torch

    return torch.Generator().manual_seed(seed)


def _uniform(g, shape, lo, hi):
    import torch

    return torch.rand(*shape, generator=g) * (hi - lo) + lo


def _he(g, shape, fan_in):
    import torch

    return torch.randn(*shape, generator=g) * math.sqrt(2.0 / fan_in)


def w1():
    import crypten

    g = _gen(1)
    a = _uniform(g, (256, 1024), -1.0, 1.0)
    b = _he(g, (1024, 1024), 1024)

    def encrypt():
        return crypten.cryptensor(a, src=1), crypten.cryptensor(b, src=0)

    return Job(encrypt, lambda s: s[0].matmul(s[1]), a.double() @ b.double())


def w2():
    import crypten

    g = _gen(2)
    x = _uniform(g, (1 << 20,), -4.0, 4.0)
    return Job(
        lambda: crypten.cryptensor(x, src=1), lambda s: s.relu(), x.double().clamp(min=0)
    )


def w3():
    import crypten
    import torch.nn.functional as F

    g = _gen(3)
    x = _uniform(g, (1, 64, 56, 56), -1.0, 1.0)
    w = _he(g, (64, 64, 3, 3), 64 * 9)

    def encrypt():
        return crypten.cryptensor(x, src=1), crypten.cryptensor(w, src=0)

    ref = F.conv2d(x.double(), w.double(), padding=1)
    return Job(encrypt, lambda s: s[0].conv2d(s[1], padding=1), ref)


def _distinct_constants(model, g):
    """Replace every constant parameter or buffer (zero biases, BatchNorm's initial ones
    and zeros) by small random values, as a trained model has: torch's ONNX exporter
    merges equal initializers into Identity nodes, which CrypTen cannot import."""
    import torch

    with torch.no_grad():
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if not t.is_floating_point() or t.numel() < 2:
                continue
            if bool((t == t.flatten()[0]).all()):
                if name.endswith(("running_var", "weight")):
                    t.copy_(_uniform(g, t.shape, 0.9, 1.1))
                else:
                    t.copy_(_uniform(g, t.shape, -0.05, 0.05))


def _from_pytorch(model, x, seed):
    """A from_pytorch workload: the torch model in eval mode, converted once (untimed);
    each repetition encrypts a fresh copy of the plaintext CrypTen model."""
    import crypten
    import torch

    g = _gen(seed)
    model.eval()
    _distinct_constants(model, g)
    plain = crypten.nn.from_pytorch(model, x)
    plain.eval()
    with torch.no_grad():
        ref = copy.deepcopy(model).double()(x.double())

    def encrypt():
        m = copy.deepcopy(plain)
        m.encrypt(src=0)
        return m, crypten.cryptensor(x, src=1)

    return Job(encrypt, lambda s: s[0](s[1]), ref)


def w4():
    import torch
    from torch import nn

    torch.manual_seed(4)
    lenet = nn.Sequential(
        nn.Conv2d(1, 6, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(256, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, 10),
    )
    return _from_pytorch(lenet, _uniform(_gen(40), (32, 1, 28, 28), 0.0, 1.0), 4)


def w5():
    import torch
    import torchvision

    torch.manual_seed(5)
    model = torchvision.models.resnet18(num_classes=10)
    return _from_pytorch(model, _uniform(_gen(50), (1, 3, 32, 32), -1.0, 1.0), 5)


def w7():
    import torch
    import torchvision

    torch.manual_seed(7)
    model = torchvision.models.vgg16()
    return _from_pytorch(model, _uniform(_gen(70), (1, 3, 224, 224), -1.0, 1.0), 7)


# PUMA's GeLU (protocols.md §4.1; mpc-pipe's proto::nn::gelu_puma): 0 below -4, a cubic on
# [-4, -1.95), an even-plus-linear degree-6 polynomial on [-1.95, 3], x above 3.
PUMA_P3 = [-0.5054031199708174, -0.42226581151983866, -0.11807612951181953,
           -0.011034134030615728]
PUMA_P6 = [0.008526321541038084, 0.5, 0.3603292692789629, 0.0, -0.037688200365904236,
           0.0, 0.0018067462606141187]


def gelu_puma(x):
    """PUMA's piecewise GeLU with CrypTen tensor ops: the three comparisons as one on the
    stacked shifted copies, the powers by squaring, the selection as one product."""
    import crypten

    n = x.size()
    below = crypten.stack([x + 4.0, x + 1.95, 3.0 - x]) < 0  # [x<-4, x<-1.95, x>3]
    b0, b1, b2 = below[0], below[1], below[2]
    x2 = x.square()
    x3 = x2 * x
    x4 = x2.square()
    x6 = x3.square()
    p3 = x * PUMA_P3[1] + x2 * PUMA_P3[2] + x3 * PUMA_P3[3] + PUMA_P3[0]
    p6 = x * PUMA_P6[1] + x2 * PUMA_P6[2] + x4 * PUMA_P6[4] + x6 * PUMA_P6[6] + PUMA_P6[0]
    select = crypten.stack([b1 - b0, 1 - b1 - b2, b2])
    pieces = crypten.stack([p3, p6, x])
    out = (select * pieces).sum(0)
    assert out.size() == n
    return out


def _layer_norm_mpc(x, gamma, beta):
    mu = x.mean(-1, keepdim=True)
    c = x - mu
    # BERT's eps (1e-12) is below the fixed-point resolution: it adds nothing here either.
    inv = c.square().mean(-1, keepdim=True).inv_sqrt()
    return c * inv * gamma + beta


def _bert_mpc(x, p, heads):
    b, s, h = x.size()
    d = h // heads

    def head(i, perm):
        return x_qkv[:, :, i * h:(i + 1) * h].reshape(b, s, heads, d).permute(*perm)

    x_qkv = x.matmul(p["wqkv"]) + p["bqkv"]
    q, k, v = head(0, (0, 2, 1, 3)), head(1, (0, 2, 3, 1)), head(2, (0, 2, 1, 3))
    probs = (q.matmul(k) * (1.0 / math.sqrt(d))).softmax(-1)
    o = probs.matmul(v).permute(0, 2, 1, 3).reshape(b, s, h)
    y = _layer_norm_mpc(x + o.matmul(p["wo"]) + p["bo"], p["ln1_g"], p["ln1_b"])
    f = gelu_puma(y.matmul(p["w1"]) + p["b1"]).matmul(p["w2"]) + p["b2"]
    return _layer_norm_mpc(y + f, p["ln2_g"], p["ln2_b"])


def _bert_plain(x, p, heads):
    """The same layer in float64 torch with the exact GeLU (erf) and LayerNorm."""
    import torch
    import torch.nn.functional as F

    b, s, h = x.shape
    d = h // heads
    qkv = x @ p["wqkv"] + p["bqkv"]
    q, k, v = (qkv[:, :, i * h:(i + 1) * h].reshape(b, s, heads, d).transpose(1, 2)
               for i in range(3))
    probs = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d), dim=-1)
    o = (probs @ v).transpose(1, 2).reshape(b, s, h)
    y = F.layer_norm(x + o @ p["wo"] + p["bo"], (h,), p["ln1_g"], p["ln1_b"], eps=1e-12)
    f = F.gelu(y @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
    return F.layer_norm(y + f, (h,), p["ln2_g"], p["ln2_b"], eps=1e-12)


def w6():
    import crypten

    g = _gen(6)
    h, ffn, heads, seq = 768, 3072, 12, 128
    params = {}
    # As mpc-pipe's zoo::bert: variance 1/fan_in keeps each projection at unit scale.
    for name, fin, fout in [("qkv", h, 3 * h), ("o", h, h), ("1", h, ffn), ("2", ffn, h)]:
        a = math.sqrt(3.0 / fin)
        params["w" + name] = _uniform(g, (fin, fout), -a, a)
        params["b" + name] = _uniform(g, (fout,), -0.05, 0.05)
    for ln in ("ln1", "ln2"):
        params[ln + "_g"] = _uniform(g, (h,), 0.9, 1.1)
        params[ln + "_b"] = _uniform(g, (h,), -0.1, 0.1)
    x = _uniform(g, (1, seq, h), -1.0, 1.0) * math.sqrt(3.0)
    ref = _bert_plain(x.double(), {k: v.double() for k, v in params.items()}, heads)

    def encrypt():
        enc = {k: crypten.cryptensor(v, src=0) for k, v in params.items()}
        return crypten.cryptensor(x, src=1), enc

    return Job(encrypt, lambda s: _bert_mpc(s[0], s[1], heads), ref)


BUILDERS = {"W1": w1, "W2": w2, "W3": w3, "W4": w4, "W5": w5, "W6": w6, "W7": w7}


# ------------------------------------------------------------------------------ parties


def _party(job, reps):
    """One party's repetitions: (e2e, online) seconds per timed repetition, and party 0's
    max error against the reference (only small values cross run_multiprocess's queue,
    which is drained after the join)."""
    import crypten
    import torch

    torch.set_num_threads(1)
    provider = crypten.mpc.get_default_provider().NAME
    assert provider == "TFP", f"CrypTen's provider is {provider}, not its default TFP"
    comm = crypten.comm.get()
    times = []
    for rep in range(reps + 1):
        comm.barrier()
        t0 = time.perf_counter()
        state = job.encrypt()
        comm.barrier()
        t1 = time.perf_counter()
        y = job.compute(state).get_plain_text()
        t2 = time.perf_counter()
        if rep > 0:  # repetition 0 is the warm-up
            times.append((t2 - t0, t2 - t1))
        del state
    err = None
    if comm.get_rank() == 0:
        err = float((y.double() - job.reference).abs().max())
    return {"times": times, "max_abs_err": err}


def worker(name, reps, result_path):
    import crypten
    import torch

    # CrypTen's converter wraps read-only ONNX arrays and torch warns once per process;
    # the tensors are only read.
    warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
    # The parties are forked (run_multiprocess relies on it: the job is not pickled).
    multiprocessing.set_start_method("fork", force=True)
    torch.set_num_threads(1)
    job = BUILDERS[name]()
    out = crypten.mpc.run_multiprocess(world_size=2)(_party)(job, reps)
    if out is None or len(out) != 2:
        raise SystemExit(f"{name}: a CrypTen party failed (its error is above)")
    # Each repetition's time is the slowest party's, phase by phase.
    per_rep = [(max(a[0], b[0]), max(a[1], b[1]))
               for a, b in zip(out[0]["times"], out[1]["times"])]
    e2e = [t[0] for t in per_rep]
    online = [t[1] for t in per_rep]
    result = {
        "e2e_s": statistics.median(e2e),
        "e2e_s_min": min(e2e),
        "e2e_s_max": max(e2e),
        "online_s": statistics.median(online),
        "max_abs_err": out[0]["max_abs_err"],
        "commit": f"crypten-{crypten.__version__}+torch-{torch.__version__}",
    }
    with open(result_path, "w") as f:
        json.dump(result, f)


# ------------------------------------------------------------------------- orchestration


def _fmt(v):
    if v is None:
        return ""
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def write_csv(path, rows):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", newline="") as f:
        # "\n", not the csv module's "\r\n": the report names rows by line, and the csv crate
        # counts CRLF files one line short.
        w = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: _fmt(r.get(k, "")) for k in COLUMNS})
    os.replace(tmp, path)


def _kept_rows(out, names):
    """Rows of an earlier run in `out` for workloads this run does not measure."""
    if not os.path.exists(out):
        return []
    with open(out, newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames != COLUMNS:
            raise SystemExit(f"{out}: not a CSV of this script (other columns); "
                             f"choose another --out or remove it")
        return [r for r in reader if r["model"] in ALL and r["model"] not in names]


def run_all(names, reps, out, command):
    kept, rows, failed = _kept_rows(out, names), [], []
    for name in names:
        print(f"crypten {name}: {DESCRIBE[name]}, warm-up + {reps} reps ...",
              file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            result_path = os.path.join(tmp, "result.json")
            cmd = [sys.executable, os.path.abspath(__file__), "--worker", name, "--reps",
                   str(reps), "--result", result_path]
            # Its own process group, so a timeout also ends the parties it forked.
            proc = subprocess.Popen(cmd, start_new_session=True)
            try:
                code = proc.wait(timeout=WORKER_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                code = f"timeout after {WORKER_TIMEOUT_S} s"
            except KeyboardInterrupt:
                os.killpg(proc.pid, signal.SIGKILL)
                raise
            if code != 0 or not os.path.exists(result_path):
                print(f"crypten {name}: FAILED (worker exit {code}); no row written",
                      file=sys.stderr)
                failed.append(name)
                continue
            with open(result_path) as f:
                res = json.load(f)
        row = {
            "model": name, "system": "crypten", "workload": DESCRIBE[name],
            "batch": BATCH.get(name, 1), "parties": 2, "weights": "private",
            "provider": "TFP", "threads_per_party": 1, "reps": reps,
            "host": socket.gethostname(), "command": command, **res,
        }
        rows.append(row)
        write_csv(out, sorted(kept + rows, key=lambda r: ALL.index(r["model"])))
        print(f"crypten {name}: e2e_s {res['e2e_s']:.3f} (min {res['e2e_s_min']:.3f}, "
              f"max {res['e2e_s_max']:.3f})  online_s {res['online_s']:.3f}  "
              f"max_abs_err {res['max_abs_err']:.3g}", file=sys.stderr, flush=True)
    return failed


def _float(row, key, path):
    v = (row.get(key) or "").strip()
    if not v:
        return None
    try:
        return float(v)
    except ValueError:
        raise SystemExit(f"{path}: column '{key}' of model {row.get('model')} is not a "
                         f"number: {v!r}")


def _read_csv(path, required):
    try:
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            missing = [c for c in required if c not in (reader.fieldnames or [])]
            if missing:
                raise SystemExit(f"{path}: no column(s) {', '.join(missing)}")
            return list(reader)
    except OSError as e:
        raise SystemExit(f"cannot read {path}: {e.strerror}")


def side_by_side(crypten_csv, mpc_csv):
    """A markdown table: each mpc-pipe row beside CrypTen's row of the same workload, both
    as whole jobs, and the ratio CrypTen / mpc-pipe. mpc-pipe's bench rows give e2e_s per
    inference (× batch for the job) and online_s summed over the repetitions, so its
    job's online time is latency_ms_p50 (the median repetition, whole batch)."""
    ours = {r["model"]: r for r in _read_csv(crypten_csv, ["model", "e2e_s", "online_s"])}
    theirs = [r for r in _read_csv(mpc_csv, ["model", "batch", "e2e_s", "latency_ms_p50"])
              if r["model"] in ALL]
    if not theirs:
        raise SystemExit(f"{mpc_csv}: no row whose model is one of {', '.join(ALL)}")

    def cell(v):
        return "" if v is None else f"{v:.3f}"

    def ratio(a, b):
        return "" if a is None or b is None or b <= 0 else f"{a / b:.1f}×"

    print("| workload | mpc-pipe scheme | mpc-pipe e2e s | CrypTen e2e s | ratio "
          "| mpc-pipe online s | CrypTen online s | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for r in sorted(theirs, key=lambda r: ALL.index(r["model"])):
        name = r["model"]
        batch = _float(r, "batch", mpc_csv) or 1.0
        e2e, p50 = _float(r, "e2e_s", mpc_csv), _float(r, "latency_ms_p50", mpc_csv)
        e2e = None if e2e is None else e2e * batch
        onl = None if p50 is None else p50 / 1000.0
        c = ours.get(name, {})
        ce, co = _float(c, "e2e_s", crypten_csv), _float(c, "online_s", crypten_csv)
        print(f"| {name} {DESCRIBE[name]} | {r.get('scheme', '')} | {cell(e2e)} | {cell(ce)} "
              f"| {ratio(ce, e2e)} | {cell(onl)} | {cell(co)} | {ratio(co, onl)} |")
    print("\nWhole jobs, medians: mpc-pipe's e2e_s × batch and latency_ms_p50; CrypTen's "
          "e2e_s and online_s. Ratio = CrypTen / mpc-pipe. CrypTen's online part includes "
          "its TFP triple generation; mpc-pipe's online phase does not (its dealer is in "
          "e2e).")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", default=",".join(ALL), help="workloads, e.g. W1,W2")
    ap.add_argument("--reps", type=int, default=3, help="timed repetitions (default 3)")
    ap.add_argument("--out", default="results/peers-crypten.csv", help="CSV to write")
    ap.add_argument("--mpc-pipe-csv", help="mpc-pipe bench CSV to print side by side")
    ap.add_argument("--table-only", action="store_true",
                    help="run nothing: print the table from --out and --mpc-pipe-csv")
    ap.add_argument("--command", help=argparse.SUPPRESS)
    ap.add_argument("--worker", choices=ALL, help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.reps < 1:
        ap.error(f"--reps must be at least 1, not {args.reps}")
    if args.worker:
        return worker(args.worker, args.reps, args.result)
    if args.table_only:
        if not args.mpc_pipe_csv:
            ap.error("--table-only needs --mpc-pipe-csv")
        return side_by_side(args.out, args.mpc_pipe_csv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in ALL]
    if unknown or not names:
        ap.error(f"--only: unknown workload(s) {', '.join(unknown) or '(none given)'}; "
                 f"known: {', '.join(ALL)}")
    command = args.command or " ".join([sys.argv[0]] + sys.argv[1:])
    failed = run_all(names, args.reps, args.out, command)
    if args.mpc_pipe_csv and os.path.exists(args.out):
        print()
        side_by_side(args.out, args.mpc_pipe_csv)
    if failed:
        raise SystemExit(f"failed: {', '.join(failed)} (other rows are in {args.out})")


if __name__ == "__main__":
    main()
