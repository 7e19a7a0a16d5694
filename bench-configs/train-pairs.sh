#!/bin/sh
# Issue 19's throughput targets, paired: digits-cnn at batch 128 on the balanced link
# (10 Gbit/s, 0.02 ms one way, where serial's compute and communication wait are about
# equal), inter-batch, all, serial and inner-layer alternating in each round so that they
# share the host's load alike; 2 epochs per run, epoch 2 read. Prints each scheme's median
# samples/s and the paired ratios all / inter-batch, inter-batch / serial.
# Run: sh bench-configs/train-pairs.sh [OUT.csv] [ROUNDS] (default /tmp/train-pairs.csv, 10).
set -e
out=${1:-/tmp/train-pairs.csv}
rounds=${2:-10}
bin=${MPC_PIPE:-target/release/mpc-pipe}
rm -f "$out"
for r in $(seq "$rounds"); do
    for scheme in inter-batch all serial inner-layer; do
        "$bin" train --model digits-cnn --epochs 2 --batch 128 --scheme "$scheme" \
            --batches-in-flight 4 --chunks 2 --bandwidth-mbps 10000 --latency-ms 0.02 \
            --out "$out" > /dev/null
    done
done
python3 - "$out" <<'PY'
import collections, csv, statistics as st, sys
rows = [r for r in csv.DictReader(open(sys.argv[1])) if r["epoch"] == "2"]
by = collections.defaultdict(list)
for r in rows:
    by[r["scheme"]].append(float(r["throughput_per_s"]))
for k, v in by.items():
    print(f"{k}: median {st.median(v):.0f} samples/s over {len(v)} runs")
ib, al, se = by["inter-batch"], by["inter-linear+inner-layer+inter-batch"], by["serial"]
print(f"paired all / inter-batch: median {st.median(a / b for a, b in zip(al, ib)):.3f}")
print(f"paired inter-batch / serial: median {st.median(a / b for a, b in zip(ib, se)):.3f}")
PY
