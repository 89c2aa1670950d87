"""Alignment against facexlib's own crop, and the affine warp against cv2."""

import cv2
import numpy as np
import pytest
import torch

from comfyui_gfpgan.face_pipeline.align import (
    CROP_BORDER_RGB,
    FFHQ_TEMPLATE_512,
    align_faces,
    estimate_similarity,
    invert_affine,
    warp_affine,
)
from comfyui_gfpgan.face_pipeline.detect import detect_faces, load_detector
from comfyui_gfpgan.face_pipeline.faces import FaceBatch


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def facexlib_crop(bgr: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """facexlib FaceRestoreHelper.align_warp_face, run without any model construction or download."""
    from facexlib.utils.face_restoration_helper import FaceRestoreHelper

    helper = FaceRestoreHelper.__new__(FaceRestoreHelper)
    helper.face_template = FFHQ_TEMPLATE_512.numpy()
    helper.face_size = (512, 512)
    helper.input_img = bgr
    helper.all_landmarks_5 = [landmarks]
    helper.cropped_faces, helper.affine_matrices = [], []
    helper.pad_input_imgs = []
    helper.pad_blur = False
    helper.align_warp_face()
    return helper.cropped_faces[0]


@pytest.mark.parametrize("photo", ["astronaut_rgb", "grace_hopper_rgb"])
def test_crop_matches_facexlib(photo, request, retinaface_weights):
    rgb = request.getfixturevalue(photo)
    images = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
    faces = detect_faces(load_detector(retinaface_weights), images)
    faces, crops = align_faces(images, faces)
    assert crops.shape == (1, 3, 512, 512) and faces.faces[0].affine.shape == (2, 3)
    reference = facexlib_crop(np.ascontiguousarray(rgb[:, :, ::-1]), faces.faces[0].landmarks.as_tensor().numpy())
    ours = (crops[0].permute(1, 2, 0).numpy()[:, :, ::-1] * 255).round()
    assert psnr(ours / 255, reference / 255) >= 35


def test_warp_matches_cv2_with_border():
    rng = np.random.default_rng(0)
    image = rng.random((70, 90, 3), dtype=np.float32)
    angle, scale = 0.3, 1.7
    matrix = np.array([[scale * np.cos(angle), -scale * np.sin(angle), -20.0], [scale * np.sin(angle), scale * np.cos(angle), 5.0]])
    expected = cv2.warpAffine(image, matrix, (120, 100), borderMode=cv2.BORDER_CONSTANT, borderValue=(0.2, 0.4, 0.6))
    ours = warp_affine(torch.from_numpy(image).permute(2, 0, 1)[None], torch.from_numpy(matrix)[None], (100, 120), (0.2, 0.4, 0.6))
    assert np.abs(ours[0].permute(1, 2, 0).numpy() - expected).max() < 5e-3


def test_warp_window_equals_crop_of_full_warp():
    image = torch.rand(2, 3, 40, 50)
    affines = torch.tensor([[[1.3, 0.2, 4.0], [-0.2, 1.3, -3.0]], [[0.8, 0.0, 10.0], [0.0, 0.8, 2.0]]], dtype=torch.float64)
    full = warp_affine(image, affines, (60, 70))
    window = warp_affine(image, affines, (20, 25), offsets=torch.tensor([[30.0, 10.0], [5.0, 40.0]]))
    assert torch.allclose(window[0], full[0, :, 10:30, 30:55], atol=1e-5)
    assert torch.allclose(window[1], full[1, :, 40:60, 5:30], atol=1e-5)


def test_similarity_recovers_a_known_transform_and_inverts():
    truth = torch.tensor([[[0.9, -0.3, 12.0], [0.3, 0.9, -4.0]]], dtype=torch.float64)
    points = torch.rand(1, 5, 2, dtype=torch.float64) * 100
    moved = (points @ truth[0, :, :2].T + truth[0, :, 2])[0]
    assert torch.allclose(estimate_similarity(points, moved), truth, atol=1e-9)
    round_trip = invert_affine(invert_affine(truth))
    assert torch.allclose(round_trip, truth, atol=1e-9)


def test_faces_outside_the_frame_get_the_gray_border(astronaut_rgb, retinaface_weights):
    images = torch.from_numpy(astronaut_rgb).permute(2, 0, 1)[None].float()[:, :, 45:, 160:] / 255
    faces = detect_faces(load_detector(retinaface_weights), images, threshold=0.9)
    _, crops = align_faces(images, faces)
    corner = crops[0, :, :5, :5].reshape(3, -1).mean(dim=1)
    assert torch.allclose(corner, torch.tensor(CROP_BORDER_RGB), atol=1e-4)


def test_no_faces_gives_empty_crops():
    faces, crops = align_faces(torch.rand(2, 3, 32, 32), FaceBatch([], [(32, 32)] * 2))
    assert crops.shape == (0, 3, 512, 512) and len(faces) == 0
