"""Writes a GGUF of a Llama-family shape with random F16 weights (norms F32), tied embeddings, and the tokenizer
metadata of one of llama.cpp's vocab-only test files, for speed comparisons: values don't matter for speed, so q/k
are not permuted the way a real conversion does.
Usage: python3 llama_gguf.py SHAPE VOCAB.gguf OUT.gguf (gguf-py on PYTHONPATH), SHAPE one of SHAPES; the vocab file
must have the shape's vocabulary size (ggml-vocab-llama-bpe for llama-3.2-1b, ggml-vocab-starcoder for smollm2-135m)."""

import sys

import gguf
import numpy as np

# hidden, feed-forward, layers, heads, key/value heads, head size, vocabulary, rope base (from the models' configs)
SHAPES = {
    "llama-3.2-1b": (2048, 8192, 16, 32, 8, 64, 128256, 500000.0),
    "smollm2-135m": (576, 1536, 30, 9, 3, 64, 49152, 100000.0),
}
CONTEXT = 2048


def main(shape, vocab_path, out_path):
    HIDDEN, FFN, LAYERS, HEADS, KV_HEADS, HEAD_DIM, VOCAB, ROPE_BASE = SHAPES[shape]
    vocab = gguf.GGUFReader(vocab_path)
    tokens = len(vocab.fields["tokenizer.ggml.tokens"].data)
    if tokens != VOCAB:
        sys.exit(f"{vocab_path} has {tokens} tokens; {shape} needs {VOCAB}")
    writer = gguf.GGUFWriter(out_path, "llama")
    writer.add_context_length(CONTEXT)
    writer.add_embedding_length(HIDDEN)
    writer.add_block_count(LAYERS)
    writer.add_feed_forward_length(FFN)
    writer.add_head_count(HEADS)
    writer.add_head_count_kv(KV_HEADS)
    writer.add_rope_dimension_count(HEAD_DIM)
    writer.add_rope_freq_base(ROPE_BASE)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    for field in vocab.fields.values():
        if field.name.startswith("tokenizer."):
            value = field.contents()
            writer.add_key_value(field.name, value, field.types[0], sub_type=field.types[-1] if len(field.types) > 1 else None)
    rng = np.random.default_rng(0)
    weight = lambda *shape: (rng.standard_normal(shape, dtype=np.float32) * 0.02).astype(np.float16)
    writer.add_tensor("token_embd.weight", weight(VOCAB, HIDDEN))
    for i in range(LAYERS):
        writer.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(HIDDEN, np.float32))
        writer.add_tensor(f"blk.{i}.attn_q.weight", weight(HEADS * HEAD_DIM, HIDDEN))
        writer.add_tensor(f"blk.{i}.attn_k.weight", weight(KV_HEADS * HEAD_DIM, HIDDEN))
        writer.add_tensor(f"blk.{i}.attn_v.weight", weight(KV_HEADS * HEAD_DIM, HIDDEN))
        writer.add_tensor(f"blk.{i}.attn_output.weight", weight(HIDDEN, HEADS * HEAD_DIM))
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(HIDDEN, np.float32))
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", weight(FFN, HIDDEN))
        writer.add_tensor(f"blk.{i}.ffn_up.weight", weight(FFN, HIDDEN))
        writer.add_tensor(f"blk.{i}.ffn_down.weight", weight(HIDDEN, FFN))
    writer.add_tensor("output_norm.weight", np.ones(HIDDEN, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    main(*sys.argv[1:])
