"""Real RetinaFace detection on the shared photos, parity with facexlib, selection, smoothing, bad inputs."""

import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from comfyui_gfpgan.face_pipeline.detect import (
    FACE_ORDERS,
    FaceModelError,
    detect_faces,
    load_detector,
    parse_face_indices,
    select_faces,
    smooth_landmarks,
    working_scale,
)
from comfyui_gfpgan.face_pipeline.errors import FaceInputError
from comfyui_gfpgan.face_pipeline.faces import LANDMARK_NAMES, FaceBatch, FaceRecord, Landmarks
from comfyui_gfpgan.face_detectors.interface import nms_per_image as _nms
from comfyui_gfpgan.face_detectors.retinaface import _priors, backbone_from_keys
from comfyui_gfpgan.face_detectors.retinaface_net import RetinaFaceNet


def as_batch(rgb):
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255


def readme_truth(shared_dir):
    """Boxes and landmarks the shared README lists for each photo."""
    text = (shared_dir / "README.md").read_text()
    truth = {}
    for name in ("astronaut.png", "grace_hopper.jpg"):
        row = next(line for line in text.splitlines() if line.startswith(f"| {name}"))
        box = re.search(r"box \(([^)]*)\)", row).group(1)
        points = re.findall(r"(?:eye|nose|mouth) \(([^)]*)\)", row)
        truth[name] = (
            [float(v) for v in box.split(",")],
            [[float(v) for v in p.split(",")] for p in points] or None,
        )
    return truth


@pytest.fixture(scope="module")
def detector(retinaface_weights):
    return load_detector(retinaface_weights)


@pytest.fixture(scope="module")
def facexlib_detector(retinaface_weights):
    """facexlib's own RetinaFace class with the same local weights (its download path never runs)."""
    from facexlib.detection.retinaface import RetinaFace
    from safetensors.torch import load_file

    network = RetinaFace(network_name="mobile0.25", half=False, device="cpu")
    network.load_state_dict(load_file(str(retinaface_weights)), strict=True)
    return network.eval()


def assert_matches(face, box, points, scale=1.0, offset=(0.0, 0.0), tolerance=2.0):
    shift = torch.tensor(offset)
    expected_box = torch.tensor(box) * scale + shift.repeat(2)
    assert (torch.tensor(face.box) - expected_box).abs().max() <= tolerance, (face.box, expected_box)
    if points:
        # the README lists eyes and mouth corners in image order, as LANDMARK_NAMES does
        expected = torch.tensor(points) * scale + shift
        assert (face.landmarks.as_tensor() - expected).abs().max() <= tolerance, (face.landmarks, expected)


def as_rows(faces):
    """facexlib's detect_faces layout: x1 y1 x2 y2 score, then five (x, y) landmarks."""
    return np.array([[*f.box, f.score, *f.landmarks.as_tensor().flatten().tolist()] for f in faces.faces]).reshape(-1, 15)


def test_full_size_detection_matches_readme(detector, shared_dir, astronaut_rgb, grace_hopper_rgb):
    truth = readme_truth(shared_dir)
    for name, rgb in (("astronaut.png", astronaut_rgb), ("grace_hopper.jpg", grace_hopper_rgb)):
        faces = detect_faces(detector, as_batch(rgb), working_size=0)
        assert len(faces) == 1 and faces.faces[0].score > 0.99
        assert faces.image_sizes == [rgb.shape[:2]] and faces.faces[0].affine is None
        assert_matches(faces.faces[0], *truth[name])


@pytest.mark.parametrize("threshold", [0.97, 0.02])  # 0.02 keeps weak candidates, so NMS has work to do
def test_detection_equals_facexlib(detector, facexlib_detector, astronaut_rgb, grace_hopper_rgb, threshold):
    for rgb in (astronaut_rgb, grace_hopper_rgb):
        with torch.no_grad():
            expected = facexlib_detector.detect_faces(np.ascontiguousarray(rgb[:, :, ::-1]), threshold)
        ours = as_rows(detect_faces(detector, as_batch(rgb), threshold=threshold, working_size=0))
        assert ours.shape == expected.shape and len(ours) >= 1
        np.testing.assert_allclose(ours, expected, atol=1e-3)


