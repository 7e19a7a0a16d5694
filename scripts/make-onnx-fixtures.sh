#!/usr/bin/env bash
# Regenerate the ONNX test fixtures (tests/fixtures/onnx/) from torch exports, with
# onnxruntime's outputs as the expected values. Run by hand, never by `cargo test`:
#   scripts/make-onnx-fixtures.sh [VENV_DIR]
# Makes (or reuses) a venv with torch, onnx, onnxruntime and scikit-learn (its bundled
# digits data set trains one fixture) from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${1:-.venv-onnx}"
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet numpy onnx onnxruntime torch scikit-learn
fi
"$VENV/bin/python" scripts/make_onnx_fixtures.py tests/fixtures/onnx
"$VENV/bin/python" scripts/make_train_onnx_fixture.py tests/fixtures/onnx
