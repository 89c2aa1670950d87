"""RestoreFormer (Wang et al., CVPR 2022) in plain PyTorch, as released with GFPGAN v1.3.4 (``RestoreFormer.pth``).

A VQGAN-style autoencoder: the encoder's features are snapped to a learned high-quality codebook, and the
decoder cross-attends from the encoder's (degraded) features, the queries, to its own codebook-derived
features, the keys and values. State-dict keys are the official ones, so released files load with
``strict=True``. ``forward(x)`` takes and returns ``[N,3,S,S]`` in [-1, 1]; no fidelity knob, no noise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..codeformer_arch.vqgan import Downsample, ResBlock, Upsample, group_norm


def ResnetBlock(in_channels: int, out_channels: int) -> ResBlock:
    return ResBlock(in_channels, out_channels, skip_name="nin_shortcut")


class MultiHeadAttention(nn.Module):
    """Multi-head attention over all positions. Without ``queries_from`` it is self-attention; with it, the
    queries come from those features (normed by ``norm2``) and keys and values from ``x`` (``norm1``)."""

    def __init__(self, channels: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm1 = group_norm(channels)
        self.norm2 = group_norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def _split_heads(self, t: torch.Tensor) -> torch.Tensor:
        n, c, h, w = t.shape  # channel index = head * (c // heads) + feature, as upstream splits them
        return t.reshape(n, self.heads, c // self.heads, h * w).transpose(-1, -2)

    def forward(self, x: torch.Tensor, queries_from: torch.Tensor | None = None) -> torch.Tensor:
        keys_values = self.norm1(x)
        queries = keys_values if queries_from is None else self.norm2(queries_from)
        n, c, h, w = x.shape
        # softmax(q k^T / sqrt(head dim)) v, the upstream computation, in torch's fused kernel
        out = F.scaled_dot_product_attention(
            self._split_heads(self.q(queries)), self._split_heads(self.k(keys_values)), self._split_heads(self.v(keys_values))
        )
        return x + self.proj_out(out.transpose(-1, -2).reshape(n, c, h, w))


class Level(nn.Module):
    """One resolution of the encoder or decoder: residual blocks, each followed by attention where it has any."""

    def __init__(self, channels_in: int, channels: int, blocks: int, heads: int, attention: bool):
        super().__init__()
        self.block = nn.ModuleList(ResnetBlock(channels_in if i == 0 else channels, channels) for i in range(blocks))
        self.attn = nn.ModuleList(MultiHeadAttention(channels, heads) for _ in range(blocks if attention else 0))

    def forward(self, h: torch.Tensor, queries_from: torch.Tensor | None = None) -> torch.Tensor:
        for index, block in enumerate(self.block):
            h = block(h)
            if self.attn:
                h = self.attn[index](h, queries_from)
        return h


class Middle(nn.Module):
    def __init__(self, channels: int, heads: int):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels)
        self.attn_1 = MultiHeadAttention(channels, heads)
        self.block_2 = ResnetBlock(channels, channels)


class Encoder(nn.Module):
    """Image to latent, keeping the features the decoder's cross-attention takes its queries from: each
    level's output before downsampling, and at the bottleneck the middle's first block and its output."""

    def __init__(self, ch: int, ch_mult: tuple[int, ...], num_res_blocks: int, z_channels: int,
                 attn_levels: frozenset[int], heads: int):
        super().__init__()
        self.conv_in = nn.Conv2d(3, ch, 3, padding=1)
        widths = [ch * m for m in ch_mult]
        self.down = nn.ModuleList()
        for index, width in enumerate(widths):
            level = Level(ch if index == 0 else widths[index - 1], width, num_res_blocks, heads, index in attn_levels)
            if index != len(widths) - 1:
                level.downsample = Downsample(width)
            self.down.append(level)
        self.mid = Middle(widths[-1], heads)
        self.norm_out = group_norm(widths[-1])
        self.conv_out = nn.Conv2d(widths[-1], z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor], torch.Tensor]:
        """Returns the latent, the queries for each decoder level, and those for the decoder's middle."""
        h = self.conv_in(x)
        level_features = []
        for level in self.down:
            h = level(h)
            level_features.append(h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = self.mid.block_1(h)
        level_features[-1] = h  # the bottleneck level's queries: the middle's first block (upstream's "block_N_atten")
        h = self.mid.block_2(self.mid.attn_1(h))
        middle_features = h
        z = self.conv_out(F.silu(self.norm_out(h)))
        return z, level_features, middle_features


class Decoder(nn.Module):
    def __init__(self, ch: int, ch_mult: tuple[int, ...], num_res_blocks: int, z_channels: int,
                 attn_levels: frozenset[int], heads: int):
        super().__init__()
        widths = [ch * m for m in ch_mult]
        self.conv_in = nn.Conv2d(z_channels, widths[-1], 3, padding=1)
        self.mid = Middle(widths[-1], heads)
        levels = []
        for index in reversed(range(len(widths))):  # built deepest first, stored shallowest first (official order)
            channels_in = widths[index + 1] if index + 1 < len(widths) else widths[-1]
            level = Level(channels_in, widths[index], num_res_blocks + 1, heads, index in attn_levels)
            if index != 0:
                level.upsample = Upsample(widths[index])
            levels.insert(0, level)
        self.up = nn.ModuleList(levels)
        self.norm_out = group_norm(widths[0])
        self.conv_out = nn.Conv2d(widths[0], 3, 3, padding=1)

    def forward(self, z: torch.Tensor, level_features: list[torch.Tensor], middle_features: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(z)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h), middle_features))
        for index in reversed(range(len(self.up))):
            level = self.up[index]
            h = level(h, level_features[index] if level.attn else None)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class VectorQuantizer(nn.Module):
    def __init__(self, n_embed: int, embed_dim: int):
        super().__init__()
        self.embedding = nn.Embedding(n_embed, embed_dim)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Each position's nearest codebook entry (squared Euclidean distance, as upstream computes it)."""
        n, c, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, c)
        # The choice of entry is discrete: float32 even under bf16 autocast, or bf16 rounding picks other
        # entries for near ties.
        with torch.autocast(z.device.type, enabled=False):
            flat32, codebook = flat.float(), self.embedding.weight.float()
            distance = flat32.pow(2).sum(1, keepdim=True) + codebook.pow(2).sum(1) - 2 * flat32 @ codebook.t()
            nearest = codebook[distance.argmin(dim=1)].reshape(n, h, w, c).permute(0, 3, 1, 2)
            z32 = z.float()
            # Upstream returns z + (z_q - z), its straight-through gradient trick: the same value here (it
            # differs from z_q by rounding, which the decoder amplifies past the parity tolerance otherwise).
            return (z32 + (nearest - z32)).to(z.dtype)


