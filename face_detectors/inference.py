"""Making a loaded detector network fast for inference without changing what it computes.

``fold_batch_norms`` merges each BatchNorm into the convolution before it. ``CentredInputConv`` takes the
input mean into a first convolution, so the frame needs no centring pass. ``run_in_strips`` runs the
high-resolution layers of a fully convolutional stage over horizontal strips that fit the CPU's cache,
each with enough rows of context (``receptive_radius``) that the stitched result equals the whole-image
pass: on a 2-core CPU, full-size detection is bound by memory traffic, not arithmetic.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

# Working-image pixels per strip: a strip's largest activation then stays within a few MB (the L3 cache).
STRIP_PIXELS = 1 << 20


def _fold(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> None:
    scale = norm.weight / torch.sqrt(norm.running_var + norm.eps)
    bias = conv.bias if conv.bias is not None else torch.zeros_like(norm.running_mean)
    conv.weight = nn.Parameter(conv.weight * scale.view(-1, 1, 1, 1), requires_grad=False)
    conv.bias = nn.Parameter((bias - norm.running_mean) * scale + norm.bias, requires_grad=False)


@torch.no_grad()
def fold_batch_norms(module: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm2d that directly follows a Conv2d into it (replaced by Identity).

    "Directly follows" means the next item of an ``nn.Sequential``, or a sibling named ``bn<s>`` beside
    ``conv<s>`` (torchvision's ResNet blocks, YOLOv5's Conv), which these networks apply in that order.
    """
    for parent in module.modules():
        children = dict(parent.named_children())
        if isinstance(parent, nn.Sequential):
            names = list(children)
            pairs = [(names[i], names[i + 1]) for i in range(len(names) - 1)]
        else:
            pairs = [(name.replace("bn", "conv", 1), name) for name in children if name.startswith("bn")]
        for conv_name, norm_name in pairs:
            conv, norm = children.get(conv_name), children.get(norm_name)
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                _fold(conv, norm)
                setattr(parent, norm_name, nn.Identity())
    return module


class CentredInputConv(nn.Module):
    """``conv(x - mean)`` computed from ``x`` (one pass over the frame less): the mean's share folded into the
    bias, and given back at the border outputs whose taps fall on the zero padding, where the centred input is
    0 rather than ``-mean``. ``conv`` (dilation 1) is kept as the child ``conv``."""

    def __init__(self, conv: nn.Conv2d, mean: torch.Tensor):
        super().__init__()
        if conv.dilation != (1, 1) or isinstance(conv.padding, str) or conv.padding_mode != "zeros":
            raise ValueError("CentredInputConv takes a convolution with dilation 1 and numeric zero padding")
        with torch.no_grad():
            taps = (conv.weight * mean.to(conv.weight).view(1, -1, 1, 1)).sum(1)  # [out, kh, kw]: each tap's mean share
            bias = conv.bias if conv.bias is not None else torch.zeros_like(taps[:, 0, 0])
            conv.bias = nn.Parameter(bias - taps.sum((1, 2)), requires_grad=False)
        self.conv = conv
        self.register_buffer("taps", taps, persistent=False)

    def _padded_taps(self, size: int, outputs: int, axis: int) -> list[tuple[int, list[int]]]:
        """Output positions along ``axis`` (0 rows, 1 cols) whose window leaves the input, and which taps do."""
        kernel, stride, pad = self.conv.kernel_size[axis], self.conv.stride[axis], self.conv.padding[axis]
        border = sorted({*range(min(outputs, pad)), *range(max(0, outputs - pad), outputs)})  # at most pad each side
        found = [(i, [k for k in range(kernel) if not 0 <= i * stride - pad + k < size]) for i in border]
        return [(i, taps) for i, taps in found if taps]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        rows = self._padded_taps(x.shape[2], y.shape[2], 0)
        cols = self._padded_taps(x.shape[3], y.shape[3], 1)
        for row, kh in rows:
            y[:, :, row, :] += self.taps[:, kh, :].sum((1, 2)).view(-1, 1)
        for col, kw in cols:
            y[:, :, :, col] += self.taps[:, :, kw].sum((1, 2)).view(-1, 1)
        for row, kh in rows:  # a corner's taps were given back twice above
            for col, kw in cols:
                y[:, :, row, col] -= self.taps[:, kh][:, :, kw].sum((1, 2))
        return y


def receptive_radius(layers: list[nn.Module]) -> int:
    """An upper bound, in input pixels, on how far the output of ``layers`` (applied in order) sees.

    Every convolution and pooling counts as if it were on the main path, so parallel branches and
    shortcut convolutions only make the bound larger.
    """
    radius, stride = 0, 1
    for layer in layers:
        for op in layer.modules():
            if isinstance(op, (nn.Conv2d, nn.MaxPool2d)):
                kernel, step, dilation = (v if isinstance(v, int) else v[0] for v in (op.kernel_size, op.stride, op.dilation))
                radius += (kernel - 1) // 2 * dilation * stride + (kernel % 2 == 0) * stride
                stride *= step
    return radius


def run_in_strips(
    stage: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, stride: int, radius: int,
    strip_pixels: int = STRIP_PIXELS,
) -> torch.Tensor:
    """``stage(images)`` computed strip by strip: rows ``[a, b)`` of the output from input rows padded by
    ``radius`` (rounded up to ``stride``, the stage's total stride) on each side where the image goes on.

    Strip starts are multiples of ``stride``, so every layer samples the same positions as in the
    whole-image pass, and the rows each strip keeps saw no padding the whole image would not have.
    The frames of a batch go through one at a time, so a strip is as tall for a batch as for one frame.
    """
    batch, _, height, width = images.shape
    halo = -(-radius // stride) * stride
    rows = max(stride, strip_pixels // max(1, width) // stride * stride)
    if rows + 2 * halo >= height:
        return stage(images)
    parts = []
    for start in range(0, height, rows):
        stop = min(height, start + rows)
        first, last = max(0, start - halo), min(height, stop + halo)
        frames = [stage(images[i : i + 1, :, first:last]) for i in range(batch)]
        out = frames[0] if batch == 1 else torch.cat(frames)
        skip = (start - first) // stride
        parts.append(out[:, :, skip:] if stop == height else out[:, :, skip : skip + (stop - start) // stride])
    return torch.cat(parts, dim=2)
