"""Pure-PyTorch versions of StyleGAN2's compiled ops (upfirdn2d, fused leaky ReLU), for the original GFPGANv1.

They compute what the CUDA extensions compute, on any device, with no build step.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1, pad: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Upsample by zero insertion, pad, filter with ``kernel`` (true convolution), downsample.

    ``x``: ``[N,C,H,W]``; ``kernel``: ``[kh,kw]``; ``pad``: (before, after), the same on both axes
    (negative values crop).
    """
    n, c, h, w = x.shape
    if up > 1:
        x = x.reshape(n, c, h, 1, w, 1)
        x = F.pad(x, [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(n, c, h * up, w * up)
    before, after = pad
    x = F.pad(x, [max(before, 0), max(after, 0), max(before, 0), max(after, 0)])
    if before < 0 or after < 0:
        height, width = x.shape[-2:]
        x = x[..., max(-before, 0) : height - max(-after, 0), max(-before, 0) : width - max(-after, 0)]
    weight = torch.flip(kernel, [0, 1]).to(x).expand(c, 1, *kernel.shape)
    if x.device.type == "cpu":
        # The CPU has no fast grouped convolution in half precision: in bf16 (as autocast would run it) it
        # loops over the channels (GPEN-128 ran 10x slower). bf16 / fp16 blurs run in fp32 and round once;
        # float64 stays float64 (fp32 would cost it 1e-7 of precision).
        compute = torch.float64 if x.dtype == torch.float64 else torch.float32
        with torch.autocast("cpu", enabled=False):
            return F.conv2d(x.to(compute), weight.to(compute), groups=c)[..., ::down, ::down].to(x.dtype)
    x = F.conv2d(x, weight, groups=c)
    return x[..., ::down, ::down]


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor | None, negative_slope: float = 0.2,
                     scale: float = math.sqrt(2)) -> torch.Tensor:
    """``leaky_relu(x + bias) * scale`` with ``bias`` along dimension 1."""
    if bias is not None:
        x = x + bias.view(1, -1, *([1] * (x.ndim - 2)))
    return F.leaky_relu(x, negative_slope) * scale


class FusedLeakyReLU(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias)


def resample_kernel(taps: tuple[int, ...] = (1, 3, 3, 1)) -> torch.Tensor:
    """Normalised 2D blur kernel, the outer product of ``taps``."""
    k = torch.tensor(taps, dtype=torch.float32)
    k = k[None, :] * k[:, None]
    return k / k.sum()
