"""Detection previews: drawn on copies, out-of-range pixels clamped (not wrapped) to 8 bits."""

import torch

from comfyui_gfpgan.face_pipeline.faces import FaceBatch, FaceRecord, Landmarks
from comfyui_gfpgan.face_pipeline.preview import draw_faces


def test_out_of_range_pixels_are_clamped_not_wrapped():
    frames = torch.tensor([1.5, -0.5, 1.02]).view(1, 3, 1, 1).expand(1, 3, 64, 96).contiguous()
    preview = draw_faces(frames, FaceBatch([], [(64, 96)], 512))
    assert torch.equal(preview[0, :, 10, 10], torch.tensor([1.0, 0.0, 1.0]))


def test_faces_are_drawn_on_a_copy():
    frames = torch.full((2, 3, 64, 96), 0.5)
    points = torch.tensor([[40.0, 25], [56, 25], [48, 33], [42, 42], [54, 42]])
    face = FaceRecord(1, (30.0, 15.0, 66.0, 50.0), 0.99, Landmarks.from_tensor(points))
    preview = draw_faces(frames, FaceBatch([face], [(64, 96)] * 2, 512))
    assert torch.equal(frames, torch.full((2, 3, 64, 96), 0.5))
    assert torch.allclose(preview[0], frames[0], atol=0.5 / 255)  # nothing drawn on the frame without faces
    assert torch.allclose(preview[1, :, 40, 90], frames[1, :, 40, 90], atol=0.5 / 255)
    assert torch.equal(preview[1, :, 15, 40], torch.tensor([0.0, 1.0, 0.0]))  # the green box edge
