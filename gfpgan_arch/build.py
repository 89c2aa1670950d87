"""Building a GFP-GAN network for a detected architecture."""

from __future__ import annotations

from torch import nn

from ..model_files import ArchSpec, ModelLoadError
from .clean import GFPGANv1Clean


def build_network(spec: ArchSpec) -> nn.Module:
    """An untrained network of ``spec``'s architecture and config."""
    if spec.name == "GFPGANv1Clean":
        return GFPGANv1Clean(**spec.config)
    if spec.name == "GFPGANv1":
        from .original import GFPGANv1

        return GFPGANv1(**spec.config)
    raise ModelLoadError(f"unknown GFP-GAN architecture {spec.name!r}")
