#!/usr/bin/env bash
# Runs on the GPU machine (the `device` tool): the matrix-vector kernels for Q4_0, Q4_K, Q6_K, Q8_0 and f16 weights
# (the example measures every block format and f16, bf16 and f32 when given no dtypes) at 4096×4096, 14336×4096 and
# 4096×14336, one row of x, next to a copy kernel in the same run; GPU times from timestamp queries. Writes
# $OUT/quant_matvec.json.
# Needs: target/release/examples/quant_matvec (`cargo build --release -p tfc-runtime --example quant_matvec`) and
# the Vulkan loader debs in .gl/ (see scripts/bench/README.md).
set -euo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export XDG_RUNTIME_DIR=/tmp
./target/release/examples/quant_matvec q4_0 q4_k q6_k q8_0 f16 > "$OUT/quant_matvec.json"
cat "$OUT/quant_matvec.json"
