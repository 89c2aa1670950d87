"""Make and read the short test clip of the video end-to-end test, with PyAV (which comes with ComfyUI).

Run by ComfyUI's Python (the test's own may lack PyAV, so it is imported only there):

    python tests/video_clips.py make PHOTO OUT.mp4    # the photo shifted a little per frame, some frames
                                                      # without a face, a 440 Hz tone as its audio track
    python tests/video_clips.py read VIDEO OUT.npz    # frames (uint8 RGB), fps, audio samples and rate
"""

from __future__ import annotations

import sys
from fractions import Fraction

import numpy as np

FRAMES = 16
FPS = 8
FACELESS = (2, 6, 10, 14)  # the photo's lower half and its mirror image: her suit and the flag, no face
TONE_HZ = 440
SAMPLE_RATE = 44100


def clip_frames(photo: np.ndarray) -> np.ndarray:
    """``[FRAMES, H, W, 3]`` uint8 RGB: the photo moved 3 px right per frame, or no face at ``FACELESS``."""
    half = photo[photo.shape[0] // 2 :]
    faceless = np.concatenate([half, half[::-1]])
    return np.stack([faceless if i in FACELESS else np.roll(photo, 3 * i, axis=1) for i in range(FRAMES)])


def make(photo_path: str, out_path: str) -> None:
    import av
    import cv2

    photo = cv2.imread(photo_path)[:, :, ::-1]
    with av.open(out_path, mode="w") as container:
        video = container.add_stream("h264", rate=FPS)
        video.width, video.height, video.pix_fmt = photo.shape[1], photo.shape[0], "yuv420p"
        video.options = {"crf": "12"}  # close to the frames, so the restore's change is what the test sees
        audio = container.add_stream("aac", rate=SAMPLE_RATE)
        for frame in clip_frames(photo):
            container.mux(video.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(video.encode(None))
        seconds = FRAMES / FPS
        t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
        tone = (0.3 * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)
        for start in range(0, len(tone), 1024):
            samples = tone[start : start + 1024][None]
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = SAMPLE_RATE, start, Fraction(1, SAMPLE_RATE)
            container.mux(audio.encode(frame))
        container.mux(audio.encode(None))


def read(video_path: str, out_path: str) -> None:
    import av

    with av.open(video_path) as container:
        stream = container.streams.video[0]
        fps = float(stream.average_rate)
        frames = np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])
    audio, rate = np.zeros(0, np.float32), 0
    with av.open(video_path) as container:
        if container.streams.audio:
            rate = container.streams.audio[0].sample_rate
            chunks = [frame.to_ndarray().astype(np.float32).mean(axis=0) for frame in container.decode(audio=0)]
            audio = np.concatenate(chunks) if chunks else audio
    np.savez(out_path, frames=frames, fps=fps, audio=audio, sample_rate=rate)


if __name__ == "__main__":
    {"make": make, "read": read}[sys.argv[1]](*sys.argv[2:])
