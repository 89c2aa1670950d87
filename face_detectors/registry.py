"""Which family a detector file belongs to (from its keys), and loading it as a ``FaceDetector``."""

from __future__ import annotations

from pathlib import Path

import torch

from .interface import DetectorFamily, FaceDetector, FaceModelError
from .retinaface import RETINAFACE
from .yolov5face import YOLOV5_FACE

DETECTOR_FAMILIES: tuple[DetectorFamily, ...] = (RETINAFACE, YOLOV5_FACE)
DETECTOR_FILES = tuple(name for family in DETECTOR_FAMILIES for name in family.files)


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """A local weights file's state dict, read safely (``module.`` prefixes dropped); its errors as FaceModelError."""
    from ..model_files import ModelLoadError, load_state_dict

    try:
        state_dict = load_state_dict(path)
    except ModelLoadError as error:
        raise FaceModelError(str(error)) from error
    return {key.removeprefix("module."): value for key, value in state_dict.items()}


def detector_family(state_dict: dict[str, torch.Tensor]) -> tuple[DetectorFamily, str] | None:
    """The family and variant a state dict's keys say it is; None for a file that is no detector we read."""
    for family in DETECTOR_FAMILIES:
        variant = family.variant(state_dict)
        if variant is not None:
            return family, variant
    return None


def load_detector(path: str | Path, device: str | torch.device = "cpu") -> FaceDetector:
    """The detector in a local weights file (family and config from its keys), loaded strictly, on ``device``."""
    path = Path(path)
    state_dict = read_weights(path)
    found = detector_family(state_dict)
    if found is None:
        raise FaceModelError(
            f"{path}: not a face detector this pack reads (expected one of {', '.join(DETECTOR_FILES)}, in their "
            "official layout)."
        )
    family, variant = found
    detector = family.load(state_dict, variant, path)
    detector.network.to(device)
    return detector
