#!/bin/sh
# Training sweep: digits-cnn on the committed digits data, 2 parties in one process, every
# training scheme, on a link where communication and compute are about equal for this model
# (4 Gbit/s, 0.05 ms one way: serial's epoch spends ~0.6 s computing and ~0.7 s moving
# 362 MB per party in 7,085 rounds), plus the f64 reference. One CSV row per epoch (bench's
# columns plus epoch, loss, accuracy); `mpc-pipe report` reads them.
# Run: sh bench-configs/train-digits.sh [OUT.csv] (default results/train-digits.csv);
# EPOCHS=N for another number of epochs (default 5), e.g. EPOCHS=1 for a quick check.
set -e
out=${1:-results/train-digits.csv}
epochs=${EPOCHS:-5}
bin=${MPC_PIPE:-target/release/mpc-pipe}
link="--bandwidth-mbps 4000 --latency-ms 0.05"
for scheme in serial inter-linear inner-layer inter-batch inter-linear+inner-layer all; do
    "$bin" train --model digits-cnn --epochs "$epochs" --scheme "$scheme" --batches-in-flight 4 --chunks 2 $link --out "$out"
done
"$bin" train --model digits-cnn --epochs "$epochs" --plaintext --out "$out"
