#!/usr/bin/env bash
# Runs on the GPU machine (the `device` tool): decoding speed of tfc (native runtime, Vulkan) and llama.cpp (CUDA)
# on the same GGUF files, in one run: a Llama-3.2-1B-shaped model in F16, Q8_0 and Q4_K_M, and a SmolLM2-135M-shaped
# one in Q4_1 (random weights: real ones can't travel to that machine, and speed doesn't depend on the values).
# Needs: .bench/llama.cpp.tgz (llama.cpp's source from the llama-cpp-python sdist, trimmed to the CPU and CUDA
# back ends: see scripts/bench/README.md), .bench/ggml-vocab-starcoder.gguf (from the same sdist; SmolLM2's
# vocabulary size), target/release/tfc, .gl/ (Vulkan loader). Writes $OUT/llamacpp.json.
set -euo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export XDG_RUNTIME_DIR=/tmp PYTHONUNBUFFERED=1
ROOT=$PWD
mkdir -p /tmp/lcpp && tar xzf .bench/llama.cpp.tgz -C /tmp/lcpp
cd /tmp/lcpp/llama.cpp
cmake -B build -G Ninja -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_OPENSSL=OFF > /tmp/cmake.log 2>&1 || { tail -30 /tmp/cmake.log; exit 1; }
cmake --build build -j16 --target llama-bench llama-quantize > /tmp/build.log 2>&1 || { tail -30 /tmp/build.log; exit 1; }
PYTHONPATH=gguf-py python3 "$ROOT/scripts/bench/llama_gguf.py" llama-3.2-1b models/ggml-vocab-llama-bpe.gguf /tmp/llama-3.2-1b-f16.gguf
PYTHONPATH=gguf-py python3 "$ROOT/scripts/bench/llama_gguf.py" smollm2-135m "$ROOT/.bench/ggml-vocab-starcoder.gguf" /tmp/smollm2-135m-f16.gguf
RUNS="llama-3.2-1b:f16 llama-3.2-1b:q8_0 llama-3.2-1b:q4_k_m smollm2-135m:q4_1"
for run in $RUNS; do
    shape=${run%:*} format=${run#*:}
    [ "$format" = f16 ] || ./build/bin/llama-quantize /tmp/$shape-f16.gguf /tmp/$shape-$format.gguf "${format^^}" > /dev/null 2>&1
done
cd "$ROOT"
ids=$(python3 -c "print(','.join(str(1000 + i * 37 % 5000) for i in range(128)))")
for run in $RUNS; do
    name=${run/:/-}
    /tmp/lcpp/llama.cpp/build/bin/llama-bench -m /tmp/$name.gguf -p 128 -n 128 -ngl 99 -o json > /tmp/llamacpp-$name.json 2> /dev/null
    ./target/release/tfc compile /tmp/$name.gguf -o /tmp/tfc-$name --max-context 2048 > /dev/null 2>&1
    ./target/release/tfc generate /tmp/tfc-$name --tokens "$ids" --max-tokens 8 > /dev/null 2>&1
    ./target/release/tfc generate /tmp/tfc-$name --tokens "$ids" --max-tokens 128 2> /tmp/tfc-$name.txt > /dev/null
    echo "$name: $(cat /tmp/tfc-$name.txt)"
done
python3 scripts/bench/copy_bandwidth.py > /tmp/copy.txt
python3 - $RUNS > "$OUT/llamacpp.json" <<'PY'
import json, os, re, sys
MODELS = {"llama-3.2-1b": "Llama-3.2-1B shape (16 layers, hidden 2048, 32/8 heads, vocab 128256, tied)",
          "smollm2-135m": "SmolLM2-135M shape (30 layers, hidden 576, 9/3 heads, vocab 49152, tied)"}
results = {"prompt": 128, "new_tokens": 128, "copy_bytes_per_s": float(open("/tmp/copy.txt").read()), "runs": []}
for run in sys.argv[1:]:
    shape, fmt = run.split(":")
    name = f"{shape}-{fmt}"
    bench = json.load(open(f"/tmp/llamacpp-{name}.json"))
    pp = next(b["avg_ts"] for b in bench if b["n_prompt"] > 0)
    tg = next(b["avg_ts"] for b in bench if b["n_gen"] > 0)
    m = re.search(r"first token after ([\d.]+) ms, then ([\d.]+) tokens/s", open(f"/tmp/tfc-{name}.txt").read())
    manifest = json.load(open(f"/tmp/tfc-{name}/manifest.json"))
    results["runs"].append({
        "model": MODELS[shape], "format": fmt,
        "file_bytes": os.path.getsize(f"/tmp/{name}.gguf"),
        "bundle_weight_bytes": sum(c["size"] for c in manifest["chunks"]),
        "llama_cpp": {"prompt_tokens_per_s": pp, "decode_tokens_per_s": tg, "first_token_ms_estimate": 128 / pp * 1e3},
        "tfc": {"first_token_ms": float(m[1]), "decode_tokens_per_s": float(m[2])},
    })
print(json.dumps(results, indent=1))
PY
cat "$OUT/llamacpp.json"
