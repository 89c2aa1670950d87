"""CodeFormer (Zhou et al., NeurIPS 2022): a transformer predicts VQ-GAN codebook entries for a degraded
face; controllable feature transforms fuse the input's encoder features back in, weighted by ``w``.

Our own implementation of sczhou/CodeFormer's ``codeformer_arch.py`` for inference; the official
state-dict keys load unchanged (``strict=True``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .vqgan import IMAGE_SIZE, LATENT_SIZE, Codebook, Encoder, Generator, ResBlock

# Which encoder / generator block's output each fusion resolution taps (upstream's fixed tables:
# after a level's second residual block in the encoder, its first in the generator; before the
# attention at 16 px).
ENCODER_TAPS = {"512": 2, "256": 5, "128": 8, "64": 11, "32": 14, "16": 18}
GENERATOR_TAPS = {"16": 6, "32": 9, "64": 12, "128": 15, "256": 18, "512": 21}
FUSE_MULTIPLIERS = {"16": 8, "32": 4, "64": 4, "128": 2, "256": 2, "512": 1}  # width = nf * multiplier
FUSE_SIZES = tuple(ENCODER_TAPS)


def adaptive_instance_norm(content: torch.Tensor, style: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``content`` with the per-channel mean and (unbiased) std of ``style``, both ``[N, C, H, W]``
    (in ``content``'s memory layout)."""
    style_var, style_mean = torch.var_mean(style, dim=(2, 3), keepdim=True)
    content_var, content_mean = torch.var_mean(content, dim=(2, 3), keepdim=True)
    return (content - content_mean) * ((style_var + eps) / (content_var + eps)).sqrt() + style_mean


class SelfAttention(nn.Module):
    """Multi-head self-attention with ``nn.MultiheadAttention``'s parameters (and keys), batch first;
    queries and keys carry the position embedding, values do not."""

    def __init__(self, dim: int, n_head: int):
        super().__init__()
        if dim % n_head:
            raise ValueError(f"dim_embd {dim} is not divisible by n_head {n_head}")
        self.n_head = n_head
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        n, length, dim = x.shape
        qk = F.linear(x + pos, self.in_proj_weight[: 2 * dim], self.in_proj_bias[: 2 * dim])
        v = F.linear(x, self.in_proj_weight[2 * dim :], self.in_proj_bias[2 * dim :])
        heads = lambda t: t.view(n, length, self.n_head, -1).transpose(1, 2)  # noqa: E731
        q, k = qk.chunk(2, dim=-1)
        attended = F.scaled_dot_product_attention(heads(q), heads(k), heads(v))
        return self.out_proj(attended.transpose(1, 2).reshape(n, length, dim))


class TransformerLayer(nn.Module):
    """Pre-norm transformer layer (upstream's ``TransformerSALayer``, GELU MLP, no dropout at inference)."""

    def __init__(self, dim: int, n_head: int, dim_mlp: int):
        super().__init__()
        self.self_attn = SelfAttention(dim, n_head)
        self.linear1 = nn.Linear(dim, dim_mlp)
        self.linear2 = nn.Linear(dim_mlp, dim)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.norm1(x), pos)
        return x + self.linear2(F.gelu(self.linear1(self.norm2(x))))


