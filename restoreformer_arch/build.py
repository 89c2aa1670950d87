"""Building a RestoreFormer / RestoreFormer++ network for a detected architecture."""

from __future__ import annotations

from torch import nn

from ..model_files import ArchSpec, ModelLoadError
from .restoreformer import RestoreFormer
from .restoreformer_pp import RestoreFormerPlusPlus

NETWORKS = {"RestoreFormer": RestoreFormer, "RestoreFormerPlusPlus": RestoreFormerPlusPlus}


def build_network(spec: ArchSpec) -> nn.Module:
    """An untrained network of ``spec``'s architecture and config."""
    if spec.name not in NETWORKS:
        raise ModelLoadError(f"unknown RestoreFormer architecture {spec.name!r}")
    return NETWORKS[spec.name](**spec.config)
