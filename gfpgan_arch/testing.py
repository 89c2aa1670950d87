"""Seeded stand-in networks for tests, benchmarks and smoke runs (no real weights are shipped)."""

from __future__ import annotations

import re

import torch

from .clean import GFPGANv1Clean

# The configuration of the official v1.2 / v1.3 / v1.4 releases.
OFFICIAL_CLEAN_CONFIG = dict(
    out_size=512,
    num_style_feat=512,
    channel_multiplier=2,
    num_mlp=8,
    input_is_latent=True,
    different_w=True,
    narrow=1,
    sft_half=True,
)


def seeded_clean_network(seed: int = 0, nonzero_noise: bool = True, **config):
    """A GFPGANv1Clean with deterministic random weights (the official config unless overridden).

    Fresh StyleConv noise strengths are 0; real checkpoints have non-zero ones,
    so by default they are set to small seeded values.
    """
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG alone
        torch.manual_seed(seed)
        network = GFPGANv1Clean(**{**OFFICIAL_CLEAN_CONFIG, **config}).eval()
    if nonzero_noise:
        generator = torch.Generator().manual_seed(seed + 1)
        with torch.no_grad():
            for name, param in network.named_parameters():
                if re.fullmatch(r"stylegan_decoder\.style_convs\.\d+\.weight", name):
                    param.copy_(torch.rand(param.shape, generator=generator) * 0.1 + 0.01)
    return network
