"""CodeFormer networks in plain PyTorch, with key-based detection (the loading lives in ``face_restorers``)."""

from .build import build_network
from .codeformer import CodeFormer, CodeFormerColorization
from .detect import detect_architecture, is_codeformer, is_colorization, is_restorer

__all__ = [
    "CodeFormer",
    "CodeFormerColorization",
    "build_network",
    "detect_architecture",
    "is_codeformer",
    "is_colorization",
    "is_restorer",
]
