"""Video files through ``comfyui-gfpgan restore``: frames restored a chunk at a time, timing and audio kept."""

from __future__ import annotations

import sys
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from comfyui_gfpgan.jobs.cli import main
from comfyui_gfpgan.jobs.video_file import output_name

av = pytest.importorskip("av", reason='PyAV: pip install -e ".[video]"')

import video_clips  # noqa: E402  (tests/: the clip of the ComfyUI video test)


@pytest.fixture(scope="module")
def clip(shared_dir, tmp_path_factory) -> Path:
    """16 frames at 8 fps of the photo moving, 4 of them without a face, and a 440 Hz tone."""
    path = tmp_path_factory.mktemp("video_in") / "clip.mp4"
    video_clips.make(str(shared_dir / "images" / "grace_hopper.jpg"), str(path))
    return path


def _faceless_clip(path: Path, size=(96, 64), frames=6) -> Path:
    """A silent clip of flat grey frames: nothing to restore."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg4", rate=Fraction(12))
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        for i in range(frames):
            frame = np.full((size[1], size[0], 3), 60 + 10 * i, np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    return path


def _decoded(path: Path) -> tuple[np.ndarray, list[int], float]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [(frame.pts, frame.to_ndarray(format="rgb24")) for frame in container.decode(video=0)]
        return np.stack([f for _, f in frames]), [pts for pts, _ in frames], float(stream.average_rate)


def _audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams.audio[0]) if p.size]


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255**2 / max(mse, 1e-12))


def _args(inputs, out, model, detector, *extra) -> list[str]:
    return ["restore", *map(str, inputs), "-o", str(out), "--model", model, "--detector", str(detector), *extra]


def test_a_video_is_restored_with_its_frames_timing_and_audio_kept(clip, small_model, retinaface_weights, tmp_path,
                                                                   capsys):
    out = tmp_path / "out"
    assert main(_args([clip], out, small_model, retinaface_weights)) == 0
    captured = capsys.readouterr()
    faced = video_clips.FRAMES - len(video_clips.FACELESS)
    assert f"{clip}: {video_clips.FRAMES} frames, faces in {faced}" in captured.err
    assert "1 restored" in captured.out
    before, before_pts, fps = _decoded(clip)
    after, after_pts, out_fps = _decoded(out / "clip.mp4")
    assert after.shape == before.shape and after_pts == before_pts and out_fps == fps == video_clips.FPS
    assert _audio_packets(out / "clip.mp4") == _audio_packets(clip)  # copied, not re-encoded
    for index in range(video_clips.FRAMES):
        quality = _psnr(after[index], before[index])
        if index in video_clips.FACELESS:  # only the re-encoding touched it
            assert quality > 40, (index, quality)
        else:  # the seeded model's "restored" face is noise: far from the input
            assert quality < 30, (index, quality)
    assert not list(out.glob(".*partial*"))


def test_landmark_smoothing_reaches_the_video(clip, small_model, retinaface_weights, tmp_path, capsys):
    smoothed, raw = tmp_path / "smoothed", tmp_path / "raw"
    assert main(_args([clip], smoothed, small_model, retinaface_weights)) == 0
    assert main(_args([clip], raw, small_model, retinaface_weights, "--video-smoothing", "0")) == 0
    capsys.readouterr()
    assert not np.array_equal(_decoded(smoothed / "clip.mp4")[0], _decoded(raw / "clip.mp4")[0])
    assert main(_args([clip], tmp_path / "bad", small_model, retinaface_weights, "--video-smoothing", "1")) == 2
    assert "smoothing strength must lie in [0, 1)" in capsys.readouterr().err


def test_videos_without_faces_bad_videos_and_images_in_one_folder(clip, small_model, retinaface_weights, shared_dir,
                                                                  tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    _faceless_clip(inputs / "grey.mp4")
    _faceless_clip(inputs / "grey.avi")
    (inputs / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    cv2.imwrite(str(inputs / "photo.png"), cv2.imread(str(shared_dir / "images" / "grace_hopper.jpg")))
    out = tmp_path / "out"
    assert main(_args([inputs], out, small_model, retinaface_weights)) == 1
    captured = capsys.readouterr()
    assert (out / "grey.mp4").read_bytes() == (inputs / "grey.mp4").read_bytes()  # copied as it is
    assert f"{inputs / 'grey.mp4'}: no face found in 6 frames, written unchanged" in captured.err
    assert f"{inputs / 'grey.avi'}: no face found in 6 frames, re-encoded as grey.mkv" in captured.err
    assert _decoded(out / "grey.mkv")[0].shape == (6, 64, 96, 3)
    assert f"skipped {inputs / 'broken.mp4'}: not a readable video" in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["grey.mkv", "grey.mp4", "photo.png"]
    assert "1 restored, 2 unchanged, 1 unreadable" in captured.out and "Traceback" not in captured.err


def test_without_pyav_videos_fail_alone_with_the_install_hint(clip, small_model, retinaface_weights, shared_dir,
                                                              tmp_path, capsys, monkeypatch):
    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "clip.mp4").write_bytes(clip.read_bytes())
    cv2.imwrite(str(inputs / "photo.png"), cv2.imread(str(shared_dir / "images" / "grace_hopper.jpg")))
    monkeypatch.setitem(sys.modules, "av", None)
    assert main(_args([inputs], tmp_path / "out", small_model, retinaface_weights)) == 1
    captured = capsys.readouterr()
    # (the pack is on no package index: the hint names PyAV itself, and the extra for a checkout, quoted)
    assert f"failed {inputs / 'clip.mp4'}: restoring videos needs PyAV: pip install av (in a checkout of this pack: " \
        'pip install -e ".[video]")' in captured.err and "comfyui-gfpgan[" not in captured.err
    assert "1 restored, 1 failed" in captured.out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["photo.png"]


def test_a_phones_rotated_video_is_restored_upright(shared_dir, small_model, retinaface_weights, tmp_path, capsys):
    """Phones store portrait video landscape with a display matrix (-90: turn clockwise to show it); on its side a
    face is missed, so the frames are turned upright first, and written so."""
    photo = cv2.imread(str(shared_dir / "images" / "grace_hopper.jpg"))[:, :, ::-1]
    stored = np.ascontiguousarray(np.rot90(photo))  # as the sensor saw it
    clip = tmp_path / "portrait.mp4"
    with av.open(str(clip), mode="w") as container:
        stream = container.add_stream("libx264", rate=Fraction(8))
        stream.width, stream.height, stream.pix_fmt = stored.shape[1], stored.shape[0], "yuv420p"
        stream.set_display_rotation(-90)
        for _ in range(3):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(stored, format="rgb24")))
        container.mux(stream.encode(None))
    out = tmp_path / "out"
    assert main(_args([clip], out, small_model, retinaface_weights)) == 0
    assert f"{clip}: 3 frames, faces in 3" in capsys.readouterr().err
    frames, _, _ = _decoded(out / "portrait.mp4")
    assert frames.shape == (3, *photo.shape)
    with av.open(str(out / "portrait.mp4")) as container:
        assert next(container.decode(video=0)).rotation == 0
    below_the_face = slice(540, None)  # her uniform, outside where the face is pasted back: upright, as the photo
    assert _psnr(frames[0][below_the_face], photo[below_the_face]) > 30


def test_progress_follows_a_video_a_chunk_of_frames_at_a_time(clip, small_model, retinaface_weights, tmp_path,
                                                               monkeypatch, capsys):
    import comfyui_gfpgan.jobs.video_file as video_file
    from comfyui_gfpgan.jobs.cli import _Progress
    from comfyui_gfpgan.jobs.folder_job import FolderJob, JobSpec

    monkeypatch.setattr(video_file, "FRAMES_PER_CALL", 5)
    job = FolderJob(JobSpec(model=small_model, detector=str(retinaface_weights)))
    calls = []
    outcomes = list(job.restore_files([(clip, tmp_path / "clip.mp4")], on_video_frames=lambda *call: calls.append(call)))
    assert [o.status for o in outcomes] == ["restored"] and calls == [(clip, 5), (clip, 10), (clip, 15), (clip, 16)]
    progress = _Progress(1, interval=0)
    progress.clock = lambda: 102.0
    progress.file_done = progress.drawn = 100.0  # 2 s since the last file finished and the last redraw
    progress.video(clip, 10)
    assert capsys.readouterr().err.endswith("\rrestoring clip.mp4: 10 frames  5.00 frames/s")


def test_a_stream_the_output_container_cannot_hold_fails_that_video_in_one_line(small_model, retinaface_weights,
                                                                                tmp_path, capsys):
    inputs = tmp_path / "in"
    inputs.mkdir()
    odd = inputs / "pcm.mp4"  # Matroska inside, with 8-bit PCM audio, which the MP4 muxer refuses
    with av.open(str(odd), mode="w", format="matroska") as container:
        video = container.add_stream("mpeg4", rate=Fraction(12))
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        audio = container.add_stream("pcm_u8", rate=8000, layout="mono")
        for i in range(3):
            container.mux(video.encode(av.VideoFrame.from_ndarray(np.full((48, 64, 3), 90, np.uint8), format="rgb24")))
        container.mux(video.encode(None))
        samples = av.AudioFrame.from_ndarray(np.full((1, 800), 128, np.uint8), format="u8", layout="mono")
        samples.sample_rate, samples.pts = 8000, 0
        container.mux(audio.encode(samples))
        container.mux(audio.encode(None))
    _faceless_clip(inputs / "grey.mp4")
    out = tmp_path / "out"
    assert main(_args([inputs], out, small_model, retinaface_weights)) == 1
    captured = capsys.readouterr()
    line = next(line for line in captured.err.splitlines() if "pcm.mp4" in line)
    assert line.strip() == f"failed {odd}: stopped part way: a stream .mp4 cannot hold ('mp4' format does not " \
        "support 'pcm_u8' codec)"
    assert sorted(p.name for p in out.iterdir()) == ["grey.mp4"] and "Traceback" not in captured.err


def test_running_out_of_memory_fails_that_video_alone(clip, small_model, retinaface_weights, shared_dir, tmp_path,
                                                      capsys, monkeypatch):
    import comfyui_gfpgan.face_pipeline.pipeline as pipeline

    real = pipeline.restore_faces_in_images

    def out_of_memory(frames, *args, **kwargs):  # for the big clip only
        if frames.shape[-1] == 512:
            raise MemoryError("cannot allocate 16 frames")
        return real(frames, *args, **kwargs)

    inputs = tmp_path / "in"
    inputs.mkdir()
    (inputs / "clip.mp4").write_bytes(clip.read_bytes())
    _faceless_clip(inputs / "grey.mp4")
    monkeypatch.setattr(pipeline, "restore_faces_in_images", out_of_memory)
    assert main(_args([inputs], tmp_path / "out", small_model, retinaface_weights)) == 1
    captured = capsys.readouterr()
    assert f"failed {inputs / 'clip.mp4'}: cannot allocate 16 frames" in captured.err
    assert "1 unchanged, 1 failed" in captured.out and "Traceback" not in captured.err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["grey.mp4"]  # no partial file left


def test_output_names_keep_containers_that_take_any_codec():
    assert [output_name(Path(name)).name for name in ("a.mp4", "b.MOV", "c.mkv", "d.m4v", "e.avi", "f.webm")] == [
        "a.mp4", "b.MOV", "c.mkv", "d.m4v", "e.mkv", "f.mkv"]
