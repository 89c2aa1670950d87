"""The streaming restorer over in-memory frames: each frame as restored alone, batching, stopping, errors."""

import threading
import time

import numpy as np
import pytest
import torch

from comfyui_gfpgan.face_pipeline.aligned import restore_aligned_crops
from comfyui_gfpgan.face_pipeline.detect import load_detector
from comfyui_gfpgan.face_pipeline.errors import FaceInputError
from comfyui_gfpgan.face_pipeline.pipeline import (DetectSettings, PasteSettings, RestoreSettings,
                                                  restore_faces_in_images)
from comfyui_gfpgan.face_pipeline.stream import Frame, restore_stream

from factories import SeededNoiseRestorer, seeded_clean_network


def to_frame(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255


@pytest.fixture(scope="module")
def detector(retinaface_weights):
    return load_detector(retinaface_weights)


@pytest.fixture(scope="module")
def frames(astronaut_rgb, grace_hopper_rgb) -> list[torch.Tensor]:
    """One face, two faces, one face, none: in this order a 2-face batch splits the pair's faces."""
    pair = np.full((600, 1150, 3), 128, np.uint8)
    pair[:512, :512], pair[:, 600:1112] = astronaut_rgb, grace_hopper_rgb
    return [to_frame(astronaut_rgb), to_frame(pair), to_frame(grace_hopper_rgb), torch.full((1, 3, 64, 80), 0.4)]


def stream(frames, restorer, detector, workers=1, **options):
    """``restore_stream`` over in-memory frames; (index, result) in completion order."""
    return list(restore_stream(range(len(frames)), lambda i: Frame(frames[i]), lambda result: (result.source, result),
                               restorer, detector, workers=workers, **options))


def test_each_frame_comes_out_as_restored_alone_though_its_faces_share_calls(frames, detector):
    restorer = SeededNoiseRestorer()
    settings = RestoreSettings(noise="seeded", seed=3, chunk_size=2)
    results = dict(stream(frames, restorer, detector, restore=settings))
    # one loader: frames arrive in order, so the pair's first face shares a call with the astronaut, its second
    # with Grace Hopper (drawing seed 3 + 1 there, as alone), and the faceless frame needs no call
    assert restorer.batches == [2, 2]
    restorer.batches.clear()
    for index, frame in enumerate(frames):
        alone = restore_faces_in_images(frame, restorer, detector, restore=settings)
        result = results[index]
        assert result.faces == len(alone.faces) == [1, 2, 1, 0][index] and result.error is None
        if result.faces:
            assert torch.equal(result.image, alone.images), index
        else:
            assert result.image is None  # nothing restored: the caller keeps the frame as it is
    assert restorer.batches == [1, 2, 1]


def test_faces_of_a_frame_keep_their_seeds_whatever_the_chunk(frames, detector):
    restorer = SeededNoiseRestorer()
    runs = [dict(stream(frames, restorer, detector, workers=2, restore=RestoreSettings(noise="seeded", chunk_size=chunk)))
            for chunk in (1, 3)]
    for index in range(3):
        assert torch.equal(runs[0][index].image, runs[1][index].image)
    other_seed = dict(stream(frames[:1], restorer, detector, restore=RestoreSettings(noise="seeded", seed=1)))
    assert not torch.equal(other_seed[0].image, runs[0][0].image)


@pytest.mark.slow
def test_a_real_network_batched_across_frames_differs_only_by_float_rounding(frames, detector):
    network = seeded_clean_network(3, out_size=128, num_style_feat=64, channel_multiplier=1, num_mlp=2, narrow=0.25)
    settings = RestoreSettings(noise="seeded", seed=3, chunk_size=2)
    results = dict(stream(frames, network, detector, restore=settings))
    for index, frame in enumerate(frames[:3]):
        alone = restore_faces_in_images(frame, network, detector, restore=settings)
        # fp32 convolutions sum in another order for another batch size: ~1e-6, not a different face
        assert torch.allclose(results[index].image, alone.images, atol=1e-5), index


@pytest.fixture
def detector_calls(detector, monkeypatch) -> list[tuple[int, ...]]:
    """The shape of the frames of each ``detector.detect`` call (what every detector implements). The first call
    waits a moment, as a slow detector would, so the loaders have the next images waiting when it returns."""
    calls, real = [], detector.detect

    def detect(images, *args, **kwargs):
        calls.append(tuple(images.shape))
        if len(calls) == 1:
            time.sleep(0.3)
        return real(images, *args, **kwargs)

    monkeypatch.setattr(detector, "detect", detect)
    return calls


@pytest.fixture
def batch_invariant_convolutions(monkeypatch):
    """CPU convolutions without oneDNN, whose kernels for a batch of frames round otherwise than for one frame
    (detector features ~5e-6 apart): so a shared detector call must give exactly the faces of each image alone."""
    monkeypatch.setattr(torch.backends.mkldnn, "enabled", False)


def variants(rgb: np.ndarray, count: int) -> list[torch.Tensor]:
    """``count`` frames of one size with the face in other places and lights: shifted, mirrored, dimmed."""
    frame = to_frame(rgb)
    return [(frame.roll(7 * index, dims=-1) if index % 2 else frame.flip(-1).roll(5 * index, dims=-2))
            * (1 - 0.05 * index) for index in range(count)]


def assert_as_restored_alone(results: dict, frames, restorer, detector, settings, detect=DetectSettings()):
    """Each of ``results`` (index -> result) is what ``frames[index]`` gives through the pipeline alone."""
    for index, result in results.items():
        alone = restore_faces_in_images(frames[index], restorer, detector, restore=settings, detect=detect)
        assert result.error is None and result.faces == len(alone.faces), index
        assert torch.equal(result.image, alone.images) if result.faces else result.image is None, index


def test_loaded_images_of_one_size_share_a_detector_call_and_get_the_faces_found_alone(
        astronaut_rgb, detector, detector_calls, batch_invariant_convolutions):
    frames = variants(astronaut_rgb, 8)
    restorer, settings = SeededNoiseRestorer(), RestoreSettings(noise="seeded", seed=3, chunk_size=2)
    results = dict(stream(frames, restorer, detector, workers=4, detect_batch=4, restore=settings))
    batches = [shape[0] for shape in detector_calls]
    assert sum(batches) == len(frames) and max(batches) == 4 and len(batches) < len(frames), batches
    detector_calls.clear()
    assert_as_restored_alone(results, frames, restorer, detector, settings)
    assert [shape[0] for shape in detector_calls] == [1] * len(frames)
    assert all(results[index].faces == 1 for index in range(len(frames)))


def test_on_the_cpu_each_image_has_a_detector_call_of_its_own_by_default(astronaut_rgb, detector, detector_calls):
    """A shared call rounds otherwise on the CPU: by default there, files stay byte-identical to images alone."""
    frames = variants(astronaut_rgb, 6)
    restorer, settings = SeededNoiseRestorer(), RestoreSettings(noise="seeded")
    results = dict(stream(frames, restorer, detector, workers=4, restore=settings))
    assert [shape[0] for shape in detector_calls] == [1] * len(frames)
    assert_as_restored_alone(results, frames, restorer, detector, settings)


def test_frames_of_other_sizes_or_channels_go_to_other_detector_calls(
        astronaut_rgb, grace_hopper_rgb, detector, detector_calls, batch_invariant_convolutions):
    astronauts, graces = variants(astronaut_rgb, 4), variants(grace_hopper_rgb, 4)
    frames = [frame for pair in zip(astronauts, graces) for frame in pair]  # no two neighbours of one size
    frames.insert(3, frames[0].mean(dim=1, keepdim=True))  # gray: the astronauts' size, one channel
    restorer, settings = SeededNoiseRestorer(), RestoreSettings(noise="seeded")
    results = dict(stream(frames, restorer, detector, workers=4, detect_batch=4, restore=settings))
    assert sorted(shape[-2:] for shape in detector_calls for _ in range(shape[0])) == sorted(
        tuple(frame.shape[-2:]) for frame in frames)
    assert max(shape[0] for shape in detector_calls) > 1, detector_calls  # those of one size and layout still share
    assert_as_restored_alone(results, frames, restorer, detector, settings)


def test_an_image_that_fails_in_a_shared_detector_call_fails_alone(astronaut_rgb, detector, detector_calls,
                                                                   batch_invariant_convolutions):
    frames = variants(astronaut_rgb, 6)
    frames[2] = frames[2].clone()
    frames[2][:, :, :4, :4] = torch.tensor([1.0, 0.0, 1.0]).view(1, 3, 1, 1)  # a magenta corner: refused below
    frames[4] = torch.zeros(1, 2, 512, 512)  # two channels: refused before detection
    refused, real = [], detector.detect

    def refuse_magenta(images, *args, **kwargs):
        if bool(((images[:, 0, :4, :4] == 1) & (images[:, 1, :4, :4] == 0) & (images[:, 2, :4, :4] == 1)).any()):
            refused.append(images.shape[0])
            raise MemoryError("out of memory for a magenta frame")
        return real(images, *args, **kwargs)

    def load(index):
        if index == 5:
            raise OSError("unreadable")
        return Frame(frames[index])

    detector.detect = refuse_magenta  # (within detector_calls' monkeypatch, which puts the real one back)
    restorer, settings = SeededNoiseRestorer(), RestoreSettings(noise="seeded")
    results = dict(restore_stream(range(6), load, lambda result: (result.source, result), restorer, detector,
                                  workers=4, detect_batch=4, restore=settings))
    assert str(results[2].error) == "out of memory for a magenta frame"
    assert "1 (gray), 3 (RGB) or 4 (RGBA) channels" in str(results[4].error)
    assert str(results[5].error) == "unreadable" and results[5].frame is None
    assert max(refused) > 1 and refused[-1] == 1, refused  # refused in a shared call, then on its own
    # the images that shared the refused call were detected again, each on its own: as alone
    assert_as_restored_alone({index: results[index] for index in (0, 1, 3)}, frames, restorer, detector, settings)


def test_images_sharing_a_detector_call_are_never_smoothed_as_a_video(astronaut_rgb, detector, detector_calls,
                                                                       batch_invariant_convolutions):
    frames = [to_frame(astronaut_rgb).roll(6 * index, dims=-1) for index in range(5)]  # one face, moving
    restorer, settings, detect = SeededNoiseRestorer(), RestoreSettings(noise="seeded"), DetectSettings(smoothing=0.8)
    results = dict(stream(frames, restorer, detector, workers=4, detect_batch=4, restore=settings, detect=detect))
    assert max(shape[0] for shape in detector_calls) > 1
    assert_as_restored_alone(results, frames, restorer, detector, settings, detect)  # alone: no frame to follow


def test_aligned_crops_come_back_as_restore_aligned_crops_returns_them():
    rng = torch.Generator().manual_seed(0)
    crops = [torch.rand(1, 3, 128, 128, generator=rng), torch.rand(1, 1, 96, 96, generator=rng),
             torch.rand(1, 4, 200, 200, generator=rng)]
    restorer = SeededNoiseRestorer()
    results = dict(stream(crops, restorer, None, aligned=True, restore=RestoreSettings(noise="seeded", chunk_size=3),
                          paste=PasteSettings(blend=0.5)))
    assert restorer.batches == [3]
    for index, crop in enumerate(crops):
        alone = restore_aligned_crops(restorer, crop, noise="seeded", blend=0.5)
        assert results[index].faces == 1 and torch.equal(results[index].image, alone)


def test_closing_the_stream_early_stops_its_threads(detector):
    loaded = []

    def load(index):
        loaded.append(index)
        return Frame(torch.full((1, 3, 48, 48), index / 1000))

    before = threading.active_count()
    results = restore_stream(range(1000), load, lambda result: result.source, SeededNoiseRestorer(), detector,
                             workers=2)
    first = [next(results) for _ in range(3)]
    results.close()
    assert len(first) == 3 and threading.active_count() == before
    assert len(loaded) < 30  # the loaders stopped a few frames ahead, not at the end of the inputs


def test_an_interrupt_in_a_worker_reaches_the_caller(detector):
    def load(index):
        if index == 5:
            raise KeyboardInterrupt
        return Frame(torch.zeros(1, 3, 32, 32))

    before = threading.active_count()
    with pytest.raises(KeyboardInterrupt):
        list(restore_stream(range(20), load, lambda result: result.source, SeededNoiseRestorer(), detector, workers=3))
    assert threading.active_count() == before


def test_an_image_that_cannot_be_processed_is_its_result():
    frames = [torch.zeros(1, 3, 32, 32), torch.zeros(1, 2, 32, 32), torch.zeros(1, 3, 0, 32)]
    results = dict(stream(frames, SeededNoiseRestorer(), None, aligned=True))
    assert results[0].error is None and results[0].faces == 1
    assert "1 (gray), 3 (RGB) or 4 (RGBA) channels" in str(results[1].error)
    assert "empty" in str(results[2].error)


@pytest.mark.parametrize("options,message", [
    (dict(workers=0), "workers must be a whole number >= 1"),
    (dict(detect_batch=0), "detect_batch must be a whole number >= 1"),
    (dict(aligned=False), "a face detector is needed"),
    (dict(aligned=True, paste=PasteSettings(mask="parsing")), "needs a face parser"),
])
def test_impossible_options_are_refused_before_anything_runs(options, message):
    with pytest.raises(FaceInputError, match=message):
        restore_stream([], lambda source: None, lambda result: result, SeededNoiseRestorer(), None,
                       **{"aligned": True, **options})


@pytest.mark.parametrize("allowed", [3, 0])
def test_a_system_that_starts_fewer_threads_runs_with_those_or_fails_in_one_line(allowed, monkeypatch):
    """A process limit on threads: "can't start new thread" once stopped the batch with a traceback."""
    real_start, started = threading.Thread.start, []

    def start(thread):
        if len(started) == allowed:
            raise RuntimeError("can't start new thread")
        started.append(thread)
        real_start(thread)

    monkeypatch.setattr(threading.Thread, "start", start)
    frames = [torch.full((1, 3, 32, 32), index / 10) for index in range(6)]
    results = restore_stream(range(6), lambda i: Frame(frames[i]), lambda result: result.source, SeededNoiseRestorer(),
                             None, aligned=True, workers=4)
    if allowed:  # a saver, a loader and a saver started: one loader, two savers carry the stream
        assert sorted(results) == list(range(6))
        assert not any(thread.is_alive() for thread in started)
    else:
        with pytest.raises(FaceInputError, match=r"^could not start the stream's threads \(can't start new thread\)"):
            list(results)
