"""The pipeline's error for unusable inputs (a ValueError, so callers that catch those keep working)."""


class FaceInputError(ValueError):
    """Images, crops, faces or settings that the face pipeline cannot process; the message says which and why."""
