#!/usr/bin/env bash
# Every test, from a fresh checkout: installs lavapipe, Chromium and the real test models, then runs the workspace
# tests (the native runtime's tests run on whatever Vulkan adapter there is; lavapipe on a CPU-only machine) and the
# JS runtime's (WebGPU in Chromium runs on SwiftShader without a GPU).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
bash scripts/setup-system.sh
bash fixtures/scripts/install_models.sh
cargo test --release --workspace
# The JS runtime: its tokenizers in Node, then tfc.js in headless Chromium on bundles compiled by this build's tfc.
cargo build --release -p tfc-cli
npm ci --prefix runtime/js --no-audit --no-fund --loglevel=error
node --test runtime/js/test/*.test.mjs
