"""GPEN (GAN Prior Embedded Network) for blind face restoration, in plain PyTorch, with key-based detection."""

from .detect import detect_architecture, is_gpen
from .build import build_network
from .gpen import GPEN

__all__ = ["GPEN", "build_network", "detect_architecture", "is_gpen"]
