#!/usr/bin/env bash
# Runs on the GPU machine (the `device` tool): decoding speed of tfc (native runtime, Vulkan) and llama.cpp (CUDA)
# on the same GGUF files of a Llama-3.2-1B-shaped model (random weights) in F16, Q8_0 and Q4_K_M, in one run.
# Needs: .bench/llama.cpp.tgz (llama.cpp's source from the llama-cpp-python sdist, trimmed to the CPU and CUDA
# back ends: see scripts/bench/README.md), target/release/tfc, .gl/ (Vulkan loader). Writes $OUT/llamacpp.json.
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
PYTHONPATH=gguf-py python3 "$ROOT/scripts/bench/llama_gguf.py" models/ggml-vocab-llama-bpe.gguf /tmp/llama-f16.gguf
./build/bin/llama-quantize /tmp/llama-f16.gguf /tmp/llama-q8_0.gguf Q8_0 > /dev/null 2>&1
./build/bin/llama-quantize /tmp/llama-f16.gguf /tmp/llama-q4_k_m.gguf Q4_K_M > /dev/null 2>&1
cd "$ROOT"
ids=$(python3 -c "print(','.join(str(1000 + i * 37 % 5000) for i in range(128)))")
for format in f16 q8_0 q4_k_m; do
    /tmp/lcpp/llama.cpp/build/bin/llama-bench -m /tmp/llama-$format.gguf -p 128 -n 128 -ngl 99 -o json > /tmp/llamacpp-$format.json 2> /dev/null
    ./target/release/tfc compile /tmp/llama-$format.gguf -o /tmp/tfc-$format --max-context 2048 > /dev/null 2>&1
    ./target/release/tfc generate /tmp/tfc-$format --tokens "$ids" --max-tokens 8 > /dev/null 2>&1
    ./target/release/tfc generate /tmp/tfc-$format --tokens "$ids" --max-tokens 128 2> /tmp/tfc-$format.txt > /dev/null
    cat /tmp/tfc-$format.txt
done
python3 scripts/bench/copy_bandwidth.py > /tmp/copy.txt
python3 - > "$OUT/llamacpp.json" <<'PY'
import json, os, re
results = {"model": "Llama-3.2-1B shape (16 layers, hidden 2048, 32/8 heads, vocab 128256, tied), random weights",
           "prompt": 128, "new_tokens": 128, "copy_bytes_per_s": float(open("/tmp/copy.txt").read()), "formats": {}}
for fmt in ("f16", "q8_0", "q4_k_m"):
    bench = json.load(open(f"/tmp/llamacpp-{fmt}.json"))
    pp = next(b["avg_ts"] for b in bench if b["n_prompt"] > 0)
    tg = next(b["avg_ts"] for b in bench if b["n_gen"] > 0)
    m = re.search(r"first token after ([\d.]+) ms, then ([\d.]+) tokens/s", open(f"/tmp/tfc-{fmt}.txt").read())
    manifest = json.load(open(f"/tmp/tfc-{fmt}/manifest.json"))
    results["formats"][fmt] = {
        "file_bytes": os.path.getsize(f"/tmp/llama-{fmt}.gguf"),
        "bundle_weight_bytes": sum(c["size"] for c in manifest["chunks"]),
        "llama_cpp": {"prompt_tokens_per_s": pp, "decode_tokens_per_s": tg, "first_token_ms_estimate": 128 / pp * 1e3},
        "tfc": {"first_token_ms": float(m[1]), "decode_tokens_per_s": float(m[2])},
    }
print(json.dumps(results, indent=1))
PY
cat "$OUT/llamacpp.json"
