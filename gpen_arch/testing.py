"""Seeded stand-in GPEN networks for tests and benchmarks (no real weights are shipped)."""

from __future__ import annotations

import torch

from ..gfpgan_arch.ops import resample_kernel
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

    Every tensor is drawn here by its name, not by the layers' own initialisation, so a layer whose
    init compensates a wrong constant (an equalised-lr multiplier, say) still shows it in the
    output. The draws follow upstream's init (weights N(0, 1), the style MLP's N(0, 1) / 0.01,
    modulation biases 1), plus what trained files have and fresh ones lack: non-zero biases and
    feature-injection strengths.
    """
    config = {**OFFICIAL_CONFIGS.get(size, OFFICIAL_CONFIGS[256]), "size": size, **overrides}
    with torch.device("meta"):
        network = GPEN(**config)
    network = network.to_empty(device="cpu").eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in network.state_dict().items():
            shape = tensor.shape
            if name.endswith(".kernel"):
                value = resample_kernel() * (4.0 if ".upsample." in name or ".conv.blur." in name else 1.0)
            elif name.endswith("noise.weight"):
                value = torch.rand(shape, generator=generator) * 0.1 + 0.01
            elif name.endswith("modulation.bias"):
                value = 1 + torch.randn(shape, generator=generator) * 0.1
            elif name.endswith("bias"):
                value = torch.randn(shape, generator=generator) * 0.1
            elif name.startswith("generator.style."):
                value = torch.randn(shape, generator=generator) * 100
            else:
                value = torch.randn(shape, generator=generator)
            tensor.copy_(value)
    return network
