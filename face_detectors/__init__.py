"""Face detectors behind one interface: RetinaFace (facexlib's files) and YOLOv5-face (CodeFormer's files).

``load_detector(path)`` tells the family from the file's keys; every detector's ``detect`` takes
``[B,3,H,W]`` RGB 0..1 frames and returns ``Detections`` (boxes, scores, five landmarks) in their pixels.
"""

from .interface import Detections, DetectorFamily, FaceDetector, FaceModelError
from .registry import (
    DETECTOR_FAMILIES,
    DETECTOR_FILES,
    describe_detector,
    detector_family,
    load_detector,
    read_weights,
)

__all__ = [
    "DETECTOR_FAMILIES",
    "DETECTOR_FILES",
    "Detections",
    "describe_detector",
    "DetectorFamily",
    "FaceDetector",
    "FaceModelError",
    "detector_family",
    "load_detector",
    "read_weights",
]
