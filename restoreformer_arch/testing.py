"""Seeded stand-in RestoreFormer / RestoreFormer++ networks for tests and benchmarks (no real weights are shipped)."""

from __future__ import annotations

import math

import torch
from torch import nn

from .restoreformer import RestoreFormer
from .restoreformer_pp import RestoreFormerPlusPlus


def seed_weights(network: nn.Module, seed: int) -> nn.Module:
    """Fill every tensor of ``network`` from ``torch.Generator(seed)`` in state-dict order, at scales that keep
    activations O(1) through the residual stacks (unit-variance convs, norms near identity, an O(1) codebook).

    Drawn with a generator of its own, not torch's init functions, so the weights, and the committed reference
    outputs made from them, stay the same across torch versions.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in network.state_dict().items():
            noise = torch.randn(tensor.shape, generator=generator, dtype=torch.float32)
            if name.endswith("embedding.weight"):
                value = noise
            elif tensor.dim() == 4:  # convolutions: variance 1 / fan-in, residual branches halved
                gain = 0.25 if name == "decoder.conv_out.weight" else 0.5 if ".conv2." in name or "proj_out" in name else 1.0
                value = noise / math.sqrt(tensor[0].numel()) * gain  # (the output scaled into about [-1, 1])
            elif "norm" in name and name.endswith("weight"):
                value = 1 + 0.1 * noise
            else:  # biases of convolutions and norms
                value = 0.05 * noise
            tensor.copy_(value)
    return network.eval()


def seeded_restoreformer(seed: int = 0, plus_plus: bool = False, **config) -> RestoreFormer:
    """A RestoreFormer (or RestoreFormer++) with seeded weights, at the official config unless overridden."""
    network_class = RestoreFormerPlusPlus if plus_plus else RestoreFormer
    return seed_weights(network_class(**config), seed)


def seeded_faces(count: int, size: int, seed: int = 0) -> torch.Tensor:
    """``[count,3,size,size]`` smooth seeded images in [-1, 1] (low-frequency noise, a stand-in for face crops)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.randn(count, 3, size // 16, size // 16, generator=generator)
    fine = torch.randn(count, 3, size // 4, size // 4, generator=generator)
    image = torch.nn.functional.interpolate(coarse, size=size, mode="bilinear", align_corners=False) + 0.3 * (
        torch.nn.functional.interpolate(fine, size=size, mode="bilinear", align_corners=False))
    return torch.tanh(image)


# Full-resolution windows (y, x, 32 px square) kept beside the 8x average-pooled image in reference files.
REFERENCE_WINDOWS = ((0, 0), (224, 176), (300, 240), (480, 480))


def reference_views(images: torch.Tensor) -> dict[str, torch.Tensor]:
    """A small summary of ``[N,3,512,512]`` outputs to store as reference data: the 8x average-pooled images
    and four 32 px full-resolution windows (the corners included, where padding matters)."""
    windows = torch.stack([images[:, :, y : y + 32, x : x + 32] for y, x in REFERENCE_WINDOWS], dim=1)
    return {"pooled": torch.nn.functional.avg_pool2d(images, 8), "windows": windows}
