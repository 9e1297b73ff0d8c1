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
        "Reading: the host side (recording 114 dispatches, uploading inputs, reading back) costs about half a",
        "millisecond; the rest is GPU time, and most of it is the matrix products, which take about 4 ms whatever the",
        "sequence length. With few rows the 64×64-tile kernel launches only 6–48 workgroups for 132 SMs, and each",
        "walks all of K alone, so it is bound by memory latency, not by bandwidth or arithmetic: skinny (split-K or",
        "matrix-vector) kernels are the next step. At sequence 512 attention (one workgroup per query row and head)",
        "becomes the largest cost; query-blocked attention that shares K/V tiles is the fix. This is the baseline",
        "that later work is measured against.",
        "",
    ]
    return lines


def main():
    out = [
        "# Benchmarks",
        "",
        "Every figure here was measured by a script in `scripts/bench/`, which compares tfc with a peer or the",
        "hardware in the same run; `python3 scripts/bench/render.py` rewrites this page from the JSON files in",
        "`docs/benchmarks/`. Reproduce a measurement with the command in `scripts/bench/README.md`.",
        "",
    ]
    path = DOCS / "benchmarks" / "minilm-h100.json"
    if path.exists():
        out += minilm(json.loads(path.read_text()))
    (DOCS / "benchmarks.md").write_text("\n".join(out))


if __name__ == "__main__":
    main()
