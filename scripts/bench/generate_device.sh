#!/usr/bin/env bash
# Runs on the GPU machine (the `device` tool): text generation with a Llama-3.2-1B-shaped model (random weights in
# bf16, made here with transformers: real weights can't travel to that machine; speed doesn't depend on values)
# on tfc's native runtime next to PyTorch/transformers fp16 on the same GPU, and the GPU's copy bandwidth, in one
# run. Writes $OUT/generate.json. Needs target/release/tfc and the Vulkan loader debs in .gl/.
set -euo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export XDG_RUNTIME_DIR=/tmp PYTHONUNBUFFERED=1
MODEL=/tmp/llama-1b-shape
PROMPT=128
NEW=128
python3 - "$MODEL" <<'PY'
import sys, torch, transformers
config = transformers.LlamaConfig(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=32,
    num_key_value_heads=8, head_dim=64, vocab_size=128256, max_position_embeddings=2048, rope_theta=500000.0,
    tie_word_embeddings=True, rms_norm_eps=1e-5)
torch.manual_seed(0)
model = transformers.LlamaForCausalLM(config).to(torch.bfloat16)
model.save_pretrained(sys.argv[1])
PY
./target/release/tfc compile "$MODEL" -o /tmp/llama-bundle --max-sequence 2048 2>&1 | tail -2
ids=$(python3 -c "print(','.join(str(1000 + i * 37 % 5000) for i in range($PROMPT)))")
# Warm-up, then the measured run (greedy, no end-of-sequence: all NEW tokens).
./target/release/tfc generate /tmp/llama-bundle --tokens "$ids" --max-tokens 8 > /dev/null 2>&1
./target/release/tfc generate /tmp/llama-bundle --tokens "$ids" --max-tokens $NEW 2> /tmp/tfc.txt > /dev/null
cat /tmp/tfc.txt
python3 - "$MODEL" $PROMPT $NEW <<'PY' > /tmp/torch.json
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
cat /tmp/torch.json
python3 scripts/bench/copy_bandwidth.py > /tmp/copy.txt
python3 - $PROMPT $NEW <<'PY' > "$OUT/generate.json"
import json, re, sys
text = open("/tmp/tfc.txt").read()
m = re.search(r"(\d+) prompt tokens, (\d+) generated; first token after ([\d.]+) ms, then ([\d.]+) tokens/s on (.*)", text)
tfc = {"prompt_tokens": int(m[1]), "generated": int(m[2]), "first_token_ms": float(m[3]), "decode_tokens_per_s": float(m[4]), "adapter": m[5].strip()}
manifest = json.load(open("/tmp/llama-bundle/manifest.json"))
print(json.dumps({"model": "Llama-3.2-1B shape (16 layers, hidden 2048, 32/8 heads, vocab 128256), bf16 weights",
                  "weight_bytes": sum(c["size"] for c in manifest["chunks"]),
                  "prompt": int(sys.argv[1]), "new_tokens": int(sys.argv[2]), "tfc": tfc,
                  "pytorch": json.load(open("/tmp/torch.json")), "copy": {"copy_bytes_per_s": float(open("/tmp/copy.txt").read())}}, indent=1))
PY
cat "$OUT/generate.json"