class RestoreFormer(nn.Module):
    """RestoreFormer at the official ``RestoreFormer.pth`` config unless told otherwise.

    ``attn_resolutions`` are the feature sizes (px, for ``resolution`` px input) where the encoder's levels
    attend; ``decoder_attn_resolutions`` those of the decoder (the encoder's by default). ``head_size`` is the
    number of attention heads (upstream's name), which the weights do not show.
    """

    def __init__(
        self,
        *,
        n_embed: int = 1024,
        embed_dim: int = 256,
        ch: int = 64,
        ch_mult: tuple[int, ...] = (1, 2, 2, 4, 4, 8),
        num_res_blocks: int = 2,
        z_channels: int = 256,
        resolution: int = 512,
        attn_resolutions: tuple[int, ...] = (16,),
        decoder_attn_resolutions: tuple[int, ...] | None = None,
        head_size: int = 8,
    ):
        super().__init__()
        ch_mult = tuple(ch_mult)
        decoder_attn_resolutions = attn_resolutions if decoder_attn_resolutions is None else decoder_attn_resolutions
        sizes = [resolution // 2**index for index in range(len(ch_mult))]
        widths = [ch * m for m in ch_mult]
        if resolution % 2 ** (len(ch_mult) - 1):
            raise ValueError(f"resolution {resolution} is not divisible by 2**{len(ch_mult) - 1} (ch_mult {ch_mult})")
        for name, chosen in (("attn_resolutions", attn_resolutions), ("decoder_attn_resolutions", decoder_attn_resolutions)):
            if not set(chosen) <= set(sizes):
                raise ValueError(f"{name} {tuple(chosen)} must be among the feature sizes {tuple(sizes)}")
        if any(width % 32 or width % head_size for width in [ch, *widths]):
            raise ValueError(f"every width {[ch, *widths]} must be divisible by 32 (group norm) and by {head_size} heads")
        self.config = dict(n_embed=n_embed, embed_dim=embed_dim, ch=ch, ch_mult=ch_mult, num_res_blocks=num_res_blocks,
                           z_channels=z_channels, resolution=resolution, attn_resolutions=tuple(sorted(attn_resolutions)),
                           decoder_attn_resolutions=tuple(sorted(decoder_attn_resolutions)), head_size=head_size)
        encoder_levels = frozenset(sizes.index(size) for size in attn_resolutions)
        decoder_levels = frozenset(sizes.index(size) for size in decoder_attn_resolutions)
        self.encoder = Encoder(ch, ch_mult, num_res_blocks, z_channels, encoder_levels, head_size)
        self.decoder = Decoder(ch, ch_mult, num_res_blocks, z_channels, decoder_levels, head_size)
        self.quantize = VectorQuantizer(n_embed, embed_dim)
        self.quant_conv = nn.Conv2d(z_channels, embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, z_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z, level_features, middle_features = self.encoder(x)
        quantized = self.quantize(self.quant_conv(z))
        return self.decoder(self.post_quant_conv(quantized), level_features, middle_features)