def test_nms_matches_facexlib():
    from facexlib.detection.retinaface_utils import py_cpu_nms

    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 60, (300, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(4, 30, (300, 2))], axis=1).astype(np.float32)
    scores = rng.uniform(0, 1, 300).astype(np.float32)
    order = np.argsort(-scores)
    boxes, scores = boxes[order], scores[order]
    for threshold in (0.2, 0.4, 0.6):
        expected = py_cpu_nms(np.hstack([boxes, scores[:, None]]), threshold)
        ours = _nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.zeros(300, dtype=torch.long), threshold)
        assert ours.tolist() == list(expected)


def test_working_resolution_maps_back_to_full_size(detector, shared_dir, astronaut_rgb):
    box, points = readme_truth(shared_dir)["astronaut.png"]
    big = F.interpolate(as_batch(astronaut_rgb), scale_factor=2.5, mode="bicubic", align_corners=False).clamp(0, 1)
    assert working_scale(*big.shape[-2:], 640) == pytest.approx(640 / 1280)
    faces = detect_faces(detector, big, working_size=640)
    assert len(faces) == 1 and faces.image_sizes == [(1280, 1280)]
    assert_matches(faces.faces[0], box, points, scale=2.5, tolerance=2.0 * 2.5)  # 2 px of the original photo


def test_working_resolution_equals_detecting_a_smaller_copy(detector, grace_hopper_rgb):
    image = as_batch(grace_hopper_rgb)  # 600x512: short side 512 -> 256 is a factor of 2
    small = F.interpolate(image, size=(300, 256), mode="bilinear", align_corners=False, antialias=True)
    expected = detect_faces(detector, small, working_size=0).faces[0]
    face = detect_faces(detector, image, working_size=256).faces[0]
    assert face.box == pytest.approx([2 * v for v in expected.box], abs=1e-3)
    assert torch.allclose(face.landmarks.as_tensor(), 2 * expected.landmarks.as_tensor(), atol=1e-3)
    assert working_scale(100, 200, 640) == 1.0 and working_scale(100, 200, 0) == 1.0  # never enlarged


def test_detect_faces_refuses_a_working_size_too_small_to_find_a_face_in(detector, astronaut_rgb):
    for size in (1, 32, 63):  # --working-size 1 once ran, and found nothing
        with pytest.raises(FaceInputError, match=r"working_size must be 0 \(full size\) or at least 64 px") as error:
            detect_faces(detector, as_batch(astronaut_rgb), working_size=size)
        assert "\n" not in str(error.value)
    assert len(detect_faces(detector, as_batch(astronaut_rgb), working_size=None)) == 1  # None = full size, as 0


def test_batch_detection_equals_single(detector, astronaut_rgb):
    single = detect_faces(detector, as_batch(astronaut_rgb))
    flipped = as_batch(astronaut_rgb).flip(-1)
    frames = torch.cat([as_batch(astronaut_rgb), flipped, torch.zeros_like(flipped), as_batch(astronaut_rgb)])
    batch = detect_faces(detector, frames)
    assert [f.image_index for f in batch.faces] == [0, 1, 3] and len(batch.image_sizes) == 4
    assert batch.faces[0].box == pytest.approx(single.faces[0].box, abs=1e-3)
    assert batch.faces[2].box == pytest.approx(single.faces[0].box, abs=1e-3)
    assert batch.faces[2].landmarks.as_tensor().allclose(single.faces[0].landmarks.as_tensor(), atol=1e-3)
    x1, _, x2, _ = single.faces[0].box
    assert batch.faces[1].box[0] == pytest.approx(512 - x2, abs=3) and batch.faces[1].box[2] == pytest.approx(512 - x1, abs=3)


def test_no_faces_and_border_faces(detector, astronaut_rgb):
    empty = detect_faces(detector, torch.full((2, 3, 300, 400), 0.5))
    assert len(empty) == 0 and empty.image_sizes == [(300, 400)] * 2
    cropped = as_batch(astronaut_rgb)[:, :, 40:, 150:]  # face close to the top-left corner
    faces = detect_faces(detector, cropped, threshold=0.9)
    assert len(faces) == 1 and faces.faces[0].box[0] < 40 and faces.faces[0].box[1] < 40


