#!/bin/sh
# Training across links and batch sizes: digits-cnn on the committed digits data, 2 parties
# in one process, serial against inter-batch, inner-layer and all three schemes, 2 epochs
# each (the second epoch is the steady state: the first also faults in the process's
# memory), at batch 32 and 128 on three links: 10 Gbit/s at 0.02 and 0.05 ms one way (where
# serial's compute and communication are closest) and 2 Gbit/s at 0.05 ms (communication
# bound). One CSV row per epoch; `mpc-pipe report` reads them.
# Run: sh bench-configs/train-links.sh [OUT.csv] (default results/train-links.csv).
set -e
out=${1:-results/train-links.csv}
bin=${MPC_PIPE:-target/release/mpc-pipe}
for batch in 32 128; do
    for link in "10000 0.02" "10000 0.05" "2000 0.05"; do
        set -- $link
        for scheme in serial inter-batch inner-layer all; do
            "$bin" train --model digits-cnn --epochs 2 --batch "$batch" --scheme "$scheme" \
                --batches-in-flight 4 --chunks 2 --bandwidth-mbps "$1" --latency-ms "$2" \
                --out "$out" > /dev/null
        done
    done
done
