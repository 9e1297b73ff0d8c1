#!/usr/bin/env bash
# Runs on the GPU machine (the `device` tool): the quantized matrix-vector kernels (Q4_0, Q4_K, Q6_K, Q8_0, and f16
# through the float matmul for comparison) at 4096×4096, 14336×4096 and 4096×14336, one row of x, next to a copy
# kernel in the same run; GPU times from timestamp queries. Writes $OUT/quant_matvec.json.
# Needs: target/release/examples/quant_matvec (`cargo build --release -p tfc-runtime --example quant_matvec`) and
# the Vulkan loader debs in .gl/ (see scripts/bench/README.md).
set -euo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export XDG_RUNTIME_DIR=/tmp
./target/release/examples/quant_matvec > "$OUT/quant_matvec.json"
cat "$OUT/quant_matvec.json"
