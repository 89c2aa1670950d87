"""The pipeline's error for unusable inputs (a ValueError, so callers that catch those keep working), and the
one-line form of any error that per-file messages use."""


class FaceInputError(ValueError):
    """Images, crops, faces or settings that the face pipeline cannot process; the message says which and why."""


def one_line(error: BaseException) -> str:
    """An error as one line for a per-file message: its first line, or its type where it says nothing."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
