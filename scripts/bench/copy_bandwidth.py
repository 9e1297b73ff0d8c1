"""Prints the GPU's device-to-device copy bandwidth in bytes/s (bytes read plus written), measured with PyTorch
over 20 copies of 1 GiB: the hardware limit the generation benchmarks compare against."""

import torch

source = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
target = torch.empty_like(source)
for _ in range(3):
    target.copy_(source)
torch.cuda.synchronize()
start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
start.record()
for _ in range(20):
    target.copy_(source)
end.record()
torch.cuda.synchronize()
print(2 * 20 * source.numel() / (start.elapsed_time(end) / 1e3))
