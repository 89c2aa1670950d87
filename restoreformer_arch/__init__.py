"""RestoreFormer and RestoreFormer++ networks in plain PyTorch, with key-based detection."""

from .build import build_network
from .detect import detect_architecture, is_restoreformer, is_restoreformer_pp, network_keys
from .restoreformer import RestoreFormer
from .restoreformer_pp import RestoreFormerPlusPlus

__all__ = [
    "RestoreFormer",
    "RestoreFormerPlusPlus",
    "build_network",
    "detect_architecture",
    "is_restoreformer",
    "is_restoreformer_pp",
    "network_keys",
]