@pytest.mark.slow
def test_4096_frame_detects_in_bounded_memory(retinaface_weights, shared_dir):
    """Detection + alignment on a 4096x4096 frame, in a fresh process so its peak memory can be read."""
    script = textwrap.dedent(
        """
        import resource, sys, cv2, torch, torch.nn.functional as F
        from comfyui_gfpgan.face_pipeline.align import align_faces
        from comfyui_gfpgan.face_pipeline.detect import detect_faces, load_detector

        detector = load_detector(sys.argv[1])
        face = torch.from_numpy(cv2.imread(sys.argv[2])[:, :, ::-1].copy()).permute(2, 0, 1)[None].float() / 255
        frame = torch.full((1, 3, 4096, 4096), 0.5)
        frame[:, :, 1000:3048, 1500:3548] = F.interpolate(face, scale_factor=4, mode="bilinear").clamp(0, 1)
        detect_faces(detector, frame[:, :, :64, :64])  # warm-up: allocator and kernels
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        faces, crops = align_faces(frame, detect_faces(detector, frame, working_size=640))
        extra_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
        print(len(faces), *faces.faces[0].landmarks.left_eye, tuple(crops.shape), extra_mib)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(retinaface_weights), str(shared_dir / "images" / "astronaut.png")],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    count, eye_x, eye_y, *shape, extra_mib = result.stdout.split()
    assert count == "1"
    # README's left eye (204.8, 100.8), scaled by 4 and shifted; 2 px of the 640-px working image
    assert abs(float(eye_x) - (1500 + 4 * 204.8)) < 2 * 6.4 and abs(float(eye_y) - (1000 + 4 * 100.8)) < 2 * 6.4
    # the frame alone is 192 MiB; detection at 640 px and a crop need far less than another copy of it
    assert float(extra_mib) < 150, extra_mib


def test_priors_match_facexlib():
    from facexlib.detection.retinaface import generate_config
    from facexlib.detection.retinaface_utils import PriorBox

    for size in ((64, 96), (130, 77)):
        expected = PriorBox(generate_config("mobile0.25"), image_size=size).forward()
        assert torch.allclose(_priors(*size), expected, atol=1e-6)


def face(index, box, score=0.99, eye_distance=None):
    x1, y1, x2, y2 = box
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    half = (x2 - x1) / 4 if eye_distance is None else eye_distance / 2
    points = [(cx - half, cy), (cx + half, cy), (cx, cy), (cx - half, cy + 5), (cx + half, cy + 5)]
    return FaceRecord(index, box, score, Landmarks(*points))


def test_selection_modes():
    faces = FaceBatch(
        [face(0, (0, 0, 50, 50), 0.98), face(0, (80, 80, 120, 120), 0.999), face(0, (190, 0, 340, 150), 0.97),
         face(1, (10, 10, 20, 20), 0.99)],
        [(200, 200), (100, 100)],
    )
    assert [f.box for f in select_faces(faces, "largest").faces] == [(0, 0, 50, 50), (10, 10, 20, 20)]  # clipped areas
    assert [f.box for f in select_faces(faces, "center").faces] == [(80, 80, 120, 120), (10, 10, 20, 20)]
    assert [f.score for f in select_faces(faces, "top_k", top_k=2).faces] == [0.999, 0.98, 0.99]
    # all faces, each frame's in descending score (the default order)
    assert select_faces(faces).faces == sorted(faces.faces, key=lambda f: (f.image_index, -f.score))
    assert len(select_faces(faces, "all", min_size=45)) == 2
    assert [f.box for f in select_faces(faces, "all", min_size=45, max_size=100).faces] == [(0, 0, 50, 50)]
    assert select_faces(faces, "largest", min_size=500).image_sizes == faces.image_sizes  # frames kept, faces gone
    for bad, message in ((dict(mode="biggest"), "selection"), (dict(mode="top_k", top_k=0), "top_k"),
                         (dict(min_size=-1), "negative"), (dict(min_size=60, max_size=50), "above max_face_size"),
                         (dict(order="random"), "order"), (dict(indices="x"), "not an index")):
        with pytest.raises(FaceInputError, match=message):
            select_faces(faces, **bad)


def row_of_faces():
    """Two frames: four faces of different sizes, scores and places; one small face."""
    return FaceBatch(
        [face(0, (300, 20, 340, 60), 0.99),  # right, top, small
         face(0, (10, 150, 110, 250), 0.98),  # left, bottom, large
         face(0, (150, 90, 210, 150), 0.999),  # middle
         face(0, (220, 0, 240, 20), 0.975),  # top, smallest
         face(1, (5, 5, 45, 45), 0.99)],
        [(400, 400), (100, 100)],
    )


@pytest.mark.parametrize("order,expected", [
    ("score", [(150, 90, 210, 150), (300, 20, 340, 60), (10, 150, 110, 250), (220, 0, 240, 20)]),
    ("size", [(10, 150, 110, 250), (150, 90, 210, 150), (300, 20, 340, 60), (220, 0, 240, 20)]),
    ("left_to_right", [(10, 150, 110, 250), (150, 90, 210, 150), (220, 0, 240, 20), (300, 20, 340, 60)]),
    ("right_to_left", [(300, 20, 340, 60), (220, 0, 240, 20), (150, 90, 210, 150), (10, 150, 110, 250)]),
    ("top_to_bottom", [(220, 0, 240, 20), (300, 20, 340, 60), (150, 90, 210, 150), (10, 150, 110, 250)]),
    ("bottom_to_top", [(10, 150, 110, 250), (150, 90, 210, 150), (300, 20, 340, 60), (220, 0, 240, 20)]),
])
def test_orders_and_positions(order, expected):
    faces = row_of_faces()
    assert [f.box for f in select_faces(faces, order=order).faces] == expected + [(5, 5, 45, 45)]
    assert [f.box for f in select_faces(faces, order=order, indices=(0,)).faces] == [expected[0], (5, 5, 45, 45)]
    # positions beyond a frame's faces select nothing there: frame 1 has a single face
    assert [f.box for f in select_faces(faces, order=order, indices="1-3").faces] == expected[1:]
    assert [f.box for f in select_faces(faces, order=order, indices="2, 0").faces] == [expected[0], expected[2], (5, 5, 45, 45)]
    assert len(select_faces(faces, order=order, indices="7")) == 0
    assert set(FACE_ORDERS) == {"score", "size", "left_to_right", "right_to_left", "top_to_bottom", "bottom_to_top"}


def test_positions_count_after_the_other_selections():
    faces = row_of_faces()
    # the two best-scored faces, then left to right: the middle one, then the right one
    top_two = select_faces(faces, "top_k", top_k=2, order="left_to_right", indices="1")
    assert [f.box for f in top_two.faces] == [(300, 20, 340, 60)]
    # size limits first: without the 20 px face, position 0 from the top is the right face
    assert select_faces(faces, min_size=30, order="top_to_bottom", indices="0").faces[0].box == (300, 20, 340, 60)
    assert [f.box for f in select_faces(faces, "largest", indices="1").faces] == []


@pytest.mark.parametrize("text,expected", [
    ("", ()), ("  ", ()), ("0", (0,)), ("0,2", (0, 2)), ("2, 0", (0, 2)), ("1-3", (1, 2, 3)), (" 0 , 2 - 4 ", (0, 2, 3, 4)),
    ("1-3,2", (1, 2, 3)), ("5-5", (5,)), ((3, 1), (1, 3)), ((), ()),
])
def test_face_indices_parse(text, expected):
    assert parse_face_indices(text) == expected


@pytest.mark.parametrize("text,message", [
    ("a", "'a' is not an index"), ("-1", "not an index"), ("1,,2", "'' is not an index"), ("3-1", "runs backwards"),
    ("1.5", "not an index"), ("0-100000", "beyond"), ("1-", "not an index"), ((1, -2), "whole numbers"),
    ((True,), "whole numbers"),
])
def test_bad_face_indices_are_clear_errors(text, message):
    with pytest.raises(FaceInputError, match=message):
        parse_face_indices(text)


def test_eye_distance_filter_as_gfpganer():
    faces = FaceBatch([face(0, (0, 0, 60, 60), eye_distance=4), face(0, (100, 0, 160, 60), eye_distance=25)], [(200, 200)])
    assert [f.box for f in select_faces(faces, min_eye_distance=5).faces] == [(100, 0, 160, 60)]


def test_bad_detector_files_are_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "not_a_detector.safetensors"
    save_file({"conv.weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(FaceModelError, match="not a face detector this pack reads"):
        load_detector(path)
    with pytest.raises(FaceModelError, match="no such file"):
        load_detector(tmp_path / "absent.pth")
    truncated = tmp_path / "truncated.safetensors"
    save_file({"body.stage1.0.0.weight": torch.zeros(8, 3, 3, 3)}, str(truncated))
    with pytest.raises(FaceModelError, match=r"do not fit the network: 299 missing tensors \(.* and 294 more\)") as error:
        load_detector(truncated)
    assert len(str(error.value)) < 600  # a few keys, not all 299


def test_a_detector_file_with_odd_tensors_names_a_few(tmp_path, retinaface_weights):
    from safetensors.torch import load_file, save_file

    state_dict = load_file(str(retinaface_weights))
    state_dict["body.stage1.0.0.weight"] = torch.zeros(1, 3, 3, 3)
    state_dict.update({f"extra.{i}": torch.zeros(1) for i in range(40)})
    path = tmp_path / "odd.safetensors"
    save_file(state_dict, str(path))
    with pytest.raises(FaceModelError, match=r"40 unexpected tensors \(extra\.0, .* and 35 more\); 1 tensors of other "
                       r"shapes \(file vs network\) \(body\.stage1\.0\.0\.weight \(1, 3, 3, 3\) vs \(8, 3, 3, 3\)\)") as error:
        load_detector(path)
    assert "missing" not in str(error.value)


def test_bad_images_are_refused(detector):
    for images in (torch.rand(3, 64, 64), torch.rand(1, 4, 64, 64), torch.zeros(1, 3, 64, 64, dtype=torch.uint8),
                   torch.rand(0, 3, 64, 64)):
        with pytest.raises(FaceInputError):
            detect_faces(detector, images)


@pytest.mark.parametrize("height,width", [(1, 1), (1, 640), (640, 1), (15, 15), (15, 900)])
def test_frames_too_small_for_a_face_hold_none(detector, height, width, monkeypatch):
    monkeypatch.setattr(detector, "network", None)  # never run: there is nothing a 16 px anchor could match
    faces = detect_faces(detector, torch.rand(2, 3, height, width))
    assert len(faces) == 0 and faces.image_sizes == [(height, width)] * 2


def test_the_smallest_frame_that_can_hold_a_face_is_searched(detector, astronaut_rgb):
    from comfyui_gfpgan.face_pipeline.detect import MIN_FRAME_SIDE

    # The README's face box (120 x 95), shrunk to a 40 x 32 frame: the smallest size at which this detector
    # still found it (at 30 x 24 it no longer does), so MIN_FRAME_SIDE = 16 never hides a findable face.
    face = as_batch(astronaut_rgb)[:, :, 57:177, 178:273]
    small = F.interpolate(face, size=(40, 2 * MIN_FRAME_SIDE), mode="area")
    assert len(detect_faces(detector, small, threshold=0.9, working_size=0)) == 1


def test_empty_inputs_name_the_reason(detector):
    with pytest.raises(FaceInputError, match=r"empty batch \(0 frames\)"):
        detect_faces(detector, torch.rand(0, 3, 64, 64))
    with pytest.raises(FaceInputError, match="frames of 0x64 pixels") as error:
        detect_faces(detector, torch.rand(1, 3, 0, 64))
    assert "empty" not in str(error.value)


def test_landmark_smoothing_reduces_jitter():
    rng = torch.Generator().manual_seed(0)
    frames = 12
    jitter = torch.randn(frames, 2, generator=rng) * 3
    faces = FaceBatch([face(i, (100 + jitter[i, 0].item(), 100 + jitter[i, 1].item(),
                                 200 + jitter[i, 0].item(), 200 + jitter[i, 1].item())) for i in range(frames)],
                      [(400, 400)] * frames)
    smoothed = smooth_landmarks(faces, 0.7)

    def spread(batch):
        return torch.tensor([f.landmarks.nose for f in batch.faces]).diff(dim=0).abs().mean()

    assert spread(smoothed) < spread(faces) / 2
    assert smoothed.faces[0] == faces.faces[0]  # nothing before the first frame
    assert smooth_landmarks(faces, 0.0) is faces
    with pytest.raises(FaceInputError):
        smooth_landmarks(faces, 1.0)
    far = FaceBatch([face(0, (0, 0, 50, 50)), face(1, (300, 300, 350, 350))], [(400, 400)] * 2)
    assert smooth_landmarks(far, 0.9).faces[1].box == (300, 300, 350, 350)  # no match: not dragged
    # continuing from a previous chunk's last frame
    continued = smooth_landmarks(FaceBatch([face(0, (10, 0, 60, 50))], [(400, 400)]), 0.5, previous=[far.faces[0]])
    assert continued.faces[0].box == (5, 0, 55, 50)


def test_smoothing_matches_faces_one_to_one():
    # two faces side by side; in the next frame both moved a little: each must follow its own track
    first = [face(0, (0, 0, 100, 100)), face(0, (60, 0, 160, 100))]
    second = [face(1, (62, 0, 162, 100)), face(1, (2, 0, 102, 100))]
    smoothed = smooth_landmarks(FaceBatch(first + second, [(200, 200)] * 2), 0.5)
    assert smoothed.faces[2].box == (61, 0, 161, 100) and smoothed.faces[3].box == (1, 0, 101, 100)


def test_network_layout_equals_facexlib(retinaface_weights):
    from facexlib.detection.retinaface import RetinaFace
    from safetensors.torch import load_file

    state_dict = load_file(str(retinaface_weights))
    assert backbone_from_keys(state_dict) == "mobilenet0.25" and backbone_from_keys({"x": 0}) is None
    ours, theirs = RetinaFaceNet("mobilenet0.25").eval(), RetinaFace("mobile0.25", device="cpu").eval()
    ours.load_state_dict(state_dict, strict=True)
    theirs.load_state_dict(state_dict, strict=True)
    x = torch.randn(2, 3, 64, 96) * 60
    with torch.no_grad():
        (loc, scores, landmarks), (loc_ref, conf_ref, landmarks_ref) = ours(x), theirs(x)
    assert torch.equal(loc, loc_ref) and torch.equal(scores, conf_ref[..., 1]) and torch.equal(landmarks, landmarks_ref)
    with pytest.warns(UserWarning):  # facexlib's ResNet-50 uses torchvision's deprecated pretrained=False
        resnet_reference = RetinaFace("resnet50", device="cpu")
    reference_shapes = {k: v.shape for k, v in resnet_reference.state_dict().items()}
    assert {k: v.shape for k, v in RetinaFaceNet("resnet50").state_dict().items()} == reference_shapes


def test_resnet50_detector_builds_from_its_keys(tmp_path):
    """No trained ResNet-50 weights offline: a seeded one checks the backbone detection and the full path."""
    torch.manual_seed(0)
    network = RetinaFaceNet("resnet50")
    path = tmp_path / "detection_Resnet50_Final.pth"
    torch.save({f"module.{k}": v for k, v in network.state_dict().items()}, path)  # DataParallel-style keys
    detector = load_detector(path)
    assert detector.backbone == "resnet50" and detector.device == torch.device("cpu")
    faces = detect_faces(detector, torch.rand(2, 3, 96, 128), threshold=0.0)
    assert faces.image_sizes == [(96, 128)] * 2 and len(faces) > 0
    assert all(0 <= f.score <= 1 for f in faces.faces)
    assert [f.image_index for f in faces.faces] == sorted(f.image_index for f in faces.faces)


def test_bfloat16_detector_finds_the_same_face(retinaface_weights, astronaut_rgb):
    detector = load_detector(retinaface_weights)
    detector.network.to(torch.bfloat16)
    faces = detect_faces(detector, as_batch(astronaut_rgb))
    reference = detect_faces(load_detector(retinaface_weights), as_batch(astronaut_rgb))
    assert len(faces) == 1 and torch.allclose(faces.faces[0].landmarks.as_tensor(),
                                              reference.faces[0].landmarks.as_tensor(), atol=3)


def test_big_batches_go_through_in_passes_with_the_same_faces(detector, astronaut_rgb, monkeypatch):
    import comfyui_gfpgan.face_pipeline.detect as detect

    image = as_batch(astronaut_rgb)
    frames = torch.cat([image, torch.zeros_like(image), image.flip(-1), image, torch.zeros_like(image)])
    whole = detect_faces(detector, frames)
    calls = []
    detect_once = detector.detect
    monkeypatch.setattr(detector, "detect", lambda x, *a: calls.append(x.shape[0]) or detect_once(x, *a))
    monkeypatch.setattr(detect, "_PIXELS_PER_PASS", 2 * 512 * 512)  # two of these frames per pass
    passes = detect_faces(detector, frames)
    assert calls == [2, 2, 1]
    assert [f.image_index for f in passes.faces] == [f.image_index for f in whole.faces] == [0, 2, 3]
    assert passes.image_sizes == whole.image_sizes
    for ours, reference in zip(passes.faces, whole.faces):
        assert ours.box == pytest.approx(reference.box, abs=1e-3) and ours.score == pytest.approx(reference.score)
    calls.clear()
    detect_faces(detector, frames, working_size=256)  # a quarter of the pixels: all five in one pass
    assert calls == [5]
