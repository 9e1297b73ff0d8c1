#!/usr/bin/env python3
"""Writes docs/benchmarks.md from the measurements in docs/benchmarks/*.json (made by the *_device.sh scripts)."""
import json
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"


def minilm(results):
    tfc, torch = results["tfc"], results["pytorch"]
    lines = [
        "## MiniLM latency on the native runtime (H100, Vulkan) next to PyTorch (CUDA)",
        "",
        f"all-MiniLM-L6-v2's architecture (BERT, 6 layers, hidden 384; random weights: the real ones can't travel to the",
        f"GPU machine and latency doesn't depend on the values), batch 1, one call of `scripts/bench/minilm_device.sh`",
        f"on {tfc['128']['adapter']}. tfc: `tfc bench`, wall time of `Session::run` (inputs uploaded, outputs read back),",
        f"f32. PyTorch {torch['torch']} with transformers {torch['transformers']}: eager fp32 (TF32 {'on' if torch['tf32'] else 'off'}),",
        "input copied to the GPU and output back inside the timed region. Medians of 100 runs after 10 warm-ups.",
        "",
        "| sequence | tfc (ms) | PyTorch (ms) | tfc / PyTorch | tfc GPU time (ms) | tfc host time (ms) |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for seq, t in tfc.items():
        p = torch["by_sequence"][seq]
        prof = t["profile_median_ms"]
        lines.append(
            f"| {seq} | {t['median_ms']:.2f} | {p['median_ms']:.2f} | {t['median_ms'] / p['median_ms']:.2f}× | "
            f"{prof['gpu_dispatches']:.2f} | {prof['host']:.2f} |"
        )
    ops = sorted({op for t in tfc.values() for op in t["profile_median_ms"]["gpu_by_op"]})
    lines += [
        "",
        "Where tfc's GPU time goes (ms per run, summed over the dispatches of each op kind, from timestamp queries):",
        "",
        "| sequence | " + " | ".join(ops) + " |",
        "|---:|" + "---:|" * len(ops),
    ]
    for seq, t in tfc.items():
        by_op = t["profile_median_ms"]["gpu_by_op"]
        lines.append(f"| {seq} | " + " | ".join(f"{by_op.get(op, 0):.2f}" for op in ops) + " |")
    lines += [
        "",
        "Reading: the host side (recording the dispatches, uploading inputs, reading back) costs a quarter to a",
        "third of a millisecond; the rest is GPU time. Short sequences are faster than PyTorch's eager kernels because the",
        "matrix products take a skinny path (4 rows per workgroup, K split across invocations) that keeps every SM",
        "busy. Longer ones use 64×64 output tiles (128×128 once there are enough of those to fill the GPU); at 512",
        "tokens the matrix products are still a few times slower than cuBLAS, and attention walks the keys one query",
        "row group at a time: query-blocked attention and cooperative-matrix tiles where the adapter has them are the",
        "next steps.",
        "",
    ]
    return lines


def quant_matvec(results):
    copy = results["copy"]
    lines = [
        "## Quantized matrix-vector kernels (H100, Vulkan)",
        "",
        f"`x · Wᵀ` with one row of x (a decoding step) on {results['adapter']}, one call of",
        "`scripts/bench/quant_matvec_device.sh`: the kernels tfc emits for block-quantized weights (random blocks) and for",
        "f16 weights (the float matmul, which takes the same matrix-vector strategy). Bytes are the weight's bytes in the",
        f"bundle plus x and the output; times are medians of {results['iterations']} runs from GPU timestamps. The copy",
        f"bandwidth (bytes read plus written) was measured in the same run over {copy['bytes'] // 2 >> 20} MiB: a vec4 copy kernel reached",
        f"**{copy['kernel_bytes_per_s'] / 1e9:.0f} GB/s** (wgpu's `copy_buffer_to_buffer` {copy['buffer_copy_bytes_per_s'] / 1e9:.0f} GB/s); the",
        "fractions are of the faster.",
        "",
        "| W (rows × K) | format | bits/weight | µs | GB/s | fraction of copy |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for c in results["matvec"]:
        bits = 8 * (c["bytes"] - 4 * (c["rows"] + c["cols"])) / (c["rows"] * c["cols"])
        lines.append(
            f"| {c['rows']} × {c['cols']} | {c['dtype']} | {bits:.2f} | {c['median_us']:.1f} | "
            f"{c['bytes_per_s'] / 1e9:.0f} | {c['fraction_of_copy']:.2f} |"
        )
    lines += [
        "",
        "Reading: each invocation takes two rows of W and walks them in whole units (8 halves, a Q4_0 or Q8_0 block, a",
        "quarter of a K-quant block), in 16-byte loads where the rows are whole 16-byte quads; it turns all the quants of a",
        "unit into floats at once without integer conversions (each ORed into the mantissa of 2²³, which is then",
        "subtracted), multiplies them with x read as vec4s, once for both rows, and scales each run that shares a scale",
        "once. 16 rows of W per workgroup, 32 invocations per row, partial sums added in two steps. Measured the same day",
        "on the same kind of machine, the kernels this replaced took 22.5, 27.1, 27.8, 20.3 and 39.9 µs at 4096 × 4096",
        "(Q4_0, Q4_K, Q6_K, Q8_0, f16) and 52.7, 68.5, 80.4, 54.4 and 122.6 µs at 14336 × 4096: f16 is now 2.1× as fast and",
        "streams its weights at three quarters of the copy bandwidth, the K-quants are 1.6–2.0× as fast, Q4_0 1.5–1.8×,",
        "Q8_0 1.2×. The block formats still reach only 0.2–0.6 of the copy: they decode about 2 × 10¹² weights per second",
        "(Q4_0, Q4_K) or 1.3 × 10¹² (Q6_K, Q8_0), so the fewer the bits per weight the smaller the fraction, and the 4096 ×",
        "4096 products take 15–19 µs whatever the format. They are bound by the instructions and latency per weight rather",
        "than by memory: neither compiling the strategy as a kernel of its own (so that it does not get the tiled",
        "strategy's registers) nor twice the units per loop iteration made them more than 10% faster. Rounding x to 8 bits",
        "and multiplying integers, as llama.cpp does, is what would cut the instructions per weight.",
        "",
    ]
    return lines


def generate(results):
    copy = results["copy"]["copy_bytes_per_s"]
    first = results["runs"][0]
    torch = first["pytorch"]
    lines = [
        "## Text generation on the native runtime (H100, Vulkan) next to PyTorch (CUDA)",
        "",
        f"Random weights made on the GPU machine in the shapes below. A prompt of {results['prompt']} tokens, then",
        f"{results['new_tokens']} greedy tokens, one call of `scripts/bench/generate_device.sh` on {first['tfc']['adapter']}. tfc:",
        "`tfc generate` (KV cache on the GPU, the next token chosen on the GPU, only its id read back) on the bundle",
        f"compiled from the saved bf16 model, as is or with `--quant`. PyTorch {torch['torch']} with transformers",
        f"{torch['transformers']}: `generate` in {torch['dtype']}, eager. Bandwidth: the bundle's weight bytes per second of",
        f"decoding over the copy bandwidth measured in the same run ({copy / 1e12:.2f} TB/s).",
        "",
        "| model | tfc weights | tfc first token (ms) | PyTorch first token (ms) | tfc decode (tok/s) | PyTorch decode (tok/s) | tfc / PyTorch decode | tfc bandwidth |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["runs"]:
        t, p = r["tfc"], r["pytorch"]
        lines.append(
            f"| {r['model']} | {r['format']} | {t['first_token_ms']:.1f} | {p['first_token_ms']:.1f} | {t['decode_tokens_per_s']:.0f} | "
            f"{p['decode_tokens_per_s']:.0f} | {t['decode_tokens_per_s'] / p['decode_tokens_per_s']:.2f}× | "
            f"{100 * r['weight_bytes'] * t['decode_tokens_per_s'] / copy:.1f}% |"
        )
    lines += [
        "",
        "PyTorch's eager `generate` is bound by the host here (a kernel launch per op from Python, in a virtual",
        "machine): it is the tool many users start from, not the fastest CUDA path; llama.cpp's CUDA build, the",
        "stronger peer, is measured in the next section. On the 1B shape tfc's first token is slower: its 128-token",
        "prompt runs on 64×64 tiles of f32 FMAs, a few TFLOP/s, where PyTorch uses tensor cores.",
        "",
    ]
    return lines


def minilm_wasm(results):
    tfc, tfc2, ort = results["tfc_1_thread"], results["tfc_2_threads"], results["onnxruntime_web"]
    tfc_cpu, ort_cpu = results["tfc_1_thread_cpu_time"], results["onnxruntime_web_cpu_time"]
    median = lambda runs: sorted(r["median_ms"] for r in runs)[len(runs) // 2]
    best = lambda runs: min(r["min_ms"] for r in runs)
    by_op = {op: sorted(r["profile_median_ms"]["by_op"][op] for r in tfc)[len(tfc) // 2] for op in tfc[0]["profile_median_ms"]["by_op"]}
    total = sum(by_op.values())
    machine = results["machine"]
    lines = [
        "## MiniLM on the CPU: the WASM fallback next to onnxruntime-web",
        "",
        f"all-MiniLM-L6-v2 (the real f32 weights), batch 1, sequence 128, in Node {results['node']} on {machine['cpu']}",
        f"({machine['cores']} cores), one call of `scripts/bench/minilm_wasm.sh`: {len(tfc)} rounds, each timing",
        f"{tfc[0]['iterations']} runs of tfc's fallback (`tfc bench --backend wasm`: the browser executor,",
        "`runtime/js/src/wasm-backend.js`, inputs written and outputs read back) and of onnxruntime-web",
        f"{ort[0]['onnxruntime_web']} (WASM SIMD backend, `numThreads = 1`, all graph optimisations) on an f32 ONNX",
        "export of the same model (`scripts/bench/export_minilm_onnx.py`), after 3 warm-up runs each. Shown: the",
        "median of the rounds' medians, and the fastest run, in wall time and (single thread) in the process's CPU",
        "time, which other processes cannot inflate: this machine is shared (load average before and after:",
        f"{machine['loadavg_before']} / {machine['loadavg_after']}).",
        "",
        "| | threads | median (ms) | fastest (ms) | CPU time, median (ms) | CPU time, fastest (ms) |",
        "|---|---:|---:|---:|---:|---:|",
        f"| tfc WASM fallback | 1 | {median(tfc):.1f} | {best(tfc):.1f} | {median(tfc_cpu):.1f} | {best(tfc_cpu):.1f} |",
        f"| onnxruntime-web | 1 | {median(ort):.1f} | {best(ort):.1f} | {median(ort_cpu):.1f} | {best(ort_cpu):.1f} |",
        f"| tfc / onnxruntime-web | | **{median(tfc) / median(ort):.2f}×** | **{best(tfc) / best(ort):.2f}×** | "
        f"**{median(tfc_cpu) / median(ort_cpu):.2f}×** | **{best(tfc_cpu) / best(ort_cpu):.2f}×** |",
        f"| tfc WASM fallback | 2 | {median(tfc2):.1f} | {best(tfc2):.1f} | | |",
        "",
        "Where tfc's time goes on one thread (ms per run, medians over the rounds of each dispatch's median time):",
        "",
        "| " + " | ".join(by_op) + " | total |",
        "|" + "---:|" * (len(by_op) + 1),
        "| " + " | ".join(f"{v:.1f}" for v in by_op.values()) + f" | {total:.1f} |",
        "",
        "Reading: wall times on this shared machine swing with the other processes' load, which is why the CPU",
        f"times are there too. Two threads ran {median(tfc) / median(tfc2):.2f}× as fast as one (medians); they need both",
        f"cores free, since each of the {tfc[0]['dispatches']} dispatches ends at a barrier that waits for the slower thread.",
        "The matrix products dominate. Their kernel keeps eight f32x4 partial sums (2 rows of x × 4 rows of",
        "the [N, K] weight) in registers, the most V8's x64 code holds without spilling (larger blocks measured",
        "slower), and without fused multiply-add in SIMD128 each step is a separate multiply and add; relaxed SIMD's",
        "`f32x4.relaxed_madd`, where a browser has it, is the next step. Attention walks the keys of one query at a",
        "time with an online softmax; sharing key and value loads among several queries would cut it further.",
        "",
    ]
    return lines


def minilm_browser(results):
    rows = {"cold": "first, localhost", "cold_100mbit": "first, 100 Mbit/s", "cached": "second (cached)"}
    names = {"webgpu": "WebGPU", "wasm": "WASM fallback"}
    browser, native, load = results["browser"], results["native"], results["load_average"]
    smollm2 = results.get("model") == "smollm2"
    if smollm2:
        title, what = "SmolLM2", f"generating from a {results['tokens']}-token prompt with SmolLM2-135M-Instruct Q4_1"
        output, weights = ("first token", "next token"), "Q4_1/Q8_0 weights"
    else:
        title, what = "MiniLM", f"embedding one sentence ({results['tokens']} tokens) with all-MiniLM-L6-v2"
        output, weights = ("first embedding", "next embedding"), "f32 weights"
    lines = [
        f"## {title} in headless Chromium: load and first output",
        "",
        f"tfc.js {what} ({results['weights_bytes'] / 2**20:.1f} MiB of",
        f"{weights} in {results['chunks']} chunks) in headless {results['chromium'].split(' built')[0]} on this project's CI machine",
        f"({results['cpu']}, no GPU: WebGPU runs on SwiftShader, Chromium's CPU implementation of it), measured by",
        f"`scripts/bench/minilm_browser.mjs{' --model smollm2' if smollm2 else ''}`. A first visit starts from a fresh browser profile, the bundle served from",
        "localhost or through a 100 Mbit/s link with 20 ms latency (DevTools emulation); a second visit finds the",
        "weights in the Cache API. Milliseconds from the page's `import('tfc.js')` until the weights are in, until",
        f"`load()` resolves and until the {output[0]} arrives, then the {output[1]} alone; medians of",
        f"{results['runs']} visit{'s' if results['runs'] > 1 else ''} each. The WASM fallback runs one thread (the page is not cross-origin isolated).",
        "",
        f"| backend | visit | weights in | load() | {output[0]} | {output[1]} |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for backend, r in browser.items():
        for kind, label in rows.items():
            t = r[kind]
            lines.append(
                f"| {names[backend]} ({r['device']}) | {label} | {t['weights_ms']:.0f} | {t['load_ms']:.0f} | "
                f"{t['first_output_ms']:.0f} | {t['next_output_ms']:.0f} |"
            )
    if smollm2:
        lines += [
            "",
            f"The native runtime on the same machine ({native['adapter'].split(' (')[0]}, Mesa's Vulkan on the CPU) gives its first",
            f"token after {native['first_token_ms']:.0f} ms and then {native['decode_tokens_per_s']:.1f} tokens/s (`tfc generate`). The 1-minute load",
            f"average was {load[0]:.1f} before and {load[1]:.1f} after the measurement: other builds shared the 2 cores.",
            "",
            "Reading: SwiftShader runs SmolLM2's kernels far slower than the WASM fallback, which `auto` therefore takes on",
            "a machine without a GPU; on the fallback most of a cached visit is reading and checking the weights.",
            "",
        ]
        return lines
    lines += [
        "",
        f"The native runtime on the same machine ({native['adapter'].split(' (')[0]}, Mesa's Vulkan on the CPU) takes",
        f"{native['median_ms']:.0f} ms per embedding (`tfc bench`). The 1-minute load average was {load[0]:.1f} before and",
        f"{load[1]:.1f} after the measurement: other builds shared the 2 cores, which slows every figure here.",
    ]
    if "wasm" in browser:
        webgpu, wasm = browser["webgpu"], browser["wasm"]
        lines += [
            "",
            f"Reading: on a CPU the WASM fallback embeds {webgpu['cached']['next_output_ms'] / wasm['cached']['next_output_ms']:.0f}× faster",
            "than WebGPU emulated by SwiftShader, so `load()` in `auto` mode prefers the fallback to a software adapter. A",
            "cached visit reads and checks the weights in",
            f"{wasm['cached']['weights_ms']:.0f} ms; with WebGPU, `load()` then waits for SwiftShader to compile the kernels",
            f"({webgpu['cached']['load_ms'] - webgpu['cached']['weights_ms']:.0f} ms). Over 100 Mbit/s the download dominates a first visit.",
        ]
    return lines + [""]


def smollm2_wasm_generate(results):
    runs = results["tfc_generate"]
    median = lambda key, runs=runs: sorted(r[key] for r in runs)[len(runs) // 2]
    m = results["machine"]
    cpu = results["tfc_generate_cpu_time"]
    return [
        "## SmolLM2 generating on the WASM fallback (Node, one thread)",
        "",
        f"{results['model']}: `tfc generate --backend wasm --threads 1` (tfc.js's generation loop in Node {results['node']},",
        f"the KV cache kept in WASM memory, one run per token), greedy, {runs[0]['generated']} tokens after a {runs[0]['prompt_tokens']}-token prompt,",
        f"{len(runs)} runs by `scripts/bench/smollm2_generate_wasm.sh` on {m['cpu']} ({m['cores']} cores, load average",
        f"{m['loadavg_before'].split()[0]} before, {m['loadavg_after'].split()[0]} after). Decode counts the tokens after the first over",
        "the time after it, as node-llama-cpp's figure is taken; each round also ran timed in the process's CPU time,",
        "which the other work on the shared machine cannot inflate.",
        "",
        "| clock | decode (tok/s), median | first token (ms), median | runs (tok/s) |",
        "|---|---:|---:|---|",
    ] + [
        f"| {clock} | {median('decode_tokens_per_s', r):.1f} | {median('first_token_ms', r):.0f} | "
        + ", ".join(f"{x['decode_tokens_per_s']:.1f}" for x in r) + " |"
        for clock, r in [("wall", runs), ("CPU time", cpu)]
    ] + [""]


def llamacpp(results):
    copy = results["copy_bytes_per_s"]
    lines = [
        "## Decoding against llama.cpp (CUDA) on the same GGUF files (H100)",
        "",
        "Random weights in the shapes below, written as F16 GGUF and quantized with llama.cpp's `llama-quantize`; one",
        "call of `scripts/bench/llamacpp_device.sh`. llama.cpp: `llama-bench -p 128 -n 128 -ngl 99` (CUDA, built from the",
        "llama-cpp-python sdist's source on that machine); its time to first token is estimated as 128 tokens at its",
        f"prompt rate. tfc: `tfc generate` on the bundle compiled from the same file, {results['prompt']}-token prompt,",
        f"{results['new_tokens']} greedy tokens (Vulkan). Bandwidth is weight bytes per second over the copy bandwidth",
        f"measured in the same run ({copy / 1e12:.2f} TB/s).",
        "",
        "| model | format | weights (GiB) | tfc decode (tok/s) | llama.cpp decode (tok/s) | tfc / llama.cpp | tfc bandwidth | llama.cpp bandwidth | tfc first token (ms) | llama.cpp first token (ms) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results["runs"]:
        w = r["bundle_weight_bytes"]
        t, l = r["tfc"], r["llama_cpp"]
        lines.append(
            f"| {r['model']} | {r['format']} | {w / 2**30:.2f} | {t['decode_tokens_per_s']:.0f} | {l['decode_tokens_per_s']:.0f} | "
            f"{t['decode_tokens_per_s'] / l['decode_tokens_per_s']:.2f}× | {100 * w * t['decode_tokens_per_s'] / copy:.0f}% | "
            f"{100 * w * l['decode_tokens_per_s'] / copy:.0f}% | {t['first_token_ms']:.0f} | {l['first_token_ms_estimate']:.1f} |"
        )
    lines += [
        "",
        "Reading: llama.cpp decodes 3–4× faster and reaches its first token 3–13× sooner. A tfc decoding step runs one dispatch per op",
        "(about 19 per layer, each followed by a full barrier, a few microseconds apiece: SmolLM2's 30 thin layers",
        "make it slower than the 1B model's 16 wide ones), and its quantized matrix-vector kernels reach a fraction of",
        "the bandwidth (see the next section). Fusing each layer's elementwise ops into the matrix products, and",
        "8-bit integer dot products for the block formats, are the work this table measures.",
        "",
    ]
    return lines


def smollm2_wasm(results):
    median = lambda values: sorted(values)[len(values) // 2]
    tfc_ms = lambda runs: median([r["median_ms"] for r in runs])
    llama_ms = lambda runs: median([r["decode_ms_per_token"] for r in runs])
    tfc, llama = results["tfc"], results["llama_cpp"]
    tfc_cpu, llama_cpu = results["tfc_cpu_time"], results["llama_cpp_cpu_time"]
    machine = results["machine"]
    by_kernel = {k: median([r["profile_median_ms"]["by_op_weight"][k] for r in tfc_cpu]) for k in tfc_cpu[0]["profile_median_ms"]["by_op_weight"]}
    matmuls = {k: v for k, v in by_kernel.items() if k.startswith("MatMul")}
    rest = sum(v for k, v in by_kernel.items() if not k.startswith("MatMul"))
    row = lambda name, ms, cpu_ms: f"| {name} | {ms:.1f} | {1000 / ms:.1f} | {cpu_ms:.1f} | {1000 / cpu_ms:.1f} |"
    lines = [
        "## SmolLM2 decoding on the CPU: the WASM fallback next to llama.cpp",
        "",
        f"{results['model']} (the real file), one CPU thread, in Node {results['node']} on {machine['cpu']}",
        f"({machine['cores']} cores), one call of `scripts/bench/smollm2_wasm.sh`: {len(tfc)} rounds alternating tfc's",
        f"fallback and llama.cpp's CPU build (node-llama-cpp {llama[0]['node_llama_cpp']}: its prebuilt binaries,",
        "`threads: 1`) on the same file. tfc: one decoding step, `tfc bench --backend wasm --sequence 1` (the browser",
        "executor; the one token through every layer and the LM head, attention over one cached row where a real step",
        f"reads tens: microseconds of its milliseconds), median of {tfc[0]['iterations']} steps after 3 warm-ups. llama.cpp: the",
        f"{llama[0]['new_tokens'] - 1} tokens after the first of a greedy continuation of a {llama[0]['prompt_tokens']}-token prompt. Medians over the",
        "rounds, in wall time and in the process's CPU time, which other processes cannot inflate: this machine is",
        f"shared (load average before and after: {machine['loadavg_before']} / {machine['loadavg_after']}), so the CPU times are",
        "the figures to compare.",
        "",
        "| | ms per token | tokens/s | CPU ms per token | tokens/s (CPU time) |",
        "|---|---:|---:|---:|---:|",
        row("tfc WASM fallback", tfc_ms(tfc), tfc_ms(tfc_cpu)),
        row("llama.cpp (node-llama-cpp)", llama_ms(llama), llama_ms(llama_cpu)),
        f"| tfc / llama.cpp (speed) | | **{llama_ms(llama) / tfc_ms(tfc):.2f}×** | | **{llama_ms(llama_cpu) / tfc_ms(tfc_cpu):.2f}×** |",
        "",
        "Where tfc's step goes (CPU ms, medians of each dispatch's median time): "
        + ", ".join(f"{k.removeprefix('MatMul ')} matrix products {v:.1f}" for k, v in matmuls.items())
        + f", everything else {rest:.1f}.",
        "",
        "Reading: the products with the Q4_1 layers and the Q8_0 LM head (tied to the embeddings) are the step. tfc keeps",
        "x in f32 and decodes each weight exactly (a swizzle puts four quants in i32 lanes, then a conversion, a",
        "multiply and an add per four weights, `a · Σ q·x + o · Σ x` per block), so its products agree with the reference",
        "interpreter to about 1e-7. llama.cpp rounds x to 8 bits per block and multiplies integers, 32 weights per AVX2",
        "instruction, at the cost of a 2% difference in SmolLM2's logits (docs/gguf-and-quantization.md). SIMD128 has a",
        "16-bit integer dot product but no 8-bit one, and rounding x would break the op suite's 1e-5 tolerance: exact f32",
        "arithmetic is what this table prices.",
        "",
    ]
    return lines


SECTIONS = [
    ("minilm-h100.json", minilm),
    ("generate-h100.json", generate),
    ("llamacpp-h100.json", llamacpp),
    ("quant-matvec-h100.json", quant_matvec),
    ("minilm-wasm.json", minilm_wasm),
    ("smollm2-wasm.json", smollm2_wasm),
    ("minilm-browser.json", minilm_browser),
    ("smollm2-browser.json", minilm_browser),
    ("smollm2-wasm-generate.json", smollm2_wasm_generate),
]


def main():
    out = [
        "# Benchmarks",
        "",
        "Every figure here was measured by a script in `scripts/bench/`, which compares tfc with a peer or the",
        "hardware in the same run; `python3 scripts/bench/render.py` rewrites this page from the JSON files in",
        "`docs/benchmarks/`. Reproduce a measurement with the command in `scripts/bench/README.md`.",
        "",
    ]
    for name, section in SECTIONS:
        path = DOCS / "benchmarks" / name
        if path.exists():
            out += section(json.loads(path.read_text()))
    (DOCS / "benchmarks.md").write_text("\n".join(out))


if __name__ == "__main__":
    main()
