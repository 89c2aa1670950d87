"""Real RetinaFace detection on the shared photos, selection, and bad detector files."""

import re

import pytest
import torch
import torch.nn.functional as F

from comfyui_gfpgan.face_pipeline.detect import (
    FaceModelError,
    _priors,
    detect_faces,
    load_detector,
    select_faces,
    working_scale,
)
from comfyui_gfpgan.face_pipeline.faces import LANDMARK_NAMES, FaceBatch, FaceRecord, Landmarks


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


def assert_matches(face, box, points, scale=1.0, tolerance=2.0):
    assert max(abs(a - b * scale) for a, b in zip(face.box, box)) <= tolerance, (face.box, box)
    if points:
        ours = face.landmarks.as_tensor()
        # the README lists eyes and mouth corners in image order, as LANDMARK_NAMES does
        assert (ours - torch.tensor(points) * scale).abs().max() <= tolerance


def test_full_size_detection_matches_readme(detector, shared_dir, astronaut_rgb, grace_hopper_rgb):
    truth = readme_truth(shared_dir)
    for name, rgb in (("astronaut.png", astronaut_rgb), ("grace_hopper.jpg", grace_hopper_rgb)):
        faces = detect_faces(detector, as_batch(rgb), working_size=0)
        assert len(faces) == 1 and faces.faces[0].score > 0.99
        assert faces.image_sizes == [rgb.shape[:2]]
        assert_matches(faces.faces[0], *truth[name])


def test_working_resolution_maps_back_to_full_size(detector, shared_dir, astronaut_rgb):
    box, points = readme_truth(shared_dir)["astronaut.png"]
    big = F.interpolate(as_batch(astronaut_rgb), scale_factor=2.5, mode="bicubic", align_corners=False).clamp(0, 1)
    assert working_scale(*big.shape[-2:], 640) == pytest.approx(640 / 1280)
    faces = detect_faces(detector, big, working_size=640)
    assert len(faces) == 1
    assert_matches(faces.faces[0], box, points, scale=2.5, tolerance=2.0 * 2.5)


def test_batch_detection_equals_single(detector, astronaut_rgb):
    single = detect_faces(detector, as_batch(astronaut_rgb))
    flipped = as_batch(astronaut_rgb).flip(-1)
    batch = detect_faces(detector, torch.cat([as_batch(astronaut_rgb), flipped, torch.zeros_like(flipped)]))
    assert [f.image_index for f in batch.faces] == [0, 1]
    assert batch.faces[0].box == pytest.approx(single.faces[0].box, abs=1e-3)
    x1, _, x2, _ = single.faces[0].box
    assert batch.faces[1].box[0] == pytest.approx(512 - x2, abs=3) and batch.faces[1].box[2] == pytest.approx(512 - x1, abs=3)


def test_no_faces_and_border_faces(detector, astronaut_rgb):
    assert len(detect_faces(detector, torch.full((1, 3, 300, 400), 0.5))) == 0
    cropped = as_batch(astronaut_rgb)[:, :, 40:, 150:]  # face close to the top-left corner
    faces = detect_faces(detector, cropped, threshold=0.9)
    assert len(faces) == 1 and faces.faces[0].box[0] < 40


def test_huge_frame_detects_at_working_resolution(detector, astronaut_rgb):
    frame = torch.zeros(1, 3, 4096, 4096)
    frame[:, :, 1000:1512, 2000:2512] = as_batch(astronaut_rgb)
    faces = detect_faces(detector, frame, working_size=2048)
    assert len(faces) == 1
    assert faces.faces[0].box[0] == pytest.approx(2000 + 178, abs=8)


def test_priors_match_facexlib(retinaface_weights):
    from facexlib.detection.retinaface import generate_config
    from facexlib.detection.retinaface_utils import PriorBox

    for size in ((64, 96), (130, 77)):
        expected = PriorBox(generate_config("mobile0.25"), image_size=size).forward()
        assert torch.allclose(_priors(*size), expected, atol=1e-6)


def face(index, box, score=0.99):
    x1, y1, x2, y2 = box
    point = ((x1 + x2) / 2, (y1 + y2) / 2)
    return FaceRecord(index, box, score, Landmarks(*[point] * len(LANDMARK_NAMES)))


def test_selection_modes():
    faces = FaceBatch(
        [face(0, (0, 0, 50, 50), 0.98), face(0, (80, 80, 120, 120), 0.999), face(0, (150, 0, 300, 150), 0.97),
         face(1, (10, 10, 20, 20), 0.99)],
        [(200, 200), (100, 100)],
    )
    assert [f.box for f in select_faces(faces, "largest").faces] == [(150, 0, 300, 150), (10, 10, 20, 20)]
    assert [f.box for f in select_faces(faces, "center").faces] == [(80, 80, 120, 120), (10, 10, 20, 20)]
    assert [f.score for f in select_faces(faces, "top_k", top_k=2).faces] == [0.999, 0.98, 0.99]
    assert len(select_faces(faces, "all", min_size=45)) == 2
    assert [f.box for f in select_faces(faces, "all", min_size=45, max_size=100).faces] == [(0, 0, 50, 50)]
    with pytest.raises(ValueError):
        select_faces(faces, "biggest")


def test_foreign_detector_file_is_refused(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "not_a_detector.safetensors"
    save_file({"conv.weight": torch.zeros(2, 2)}, str(path))
    with pytest.raises(FaceModelError, match="not a RetinaFace"):
        load_detector(path)


def test_landmark_smoothing_reduces_jitter():
    from comfyui_gfpgan.face_pipeline.detect import smooth_landmarks

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
    assert smooth_landmarks(faces, 0.0) is faces
    far = FaceBatch([face(0, (0, 0, 50, 50)), face(1, (300, 300, 350, 350))], [(400, 400)] * 2)
    assert smooth_landmarks(far, 0.9).faces[1].box == (300, 300, 350, 350)  # no match: not dragged


def test_resnet50_detector_builds_from_its_keys(tmp_path):
    """No trained ResNet-50 weights offline: a seeded one checks the backbone detection and the full path."""
    from comfyui_gfpgan.face_pipeline.detect import _build_retinaface

    torch.manual_seed(0)
    network = _build_retinaface("resnet50", torch.device("cpu"))
    path = tmp_path / "detection_Resnet50_Final.pth"
    torch.save({f"module.{k}": v for k, v in network.state_dict().items()}, path)  # DataParallel-style keys
    detector = load_detector(path)
    assert detector.backbone == "resnet50"
    faces = detect_faces(detector, torch.rand(2, 3, 96, 128), threshold=0.0)
    assert faces.image_sizes == [(96, 128)] * 2
    assert all(0 <= f.score <= 1 for f in faces.faces)
