"""The VQ-GAN autoencoder parts CodeFormer is built on: encoder, codebook and generator (decoder).

Layout and state-dict keys follow sczhou/CodeFormer's ``vqgan_arch.py`` (``encoder.blocks.N``,
``quantize.embedding.weight``, ``generator.blocks.N``); only what inference needs is here (no losses,
no nearest-code search: CodeFormer's transformer predicts the codes).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# CodeFormer's VQ-GAN: 512 px in, six levels (512 .. 16 px), two residual blocks per level,
# self-attention at 16 px. Upstream hard-codes these; only the widths vary here (for small test networks).
IMAGE_SIZE = 512
CHANNEL_MULTIPLIERS = (1, 2, 2, 4, 4, 8)
RES_BLOCKS = 2
ATTENTION_SIZE = 16
LATENT_SIZE = IMAGE_SIZE // 2 ** (len(CHANNEL_MULTIPLIERS) - 1)  # 16: the code grid is 16 x 16


def pixels_to_map(pixels: torch.Tensor, height: int, like: torch.Tensor | None = None) -> torch.Tensor:
    """``[N, H*W, C]`` -> ``[N, C, H, W]``, channels-last in memory (a free view) unless ``like`` is not.

    The layout matters: on CPU, oneDNN runs channels-last convolutions ~1.5x faster in float32 and
    ~30x faster in bfloat16 (without native bf16 support), so a map stays in the layout it came in.
    """
    n, hw, c = pixels.shape
    feature_map = pixels.view(n, height, hw // height, c).permute(0, 3, 1, 2)
    if like is not None and not is_channels_last(like):
        feature_map = feature_map.contiguous()
    return feature_map


def is_channels_last(x: torch.Tensor) -> bool:
    return x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


class ResBlock(nn.Module):
    """Pre-activation residual block (GroupNorm, swish, 3x3 conv, twice); a 1x1 conv on the skip where
    the width changes, named ``skip_name`` (CodeFormer's files say ``conv_out``, RestoreFormer's
    ``nin_shortcut``: the VQGAN blocks both families build on)."""

    def __init__(self, in_channels: int, out_channels: int, skip_name: str = "conv_out"):
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip_name = skip_name if in_channels != out_channels else None
        if self.skip_name:
            setattr(self, skip_name, nn.Conv2d(in_channels, out_channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + (x if self.skip_name is None else getattr(self, self.skip_name)(x))


class AttnBlock(nn.Module):
    """Single-head self-attention over the pixels of a feature map (1x1 conv projections)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = group_norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = self.norm(x)
        # [N, 1, HW, C]: one head as wide as the map (scale C^-1/2, as upstream)
        q, k, v = (proj(normed).flatten(2).transpose(1, 2).unsqueeze(1) for proj in (self.q, self.k, self.v))
        attended = F.scaled_dot_product_attention(q, k, v).squeeze(1)  # [N, HW, C]
        return x + self.proj_out(pixels_to_map(attended, x.shape[2], like=x))


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))  # pad right and bottom only, as upstream


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _level_sizes() -> list[int]:
    return [IMAGE_SIZE // 2**level for level in range(len(CHANNEL_MULTIPLIERS))]


class Encoder(nn.Module):
    """512 px image -> ``emb_dim`` x 16 x 16 latent. ``blocks`` run in order."""

    def __init__(self, nf: int, emb_dim: int):
        super().__init__()
        widths = [nf * m for m in CHANNEL_MULTIPLIERS]
        blocks: list[nn.Module] = [nn.Conv2d(3, nf, 3, padding=1)]
        channels = nf
        for level, (size, width) in enumerate(zip(_level_sizes(), widths)):
            for _ in range(RES_BLOCKS):
                blocks.append(ResBlock(channels, width))
                channels = width
                if size == ATTENTION_SIZE:
                    blocks.append(AttnBlock(channels))
            if level != len(widths) - 1:
                blocks.append(Downsample(channels))
        blocks += [ResBlock(channels, channels), AttnBlock(channels), ResBlock(channels, channels),
                   group_norm(channels), nn.Conv2d(channels, emb_dim, 3, padding=1)]
        self.blocks = nn.ModuleList(blocks)


class Generator(nn.Module):
    """``emb_dim`` x 16 x 16 codes -> 512 px image. ``blocks`` run in order."""

    def __init__(self, nf: int, emb_dim: int):
        super().__init__()
        widths = [nf * m for m in CHANNEL_MULTIPLIERS]
        channels = widths[-1]
        blocks: list[nn.Module] = [nn.Conv2d(emb_dim, channels, 3, padding=1),
                                   ResBlock(channels, channels), AttnBlock(channels), ResBlock(channels, channels)]
        for level in reversed(range(len(widths))):
            for _ in range(RES_BLOCKS):
                blocks.append(ResBlock(channels, widths[level]))
                channels = widths[level]
                if _level_sizes()[level] == ATTENTION_SIZE:
                    blocks.append(AttnBlock(channels))
            if level != 0:
                blocks.append(Upsample(channels))
        blocks += [group_norm(channels), nn.Conv2d(channels, 3, 3, padding=1)]
        self.blocks = nn.ModuleList(blocks)


class Codebook(nn.Module):
    """The VQ codebook (upstream's ``VectorQuantizer``; only the lookup is needed at inference)."""

    def __init__(self, codebook_size: int, emb_dim: int):
        super().__init__()
        self.embedding = nn.Embedding(codebook_size, emb_dim)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """``[N, 256]`` code indices -> ``[N, emb_dim, 16, 16]`` latent."""
        return pixels_to_map(self.embedding.weight[codes], LATENT_SIZE)
