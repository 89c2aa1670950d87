"""Deterministic test objects shared by tests and benchmarks (pytest puts tests/ on sys.path)."""

import torch

from comfyui_gfpgan.gfpgan_arch.testing import OFFICIAL_CLEAN_CONFIG, seeded_clean_network

__all__ = ["IdentityRestorer", "OFFICIAL_CLEAN_CONFIG", "seeded_clean_network"]


class IdentityRestorer(torch.nn.Module):
    """Stands in for a GFP-GAN network and returns its input: a restorer that changes nothing."""

    out_size = 512

    def __init__(self):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))  # the pipeline reads device and dtype from parameters

    def forward(self, x, fidelity=1.0, noise=None):
        return x
