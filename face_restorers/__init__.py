"""Face restoration models of every supported family behind one interface (``FaceRestorer``)."""

from .interface import (
    COMPUTE_DTYPES,
    DTYPE_CHOICES,
    CompiledNetwork,
    FaceRestorer,
    ModelFamily,
    TorchFaceRestorer,
    check_dtype,
    compute_dtype,
)
from .convert import convert_to_safetensors, describe_file
from .families import FAMILIES
from .registry import (
    as_face_restorer,
    detect_family,
    identify_file,
    load_face_restorer,
    restorer_from_state_dict,
)

__all__ = [
    "COMPUTE_DTYPES",
    "CompiledNetwork",
    "DTYPE_CHOICES",
    "FAMILIES",
    "FaceRestorer",
    "ModelFamily",
    "TorchFaceRestorer",
    "as_face_restorer",
    "check_dtype",
    "convert_to_safetensors",
    "describe_file",
    "compute_dtype",
    "detect_family",
    "identify_file",
    "load_face_restorer",
    "restorer_from_state_dict",
]
