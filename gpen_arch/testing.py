"""Seeded stand-in GPEN networks for tests and benchmarks (no real weights are shipped)."""

from __future__ import annotations

import torch

from .gpen import GPEN

# The configs of the official files: upstream's demo / README (256, 512) and ModelScope's
# pipeline (1024; 2048 is documented as its larger sibling, detected from shapes like any other).
OFFICIAL_CONFIGS = {
    256: dict(size=256, style_dim=512, n_mlp=8, channel_multiplier=1, narrow=0.5, is_concat=True),
    512: dict(size=512, style_dim=512, n_mlp=8, channel_multiplier=2, narrow=1.0, is_concat=True),
    1024: dict(size=1024, style_dim=512, n_mlp=8, channel_multiplier=2, narrow=1.0, is_concat=True),
    2048: dict(size=2048, style_dim=512, n_mlp=8, channel_multiplier=2, narrow=1.0, is_concat=True),
}


def seeded_gpen_network(size: int = 256, seed: int = 0, **overrides) -> GPEN:
    """A GPEN with deterministic random weights (the official config of ``size`` unless overridden).

    Fresh feature-injection strengths and activation biases are 0, which would hide the encoder's
    skip path; real checkpoints have non-zero ones, so they get small seeded values.
    """
    config = {**OFFICIAL_CONFIGS.get(size, OFFICIAL_CONFIGS[256]), "size": size, **overrides}
    with torch.random.fork_rng(devices=[]):  # leave the caller's global RNG alone
        torch.manual_seed(seed)
        network = GPEN(**config).eval()
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, param in network.named_parameters():
            if name.endswith("noise.weight"):
                param.copy_(torch.rand(param.shape, generator=generator) * 0.1 + 0.01)
            elif name.endswith("activate.bias"):
                param.copy_(torch.randn(param.shape, generator=generator) * 0.1)
    return network
