#!/usr/bin/env bash
# The CrypTen side of the peers comparison (issue 20 item 5): the workloads W1..W7 of
# bench-configs/peers.toml under CrypTen 0.4.1, 2 parties, for a side-by-side table with
# mpc-pipe's bench CSV. Run by hand, never by `cargo test`:
#
#   scripts/compare-crypten.sh [VENV_DIR] [--only W1,W2,...] [--reps N]
#                              [--out FILE.csv] [--mpc-pipe-csv FILE.csv]
#
#   VENV_DIR        the Python venv to make or reuse (default .venv-crypten, relative to
#                   the repository root). Made once from scripts/crypten-requirements.txt
#                   (every package pinned, `pip install --no-deps`: CrypTen's metadata
#                   requires the dead `sklearn` package); about 3 GB, mostly the CUDA
#                   libraries PyPI's torch 2.8.0 needs to import (see that file).
#   --only W1,W2    workloads to run (default all seven; W7, VGG16, takes minutes).
#   --reps N        timed repetitions after one untimed warm-up (default 3).
#   --out FILE      CSV to write (default results/peers-crypten.csv), one row per
#                   workload, rewritten after each one so a long run keeps what it has
#                   measured; rows of workloads not run this time are kept.
#   --mpc-pipe-csv FILE
#                   also print a markdown table of these rows beside an mpc-pipe bench
#                   CSV (e.g. made by `mpc-pipe bench --config bench-configs/peers.toml
#                   --out results/peers-mpc-pipe.csv`) with the ratio CrypTen / mpc-pipe.
#                   Alone (no workload run) with --table-only.
#
# Relative paths (VENV_DIR, --out, --mpc-pipe-csv) are taken from the repository root.
#
# Each workload runs in a fresh Python process, which launches the 2 parties with
# crypten.mpc.run_multiprocess (one thread each, CrypTen's default trusted-first-party
# provider). Timed per repetition, as a user waits for it: encrypting the model (party 0's
# private weights) and the input (party 1's), the computation with the provider's triple
# generation inside it, and revealing the output. The CSV's columns are documented at the
# top of scripts/crypten_workloads.py. Set PYTHON to choose the interpreter that makes the
# venv (default python3; the pins are for Python 3.11).
set -euo pipefail
cd "$(dirname "$0")/.."
ARGS=("$@")
VENV=.venv-crypten
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
    VENV="$1"
    shift
fi
REQ=scripts/crypten-requirements.txt
# The marker is written only after a complete install, so an interrupted one is redone.
if [ ! -f "$VENV/.crypten-ready" ]; then
    echo "compare-crypten: making the venv $VENV from $REQ" >&2
    "${PYTHON:-python3}" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --no-deps -r "$REQ"
    "$VENV/bin/python" -c 'import crypten, torch, torchvision' ||
        { echo "compare-crypten: the venv $VENV cannot import crypten/torch/torchvision" >&2; exit 1; }
    cp "$REQ" "$VENV/.crypten-ready"
elif ! cmp -s "$REQ" "$VENV/.crypten-ready"; then
    echo "compare-crypten: $VENV was made from another $REQ; remove it to remake it" >&2
    exit 1
fi
# One thread per party: the workers also call torch.set_num_threads(1); these keep
# OpenMP/MKL pools (numpy, torch's intra-op pool before that call) from starting wider.
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
exec "$VENV/bin/python" scripts/crypten_workloads.py \
    --command "scripts/compare-crypten.sh ${ARGS[*]}" "$@"
