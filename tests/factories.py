"""Deterministic test objects shared by tests and benchmarks (pytest puts tests/ on sys.path)."""

from comfyui_gfpgan.gfpgan_arch.testing import OFFICIAL_CLEAN_CONFIG, seeded_clean_network

__all__ = ["OFFICIAL_CLEAN_CONFIG", "seeded_clean_network"]
