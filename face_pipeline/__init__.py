"""Framework-free face pipeline: detect -> align -> restore -> (parse) -> paste.

``restore_faces_in_images`` runs it all; the stage functions are re-exported
here for callers that run the steps themselves (the modular nodes, the CLI).
"""

from .align import align_faces
from .detect import FaceModelError, detect_faces, load_detector, select_faces, smooth_landmarks
from .errors import FaceInputError
from .faces import FaceBatch, FaceRecord, Landmarks
from .parse import load_parser, parse_face_masks
from .paste import paste_faces
from .pipeline import (
    DetectSettings,
    PasteSettings,
    PipelineResult,
    RestoreSettings,
    as_rgb,
    find_faces,
    find_faces_in_frames,
    restore_faces_in_images,
)
from .restore import restore_crops

__all__ = [
    "DetectSettings",
    "FaceBatch",
    "FaceInputError",
    "FaceModelError",
    "FaceRecord",
    "Landmarks",
    "PasteSettings",
    "PipelineResult",
    "RestoreSettings",
    "align_faces",
    "as_rgb",
    "detect_faces",
    "find_faces",
    "find_faces_in_frames",
    "load_detector",
    "load_parser",
    "paste_faces",
    "parse_face_masks",
    "restore_crops",
    "restore_faces_in_images",
    "select_faces",
    "smooth_landmarks",
]
