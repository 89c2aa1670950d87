"""Building a GPEN network for a detected config."""

from __future__ import annotations

from ..model_files import ArchSpec
from .gpen import GPEN


def build_network(spec: ArchSpec) -> GPEN:
    """An untrained GPEN of ``spec``'s config."""
    return GPEN(**spec.config)
