#!/usr/bin/env python3
"""Exports all-MiniLM-L6-v2 (the HF folder the tests use) to an f32 ONNX model for onnxruntime-web, with
torch.onnx and the eager attention implementation, inputs input_ids, attention_mask and token_type_ids (dynamic
batch and sequence), output last_hidden_state.

Usage: PYTHONPATH=fixtures/.cache/pyref python3 scripts/bench/export_minilm_onnx.py MODEL_DIR OUT.onnx
"""
import sys

import torch
import transformers


def main(model_dir, out):
    model = transformers.AutoModel.from_pretrained(model_dir, attn_implementation="eager").eval()

    class Encoder(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):
            return self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state

    ids = torch.ones((1, 16), dtype=torch.int64)
    dynamic = {0: "batch", 1: "sequence"}
    torch.onnx.export(
        Encoder(model),
        (ids, torch.ones_like(ids), torch.zeros_like(ids)),
        out,
        input_names=["input_ids", "attention_mask", "token_type_ids"],
        output_names=["last_hidden_state"],
        dynamic_axes={"input_ids": dynamic, "attention_mask": dynamic, "token_type_ids": dynamic, "last_hidden_state": dynamic},
        opset_version=17,
        dynamo=False,
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
