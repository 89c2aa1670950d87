"""Model files: the one safe reader of weight files (``reader.py``, its names exported here) and the official
releases, what ``download``, ``inspect`` and the nodes' missing-file messages know of them (``releases.py``)."""

from .reader import (
    ArchSpec,
    ModelLoadError,
    file_sha256,
    load_state_dict,
    pickle_loading_is_safe,
    state_dict_mismatch,
)

__all__ = [
    "ArchSpec",
    "ModelLoadError",
    "file_sha256",
    "load_state_dict",
    "pickle_loading_is_safe",
    "state_dict_mismatch",
]
