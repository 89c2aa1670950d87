"""Video files for ``comfyui-gfpgan restore``: decoded, restored and encoded a few frames at a time with PyAV
(an optional dependency: ``pip install av``), so memory stays flat however long the video.

The video is encoded as H.264 at the input's frame timestamps (so its frame rate, constant or variable, is
kept); the first audio track is copied packet for packet, untouched. Outputs keep their container where it
takes any codec we copy (.mp4, .m4v, .mov, .mkv); other containers (.avi, .webm) become .mkv.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..face_pipeline.errors import one_line

if TYPE_CHECKING:
    import numpy as np

VIDEO_SUFFIXES = {".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm"}
_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}  # the containers we write
AV_MISSING = 'restoring videos needs PyAV: pip install av (in a checkout of this pack: pip install -e ".[video]")'
CRF = 16  # x264's constant quality: visually lossless for most footage (lower is larger and closer)
FRAMES_PER_CALL = 16  # frames decoded and restored at a time: memory stays that of 16 frames, however long


class VideoError(Exception):
    """A video that cannot be read or written, as one line; ``unreadable`` where it could not be opened."""

    def __init__(self, message: str, unreadable: bool = False):
        super().__init__(message)
        self.unreadable = unreadable


@dataclass(frozen=True)
class VideoOutcome:
    frames: int
    frames_with_faces: int
    faces: int


def is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES


def output_name(name: Path) -> Path:
    """An input's output name: a video keeps its container where we write it, else becomes .mkv; an image
    keeps its name."""
    return name.with_suffix(".mkv") if is_video(name) and name.suffix.lower() not in _FORMATS else name


def import_av():
    try:
        import av
    except ImportError as error:
        raise VideoError(f"{AV_MISSING} ({error})") from None
    return av


RestoreFrames = Callable[["np.ndarray"], "tuple[np.ndarray, int, int]"]


def restore_video(source: Path, partial: Path, target_suffix: str, restore_frames: RestoreFrames,
                  frames_per_call: int | None = None,
                  on_frames: Callable[[int], None] | None = None) -> VideoOutcome:
    """Decode ``source``, hand its frames ``frames_per_call`` (default ``FRAMES_PER_CALL``) at a time to
    ``restore_frames`` (``[B,H,W,3]`` uint8 RGB in, the same out, with how many of them had faces and how many
    faces) and encode the result, with the audio copied, into ``partial`` in the container of ``target_suffix``;
    ``on_frames(frames_done)`` after each call."""
    av = import_av()
    frames_per_call = frames_per_call or FRAMES_PER_CALL
    try:
        container = av.open(str(source))
    except (av.FFmpegError, OSError) as error:
        raise VideoError(f"not a readable video ({one_line(error)})", unreadable=True) from None
    with container:
        if not container.streams.video:
            raise VideoError("holds no video stream", unreadable=True)
        turns = _quarter_turns(av, source)
        video_in = container.streams.video[0]
        video_in.thread_type = "AUTO"
        audio_in = container.streams.audio[0] if container.streams.audio else None
        try:
            with av.open(str(partial), mode="w", format=_FORMATS[target_suffix.lower()]) as out:
                return _transcode(av, container, video_in, audio_in, out, restore_frames, frames_per_call, turns,
                                  on_frames)
        except _RestoreFailed as failed:  # the restoring's own error (a bad setting, memory), as it was raised
            raise failed.error from None
        except OSError:  # a full disk, a file too large: the caller names the output it could not write
            raise
        except (av.FFmpegError, ValueError) as error:  # PyAV refuses a codec the container cannot hold with ValueError
            raise VideoError(f"stopped part way: a stream {target_suffix} cannot hold ({one_line(error)})") from None


class _RestoreFailed(Exception):
    """Carries an error of ``restore_frames`` past the handler of PyAV's errors, which would misname it."""

    def __init__(self, error: Exception):
        super().__init__(str(error))
        self.error = error


def _decoded(av, container, streams):
    """``(packet, frames)`` of ``container``'s ``streams``; a damaged frame or an unreadable file says so."""
    packets = container.demux(*streams)
    while True:
        try:
            packet = next(packets, None)
            if packet is None:
                return
            frames = packet.decode() if packet.stream.type == "video" else []
        except (av.FFmpegError, OSError) as error:
            raise VideoError(f"stopped part way: a damaged frame ({one_line(error)})") from None
        yield packet, frames


def _quarter_turns(av, source: Path) -> int:
    """Counterclockwise quarter turns that show the video upright (a phone's display matrix: -90 for a portrait
    video stored landscape), read from its first frame. The frames are turned so before detection (faces on
    their side are missed) and written upright, with no display matrix."""
    try:
        with av.open(str(source)) as container:
            for frame in container.decode(video=0):
                return round(frame.rotation / 90) % 4
    except av.FFmpegError:
        pass  # the main pass says what is wrong with the file
    return 0


def _transcode(av, container, video_in, audio_in, out, restore_frames: RestoreFrames, frames_per_call: int,
               turns: int, on_frames: Callable[[int], None] | None):
    import numpy as np

    width, height = video_in.codec_context.width, video_in.codec_context.height
    if turns % 2:
        width, height = height, width
    video_out = out.add_stream("libx264", rate=video_in.average_rate or 25)
    video_out.width, video_out.height = width, height
    # 4:2:0 needs even sides; an odd-sized video keeps full chroma instead of losing a row or column
    video_out.pix_fmt = "yuv420p" if width % 2 == 0 and height % 2 == 0 else "yuv444p"
    video_out.time_base = video_in.time_base  # the input's timestamps, unchanged
    video_out.options = {"crf": str(CRF)}
    audio_out = out.add_stream_from_template(audio_in) if audio_in is not None else None
    pending, counts = [], [0, 0, 0]  # frames, frames with faces, faces

    def encode(frames) -> None:
        pixels = np.rot90(np.stack([frame.to_ndarray(format="rgb24") for frame in frames]), turns, axes=(1, 2))
        try:
            restored, with_faces, faces = restore_frames(np.ascontiguousarray(pixels))
        except Exception as error:
            raise _RestoreFailed(error) from None
        counts[0], counts[1], counts[2] = counts[0] + len(frames), counts[1] + with_faces, counts[2] + faces
        if on_frames is not None:
            on_frames(counts[0])
        for like, rgb in zip(frames, restored):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
            frame.pts, frame.time_base = like.pts, like.time_base
            out.mux(video_out.encode(frame))

    streams = [video_in] + ([audio_in] if audio_in is not None else [])
    for packet, frames in _decoded(av, container, streams):
        if packet.stream is audio_in:
            if packet.dts is not None:  # (the demuxer's empty flush packet has none)
                packet.stream = audio_out
                out.mux(packet)
            continue
        for frame in frames:
            pending.append(frame)
            if len(pending) == frames_per_call:
                encode(pending)
                pending = []
    if pending:
        encode(pending)
    out.mux(video_out.encode(None))
    if counts[0] == 0:
        raise VideoError("holds no decodable frame", unreadable=True)
    return VideoOutcome(*counts)
