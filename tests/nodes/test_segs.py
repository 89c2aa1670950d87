"""FACES <-> Impact Pack SEGS nodes, on a real two-face frame (no ComfyUI or Impact Pack needed)."""

from __future__ import annotations

import numpy as np
import pytest
import torch


@pytest.fixture(scope="module")
def two_faces(comfy_nodes, astronaut_rgb, grace_hopper_rgb):
    """A 512x1024 frame (astronaut | Grace Hopper), its faces and crops from Detect Faces."""
    detector = comfy_nodes.LoadFaceDetector.execute("retinaface_mobilenet0.25.safetensors").result[0]
    frame = np.concatenate([astronaut_rgb, grace_hopper_rgb[:512]], axis=1)
    image = torch.from_numpy(frame)[None].float() / 255
    faces, crops, _ = comfy_nodes.DetectFaces.execute(image, detector, 0.97, "all", 1, 0, 0, 640).result
    assert len(faces) == 2
    return image, faces, crops


def test_faces_to_segs_describes_each_face(comfy_nodes, two_faces):
    image, faces, _ = two_faces
    (height, width), segs = comfy_nodes.FacesToSEGS.execute(image, faces, 3.0, 0).result[0]
    assert (height, width) == (512, 1024) and len(segs) == 2
    for seg, face in zip(segs, faces.faces):
        x1, y1, x2, y2 = seg.bbox
        assert all(isinstance(v, int) for v in seg.bbox + seg.crop_region)
        assert abs(x1 - face.box[0]) <= 1 and abs(y2 - face.box[3]) <= 1
        cx1, cy1, cx2, cy2 = seg.crop_region
        assert cx1 <= x1 < x2 <= cx2 and cy1 <= y1 < y2 <= cy2 and cx2 - cx1 > x2 - x1  # grown, clipped
        assert 0 <= cx1 and cx2 <= width and 0 <= cy1 and cy2 <= height
        assert seg.cropped_mask.dtype == np.float32 and seg.cropped_mask.shape == (cy2 - cy1, cx2 - cx1)
        assert seg.cropped_mask.sum() == (x2 - x1) * (y2 - y1)  # the mask is the face box
        assert torch.equal(seg.cropped_image, image[:, cy1:cy2, cx1:cx2, :3])
        assert seg.label == "face" and seg.confidence == pytest.approx(face.score)
        assert seg.control_net_wrapper is None


def test_segs_choose_which_faces_are_kept(comfy_nodes, two_faces):
    image, faces, crops = two_faces
    shape, segs = comfy_nodes.FacesToSEGS.execute(image, faces, 1.5, 0).result[0]
    kept, kept_crops = comfy_nodes.FilterFacesBySEGS.execute(faces, crops, (shape, segs[1:])).result
    assert kept.faces == [faces.faces[1]] and torch.equal(kept_crops, crops[1:])
    nowhere = segs[0]._replace(bbox=[0, 0, 10, 10])
    kept, kept_crops = comfy_nodes.FilterFacesBySEGS.execute(faces, crops, (shape, [nowhere])).result
    assert len(kept) == 0 and kept_crops.shape == (0, 512, 512, 3)
    assert len(faces) == 2, "the input FACES were modified"


def test_segs_nodes_reject_mismatches(comfy_nodes, two_faces):
    image, faces, crops = two_faces
    with pytest.raises(ValueError, match="does not match"):
        comfy_nodes.FacesToSEGS.execute(image[:, :, :512], faces, 3.0, 0)
    with pytest.raises(ValueError, match="outside the batch"):
        comfy_nodes.FacesToSEGS.execute(image, faces, 3.0, 1)
    with pytest.raises(ValueError, match="SEGS are for"):
        comfy_nodes.FilterFacesBySEGS.execute(faces, crops, ((256, 256), []))
    with pytest.raises(ValueError, match="2 faces but 1 face crops"):
        comfy_nodes.FilterFacesBySEGS.execute(faces, crops[:1], ((512, 1024), []))