class FuseBlock(nn.Module):
    """Controllable feature transform: decoder features + ``w`` * (an affine map of them predicted from
    the encoder's features; upstream's ``Fuse_sft_block``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.encode_enc = ResBlock(2 * channels, channels)
        self.scale = self._branch(channels)
        self.shift = self._branch(channels)

    @staticmethod
    def _branch(channels: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.LeakyReLU(0.2, inplace=True),
                             nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, enc: torch.Tensor, dec: torch.Tensor, w: float) -> torch.Tensor:
        features = self.encode_enc(torch.cat([enc, dec], dim=1))
        return dec + w * (dec * self.scale(features) + self.shift(features))


class CodeFormer(nn.Module):
    """CodeFormer for 512 px aligned faces: ``forward(x, fidelity)`` with ``x`` ``[N, 3, 512, 512]`` in [-1, 1].

    ``fidelity`` is upstream's ``w``: 0 decodes the predicted codes alone (the codebook's prior), 1 fuses
    the input's features in fully (closest to the input). The codes are always re-normalised to the
    input latent's statistics (upstream inference's ``adain=True``). ``connect_list`` names the
    resolutions (in px, as strings, as the keys do) where ``w`` fuses encoder features in.
    """

    def __init__(
        self,
        dim_embd: int = 512,
        n_head: int = 8,
        n_layers: int = 9,
        codebook_size: int = 1024,
        latent_size: int = LATENT_SIZE * LATENT_SIZE,
        connect_list: tuple[str, ...] | list[str] = ("32", "64", "128", "256"),
        nf: int = 64,
        emb_dim: int = 256,
    ):
        super().__init__()
        if latent_size != LATENT_SIZE * LATENT_SIZE:
            raise ValueError(f"latent_size must be {LATENT_SIZE * LATENT_SIZE} (a 16 x 16 code grid), got {latent_size}")
        unknown = [size for size in connect_list if size not in FUSE_SIZES]
        if unknown:
            raise ValueError(f"connect_list {list(connect_list)}: no fusion at {unknown}; sizes are {list(FUSE_SIZES)}")
        self.connect_list = tuple(connect_list)
        self.encoder = Encoder(nf, emb_dim)
        self.quantize = Codebook(codebook_size, emb_dim)
        self.generator = Generator(nf, emb_dim)
        self.position_emb = nn.Parameter(torch.zeros(latent_size, dim_embd))
        self.feat_emb = nn.Linear(emb_dim, dim_embd)
        self.ft_layers = nn.Sequential(*(TransformerLayer(dim_embd, n_head, 2 * dim_embd) for _ in range(n_layers)))
        self.idx_pred_layer = nn.Sequential(nn.LayerNorm(dim_embd), nn.Linear(dim_embd, codebook_size, bias=False))
        self.fuse_convs_dict = nn.ModuleDict({size: FuseBlock(nf * FUSE_MULTIPLIERS[size]) for size in connect_list})
        self._encoder_taps = {ENCODER_TAPS[size]: size for size in connect_list}
        self._generator_taps = {GENERATOR_TAPS[size]: size for size in connect_list}

    def predict_codes(self, latent: torch.Tensor) -> torch.Tensor:
        """The transformer's codebook index for each of the 16 x 16 latent positions: ``[N, 256]``."""
        tokens = self.feat_emb(latent.flatten(2).transpose(1, 2))
        for layer in self.ft_layers:
            tokens = layer(tokens, self.position_emb)
        # upstream takes the top of softmax(logits): the same index as the top logit
        return self.idx_pred_layer(tokens).argmax(dim=-1)

    def forward(self, x: torch.Tensor, fidelity: float = 0.5) -> torch.Tensor:
        if x.shape[1:] != (3, IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f"CodeFormer takes [N, 3, {IMAGE_SIZE}, {IMAGE_SIZE}] faces, got {list(x.shape)}")
        # channels-last on CPU: see vqgan.pixels_to_map
        layout = torch.channels_last if x.device.type == "cpu" else torch.contiguous_format
        x = x.contiguous(memory_format=layout)
        skips = {}
        for index, block in enumerate(self.encoder.blocks):
            x = block(x)
            if index in self._encoder_taps:
                skips[self._encoder_taps[index]] = x
        codes = self.predict_codes(x)
        x = adaptive_instance_norm(self.quantize.lookup(codes).to(x.dtype), x).contiguous(memory_format=layout)
        for index, block in enumerate(self.generator.blocks):
            x = block(x)
            if fidelity > 0 and index in self._generator_taps:
                size = self._generator_taps[index]
                x = self.fuse_convs_dict[size](skips[size], x, fidelity)
        return x


class CodeFormerColorization(CodeFormer):
    """Upstream's colorization model (``codeformer_colorization.pth``): trained without the fusion stage
    (upstream: "w is fixed to 0 since we didn't train the Stage III for colorization"), so its fusion
    layers are untrained and it always runs at w = 0, with no fidelity knob."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return super().forward(x, fidelity=0.0)
