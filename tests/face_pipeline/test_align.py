"""Alignment against facexlib's own FaceRestoreHelper crop, and the affine warp against cv2."""

import cv2
import numpy as np
import pytest
import torch

from comfyui_gfpgan.face_pipeline.align import (
    CROP_BORDER_RGB,
    align_faces,
    estimate_similarity,
    invert_affine,
    warp_affine,
)
from comfyui_gfpgan.face_pipeline.detect import detect_faces, load_detector
from comfyui_gfpgan.face_pipeline.errors import FaceInputError
from comfyui_gfpgan.face_pipeline.faces import FaceBatch, FaceRecord, Landmarks


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def as_batch(rgb):
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255


@pytest.fixture(scope="module")
def detector(retinaface_weights):
    return load_detector(retinaface_weights)


@pytest.fixture()
def facexlib_helper(retinaface_weights, monkeypatch):
    """facexlib's FaceRestoreHelper built by its own __init__ (its FFHQ template, its settings), with its
    model factories swapped for our local RetinaFace weights, so nothing is downloaded."""
    import facexlib.utils.face_restoration_helper as helper_module
    from facexlib.detection.retinaface import RetinaFace
    from safetensors.torch import load_file

    def local_detector(*args, **kwargs):
        network = RetinaFace(network_name="mobile0.25", half=False, device="cpu")
        network.load_state_dict(load_file(str(retinaface_weights)), strict=True)
        return network.eval()

    monkeypatch.setattr(helper_module, "init_detection_model", local_detector)
    monkeypatch.setattr(helper_module, "init_parsing_model", lambda *args, **kwargs: None)
    # GFPGANer's settings
    return helper_module.FaceRestoreHelper(1, face_size=512, crop_ratio=(1, 1), det_model="retinaface_resnet50",
                                           save_ext="png", use_parse=True, device=torch.device("cpu"))


@pytest.mark.parametrize("photo", ["astronaut_rgb", "grace_hopper_rgb"])
def test_detect_and_align_match_facexlib(photo, request, detector, facexlib_helper):
    rgb = request.getfixturevalue(photo)
    facexlib_helper.read_image(np.ascontiguousarray(rgb[:, :, ::-1]))
    with torch.no_grad():
        assert facexlib_helper.get_face_landmarks_5(only_center_face=False, eye_dist_threshold=5) == 1
    facexlib_helper.align_warp_face()
    reference = facexlib_helper.cropped_faces[0][:, :, ::-1] / 255

    images = as_batch(rgb)
    faces, crops = align_faces(images, detect_faces(detector, images, working_size=0))
    assert crops.shape == (1, 3, 512, 512) and faces.faces[0].affine.shape == (2, 3)
    assert psnr(crops[0].permute(1, 2, 0).numpy(), reference) >= 50  # the issue asks 35; measured 59 (uint8 reference)
    # least squares vs facexlib's LMEDS fit: the same transform to a fraction of a pixel at the crop corners
    corners = np.array([[0, 0, 1], [511, 0, 1], [0, 511, 1], [511, 511, 1]], dtype=np.float64)
    ours = corners @ invert_affine(faces.faces[0].affine[None].double())[0].numpy().T
    theirs = corners @ cv2.invertAffineTransform(facexlib_helper.affine_matrices[0]).T
    assert np.abs(ours - theirs).max() < 1.0


def test_warp_matches_cv2_with_border():
    rng = np.random.default_rng(0)
    image = rng.random((70, 90, 3), dtype=np.float32)
    angle, scale = 0.3, 1.7
    matrix = np.array([[scale * np.cos(angle), -scale * np.sin(angle), -20.0], [scale * np.sin(angle), scale * np.cos(angle), 5.0]])
    tensor = torch.from_numpy(image).permute(2, 0, 1)[None]
    for flag, mode, tolerance in ((cv2.INTER_LINEAR, "bilinear", 5e-3), (cv2.INTER_CUBIC, "bicubic", 2e-2)):
        expected = cv2.warpAffine(image, matrix, (120, 100), flags=flag, borderMode=cv2.BORDER_CONSTANT,
                                  borderValue=(0.2, 0.4, 0.6))
        ours = warp_affine(tensor, torch.from_numpy(matrix)[None], (100, 120), (0.2, 0.4, 0.6), mode=mode)
        assert np.abs(ours[0].permute(1, 2, 0).numpy() - expected).max() < tolerance, mode


def test_warp_window_equals_crop_of_full_warp():
    image = torch.rand(2, 3, 40, 50)
    affines = torch.tensor([[[1.3, 0.2, 4.0], [-0.2, 1.3, -3.0]], [[0.8, 0.0, 10.0], [0.0, 0.8, 2.0]]], dtype=torch.float64)
    full = warp_affine(image, affines, (60, 70))
    window = warp_affine(image, affines, (20, 25), offsets=torch.tensor([[30.0, 10.0], [5.0, 40.0]]))
    assert torch.allclose(window[0], full[0, :, 10:30, 30:55], atol=1e-5)
    assert torch.allclose(window[1], full[1, :, 40:60, 5:30], atol=1e-5)


