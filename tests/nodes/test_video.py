"""A video-like batch through the modular nodes: more frames than one detection chunk, some without faces."""

from __future__ import annotations

import pytest
import torch

from node_info import progress_recorder

pytestmark = pytest.mark.slow  # detection on a 20-frame batch, twice, and on 3 single frames

FRAMES = 20  # more than the 16 frames Detect Faces sends to the device at once


@pytest.fixture(scope="module")
def video(comfy_nodes, astronaut_rgb):
    """Frames 0, 3, 6, ... are blank; the others show the astronaut, shifted a little more each frame."""
    photo = torch.from_numpy(astronaut_rgb).float() / 255
    frames = torch.stack([
        torch.zeros_like(photo) if i % 3 == 0 else torch.roll(photo, shifts=2 * i, dims=1) for i in range(FRAMES)
    ])
    detector = comfy_nodes.LoadFaceDetector.execute("retinaface_mobilenet0.25.safetensors").result[0]
    return frames, detector


def test_detect_faces_keeps_frame_indices_across_chunks(comfy_nodes, video):
    import comfy.utils

    frames, detector = video
    before = frames.clone()
    updates = progress_recorder()
    faces, crops, preview = comfy_nodes.DetectFaces.execute(frames, detector, 0.97, "all", 1, 0, 0, 640).result
    comfy.utils.set_progress_bar_global_hook(None)
    assert updates[-1] == (FRAMES, FRAMES)
    with_faces = [i for i in range(FRAMES) if i % 3]
    assert [face.image_index for face in faces.faces] == with_faces
    assert crops.shape == (len(with_faces), 512, 512, 3) and preview.shape == frames.shape
    for frame in (1, 17, 19):  # in the first chunk and in the second one
        single_faces, single_crop, _ = comfy_nodes.DetectFaces.execute(
            frames[frame : frame + 1], detector, 0.97, "all", 1, 0, 0, 640
        ).result
        index = with_faces.index(frame)
        assert faces.faces[index].box == pytest.approx(single_faces.faces[0].box, abs=1e-3)
        assert torch.allclose(crops[index], single_crop[0], atol=1e-4)
    assert torch.equal(frames, before)


def test_paste_leaves_faceless_frames_untouched(comfy_nodes, video):
    frames, detector = video
    faces, crops, _ = comfy_nodes.DetectFaces.execute(frames, detector, 0.97, "all", 1, 0, 0, 640).result
    restored = 1 - crops  # a stand-in restorer whose faces are easy to spot
    pasted, masks = comfy_nodes.PasteFaces.execute(frames, faces, restored, 1.0, "feathered", 1.0, False).result
    assert pasted.shape == frames.shape and masks.shape == frames.shape[:3]
    for i in range(FRAMES):
        if i % 3 == 0:
            assert torch.equal(pasted[i], frames[i]) and masks[i].max() == 0
        else:
            changed = (pasted[i] - frames[i]).abs().amax(-1) > 0.1
            box = faces.faces[[f.image_index for f in faces.faces].index(i)].box
            ys, xs = torch.nonzero(changed, as_tuple=True)
            assert changed.float().mean() > 0.02 and masks[i].max() > 0.99
            # the change sits on the face (box centre inside the changed region's bounds)
            assert xs.min() < (box[0] + box[2]) / 2 < xs.max() and ys.min() < (box[1] + box[3]) / 2 < ys.max()
