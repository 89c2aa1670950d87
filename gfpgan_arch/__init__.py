"""GFP-GAN networks in plain PyTorch, with key-based detection (the loading lives in ``face_restorers``)."""

from ..model_files import ArchSpec, ModelLoadError
from .build import build_network
from .clean import GFPGANv1Clean
from .detect import detect_architecture, is_gfpgan
from .original import GFPGANv1


__all__ = [
    "ArchSpec",
    "GFPGANv1",
    "GFPGANv1Clean",
    "ModelLoadError",
    "build_network",
    "detect_architecture",
    "is_gfpgan",
]
