"""Building a CodeFormer network for a detected architecture."""

from __future__ import annotations

from torch import nn

from ..model_files import ArchSpec, ModelLoadError
from .codeformer import CodeFormer, CodeFormerColorization

NETWORKS = {"CodeFormer": CodeFormer, "CodeFormerColorization": CodeFormerColorization}


def build_network(spec: ArchSpec) -> nn.Module:
    """An untrained network of ``spec``'s architecture and config."""
    if spec.name not in NETWORKS:
        raise ModelLoadError(f"unknown CodeFormer architecture {spec.name!r}")
    return NETWORKS[spec.name](**spec.config)
