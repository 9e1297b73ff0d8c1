#!/usr/bin/env bash
# Runs on the GPU machine (the `device` tool): text generation on tfc's native runtime next to PyTorch/transformers
# fp16 on the same GPU, and the GPU's copy bandwidth, in one run, for two shapes: Llama-3.2-1B (bf16 weights as
# saved) and SmolLM2-135M (compiled with --quant q4_1, like the GGUF people run). Random weights made here with
# transformers: real weights can't travel to that machine, and speed doesn't depend on values.
# Writes $OUT/generate.json. Needs target/release/tfc and the Vulkan loader debs in .gl/.
set -euo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export XDG_RUNTIME_DIR=/tmp PYTHONUNBUFFERED=1
PROMPT=128
NEW=128
# shape:tfc weight format (as saved, or a --quant)
RUNS="llama-3.2-1b:bf16 smollm2-135m:q4_1"
ids=$(python3 -c "print(','.join(str(1000 + i * 37 % 5000) for i in range($PROMPT)))")
for run in $RUNS; do
    shape=${run%:*} format=${run#*:}
    python3 - "$shape" /tmp/$shape <<'PY'
import sys, torch, transformers
shapes = {  # hidden, feed-forward, layers, heads, key/value heads, vocabulary, rope base (the models' configs)
    "llama-3.2-1b": (2048, 8192, 16, 32, 8, 128256, 500000.0),
    "smollm2-135m": (576, 1536, 30, 9, 3, 49152, 100000.0),
}
hidden, ffn, layers, heads, kv_heads, vocab, rope = shapes[sys.argv[1]]
config = transformers.LlamaConfig(hidden_size=hidden, intermediate_size=ffn, num_hidden_layers=layers, num_attention_heads=heads,
    num_key_value_heads=kv_heads, head_dim=64, vocab_size=vocab, max_position_embeddings=2048, rope_theta=rope,
    tie_word_embeddings=True, rms_norm_eps=1e-5)
torch.manual_seed(0)
transformers.LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(sys.argv[2])
PY
    quant=$([ "$format" = bf16 ] || echo "--quant $format")
    ./target/release/tfc compile /tmp/$shape -o /tmp/tfc-$shape --max-sequence 2048 $quant 2>&1 | tail -1
    # Warm-up, then the measured run (greedy, no end-of-sequence: all NEW tokens).
    ./target/release/tfc generate /tmp/tfc-$shape --tokens "$ids" --max-tokens 8 > /dev/null 2>&1
    ./target/release/tfc generate /tmp/tfc-$shape --tokens "$ids" --max-tokens $NEW 2> /tmp/tfc-$shape.txt > /dev/null
    cat /tmp/tfc-$shape.txt
    python3 - /tmp/$shape $PROMPT $NEW <<'PY' > /tmp/torch-$shape.json
import json, sys, time, torch, transformers
model = transformers.AutoModelForCausalLM.from_pretrained(sys.argv[1], torch_dtype=torch.float16).cuda().eval()
prompt, new = int(sys.argv[2]), int(sys.argv[3])
ids = torch.tensor([[1000 + i * 37 % 5000 for i in range(prompt)]]).cuda()
mask = torch.ones_like(ids)
def run(n):
    torch.cuda.synchronize(); t = time.perf_counter()
    with torch.no_grad():
        model.generate(ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0)
    torch.cuda.synchronize(); return time.perf_counter() - t
run(8)
first = min(run(1) for _ in range(3))
total = run(new)
print(json.dumps({"torch": torch.__version__, "transformers": transformers.__version__, "dtype": "float16",
                  "first_token_ms": first * 1e3, "decode_tokens_per_s": (new - 1) / (total - first)}))
PY
    cat /tmp/torch-$shape.json
done
python3 scripts/bench/copy_bandwidth.py > /tmp/copy.txt
python3 - $PROMPT $NEW $RUNS <<'PY' > "$OUT/generate.json"
import json, re, sys
MODELS = {"llama-3.2-1b": "Llama-3.2-1B shape (16 layers, hidden 2048, 32/8 heads, vocab 128256)",
          "smollm2-135m": "SmolLM2-135M shape (30 layers, hidden 576, 9/3 heads, vocab 49152)"}
results = {"prompt": int(sys.argv[1]), "new_tokens": int(sys.argv[2]),
           "copy": {"copy_bytes_per_s": float(open("/tmp/copy.txt").read())}, "runs": []}
for run in sys.argv[3:]:
    shape, fmt = run.split(":")
    text = open(f"/tmp/tfc-{shape}.txt").read()
    m = re.search(r"(\d+) prompt tokens, (\d+) generated; first token after ([\d.]+) ms, then ([\d.]+) tokens/s on (.*)", text)
    manifest = json.load(open(f"/tmp/tfc-{shape}/manifest.json"))
    results["runs"].append({
        "model": MODELS[shape], "format": fmt, "weight_bytes": sum(c["size"] for c in manifest["chunks"]),
        "tfc": {"prompt_tokens": int(m[1]), "generated": int(m[2]), "first_token_ms": float(m[3]),
                "decode_tokens_per_s": float(m[4]), "adapter": m[5].strip()},
        "pytorch": json.load(open(f"/tmp/torch-{shape}.json")),
    })
print(json.dumps(results, indent=1))
PY
cat "$OUT/generate.json"
