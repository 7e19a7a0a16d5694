#!/usr/bin/env bash
# Issue 18's large-model check, by hand (never by `cargo test`: VGG16 is 530 MB and needs
# ~13 GiB of offline material per run): export torchvision's ResNet-18 and VGG16 with
# random weights, run each through `mpc-pipe infer` with private weights, and fail unless
# every output element is within 1e-2 of onnxruntime's.
#   scripts/check-onnx-torchvision.sh [DIR [VENV_DIR [infer options...]]]
# DIR (default /tmp/mpc-pipe-torchvision) receives the models, inputs, onnxruntime's
# outputs and ours; the venv is scripts/make-onnx-fixtures.sh's, plus torchvision.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR="${1:-/tmp/mpc-pipe-torchvision}"
VENV="${2:-.venv-onnx}"
shift $(( $# < 2 ? $# : 2 ))
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet numpy onnx onnxruntime torch scikit-learn
fi
"$VENV/bin/python" -c "import torchvision" 2>/dev/null || "$VENV/bin/pip" install --quiet torchvision
[ -f "$DIR/vgg16.ort.npy" ] || "$VENV/bin/python" scripts/make_onnx_fixtures.py --torchvision "$DIR"
cargo build --release --quiet
for m in resnet18 vgg16; do
    echo "== $m $*"
    /usr/bin/time -f "$m: wall %e s, max RSS %M KiB" target/release/mpc-pipe infer \
        --model "$DIR/$m.onnx" --input "$DIR/$m.input.npy" --output "$DIR/$m.out.npy" \
        --reference "$DIR/$m.ort.npy" "$@" | tee "$DIR/$m.log"
    d=$(sed -n 's/^max_abs_diff_reference: //p' "$DIR/$m.log")
    awk -v d="$d" -v m="$m" 'BEGIN { if (d + 0 > 1e-2) { print m ": " d " > 1e-2"; exit 1 } }'
done
