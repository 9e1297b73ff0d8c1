#!/usr/bin/env bash
# Runs on the GPU machine (the `device` tool): MiniLM latency at batch 1, sequence 128, on tfc's native runtime
# (wgpu on Vulkan) and on PyTorch (CUDA, fp32 eager) on the same GPU, in the same run. Writes $OUT/minilm.json.
# Needs: the tfc release binary at target/release/tfc, MiniLM's config.json at $MINILM_CONFIG, Vulkan loader debs
# in .gl/ (see scripts/bench/README.md). The weights are random with the real model's config: the real ones are
# too large to carry to that machine, and latency does not depend on the values.
set -euo pipefail
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export XDG_RUNTIME_DIR=/tmp PYTHONUNBUFFERED=1
MODEL=/tmp/minilm-shape
python3 - "$MINILM_CONFIG" "$MODEL" <<'PY'
import json, sys, torch, transformers
config = transformers.AutoConfig.for_model(**{k: v for k, v in json.load(open(sys.argv[1])).items() if k not in ("architectures", "transformers_version")})
torch.manual_seed(0)
model = transformers.AutoModel.from_config(config, attn_implementation="eager").eval()
model.save_pretrained(sys.argv[2])
PY
./target/release/tfc compile "$MODEL" -o /tmp/minilm-bundle
for seq in 16 128 512; do
    ./target/release/tfc bench /tmp/minilm-bundle --batch 1 --sequence $seq --iterations 100 --warmup 10 > /tmp/tfc-$seq.json
done
python3 - "$MODEL" <<'PY' > /tmp/torch.json
import json, sys, time, statistics, torch, transformers
model = transformers.AutoModel.from_pretrained(sys.argv[1], attn_implementation="eager").cuda().eval()
results = {}
for seq in (16, 128, 512):
    ids = torch.tensor([[1000 + (i * 7) % 1000 for i in range(seq)]])
    def once():
        t = time.perf_counter()
        with torch.no_grad():
            model(input_ids=ids.cuda()).last_hidden_state.cpu()
        return (time.perf_counter() - t) * 1e3
    for _ in range(10):
        once()
    times = sorted(once() for _ in range(100))
    results[seq] = {"median_ms": statistics.median(times), "min_ms": times[0], "p90_ms": times[89]}
print(json.dumps({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "transformers": transformers.__version__,
                  "dtype": "float32", "tf32": torch.backends.cuda.matmul.allow_tf32, "by_sequence": results}))
PY
python3 - <<'PY' > "$OUT/minilm.json"
import json
tfc = {seq: json.load(open(f"/tmp/tfc-{seq}.json")) for seq in (16, 128, 512)}
print(json.dumps({"tfc": tfc, "pytorch": json.load(open("/tmp/torch.json"))}, indent=1))
PY
cat "$OUT/minilm.json"
