#!/usr/bin/env bash
# Every test, from a fresh checkout: installs lavapipe and the real test models, then runs the workspace tests
# (the native runtime's tests run on whatever Vulkan adapter there is; lavapipe on a CPU-only machine).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
bash scripts/setup-system.sh
bash fixtures/scripts/install_models.sh
cargo test --release --workspace