def test_one_image_many_affines_and_dtypes():
    image = torch.rand(1, 3, 40, 50)
    affines = torch.tensor([[[1.3, 0.2, 4.0], [-0.2, 1.3, -3.0]], [[0.8, 0.0, 10.0], [0.0, 0.8, 2.0]]])
    shared = warp_affine(image, affines, (30, 30), border_value=0.5)
    separate = warp_affine(image.expand(2, -1, -1, -1).clone(), affines, (30, 30), border_value=0.5)
    assert torch.allclose(shared, separate)
    # a half-precision frame keeps sub-pixel accuracy far from the origin (positions are computed in float32)
    big = torch.zeros(1, 1, 4000, 4000, dtype=torch.float16)
    big[..., 3900, 3901] = 1
    shift = torch.tensor([[[1.0, 0.0, -3895.0], [0.0, 1.0, -3895.0]]])  # pixel (3901, 3900) -> (6, 5)
    out = warp_affine(big, shift, (10, 10))
    assert out.dtype == torch.float16 and out[0, 0, 5, 6] == 1 and out.sum() == 1
    with pytest.raises(FaceInputError):
        warp_affine(torch.rand(3, 3, 8, 8), affines, (4, 4))


def test_similarity_recovers_a_known_transform_and_inverts():
    truth = torch.tensor([[[0.9, -0.3, 12.0], [0.3, 0.9, -4.0]]], dtype=torch.float64)
    points = torch.rand(1, 5, 2, dtype=torch.float64) * 100
    moved = (points @ truth[0, :, :2].T + truth[0, :, 2])[0]
    assert torch.allclose(estimate_similarity(points, moved), truth, atol=1e-9)
    inverse = invert_affine(truth)
    assert torch.allclose(torch.from_numpy(cv2.invertAffineTransform(truth[0].numpy())), inverse[0], atol=1e-9)
    assert torch.allclose(invert_affine(inverse), truth, atol=1e-9)


def test_faces_outside_the_frame_get_the_gray_border(astronaut_rgb, detector):
    images = as_batch(astronaut_rgb)[:, :, 45:, 160:]
    faces = detect_faces(detector, images, threshold=0.9)
    _, crops = align_faces(images, faces)
    corner = crops[0, :, :5, :5].reshape(3, -1).mean(dim=1)
    assert torch.allclose(corner, torch.tensor(CROP_BORDER_RGB), atol=1e-4)


def shifted(face: FaceRecord, index: int, dx: float) -> FaceRecord:
    points = face.landmarks.as_tensor() + torch.tensor([dx, 0.0])
    box = (face.box[0] + dx, face.box[1], face.box[2] + dx, face.box[3])
    return FaceRecord(index, box, face.score, Landmarks.from_tensor(points))


def test_batch_with_different_face_counts(astronaut_rgb, detector):
    """Frame 0: no face; frame 1: the photo; frame 2: the photo twice, side by side (crops follow the faces)."""
    photo = as_batch(astronaut_rgb)
    frames = torch.zeros(3, 3, 512, 1024)
    frames[1, :, :, :512] = photo[0]
    frames[2, :, :, :512] = photo[0]
    frames[2, :, :, 512:] = photo[0]
    before = frames.clone()
    single = detect_faces(detector, photo).faces[0]
    faces = FaceBatch([shifted(single, 1, 0), shifted(single, 2, 0), shifted(single, 2, 512)], [(512, 1024)] * 3)
    aligned, crops = align_faces(frames, faces, crop_size=256)
    assert torch.equal(frames, before)  # inputs untouched
    assert crops.shape == (3, 3, 256, 256) and aligned.crop_size == 256
    assert [f.image_index for f in aligned.faces] == [1, 2, 2]
    assert torch.allclose(crops[0], crops[1], atol=1e-5) and torch.allclose(crops[1], crops[2], atol=1e-4)
    _, alone = align_faces(photo, FaceBatch([single], [(512, 512)]), crop_size=256)
    assert torch.allclose(crops[0], alone[0], atol=1e-4)
    first, second = aligned.faces[1].affine, aligned.faces[2].affine
    assert float(second[0, 2]) == pytest.approx(float(first[0, 2] - 512 * first[0, 0]), abs=1e-3)


def test_no_faces_and_bad_inputs():
    faces, crops = align_faces(torch.rand(2, 3, 32, 32), FaceBatch([], [(32, 32)] * 2))
    assert crops.shape == (0, 3, 512, 512) and len(faces) == 0 and faces.image_sizes == [(32, 32)] * 2
    with pytest.raises(FaceInputError):
        align_faces(torch.rand(1, 3, 32, 32), FaceBatch([], [(32, 32)] * 2))
    with pytest.raises(FaceInputError):
        align_faces(torch.rand(1, 4, 32, 32), FaceBatch([], [(32, 32)]))
