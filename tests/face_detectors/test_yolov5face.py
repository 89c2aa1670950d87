"""YOLOv5-face: config from keys, parity with upstream's code (CodeFormer's facelib) on seeded weights that
carry signal, the fast path against the exact one, letterboxing, and the whole pipeline on a YOLO file.

No trained YOLOv5-face weights are reachable offline, so no real-photo test: the parity tests prove that
the real files (same layout, same code path) behave as upstream's code does.
"""

import numpy as np
import pytest
import torch

from comfyui_gfpgan.face_detectors import FaceModelError, detector_family, load_detector, read_weights
from comfyui_gfpgan.face_detectors.yolov5face import (
    YOLOV5_FACE,
    YoloFaceDetector,
    config_from_keys,
    letterbox,
    letterbox_geometry,
)
from comfyui_gfpgan.face_detectors.yolov5face_net import YoloV5FaceNet
from yolov5face_reference import CSP_MULTIPLES, seeded_yolov5face_file, signal_images, upstream, upstream_model

SIZES = ("n", "s", "m", "l")


@pytest.fixture(scope="module")
def reference():
    modules = upstream()
    if modules is None:
        pytest.skip("upstream's YOLOv5-face code not installed (pip install codeformer==0.0.11, a test dependency)")
    return modules


@pytest.fixture(scope="module")
def yolo_files(reference, tmp_path_factory):
    folder = tmp_path_factory.mktemp("yolov5face")
    return {size: seeded_yolov5face_file(reference, size, folder / f"yolov5{size}-face.pth") for size in SIZES}


def exact_detector(path) -> YoloFaceDetector:
    """The detector without the inference rewrites (upstream's own arithmetic order)."""
    state_dict = read_weights(path)
    network = YoloV5FaceNet(*config_from_keys(state_dict))
    network.load_state_dict(state_dict, strict=True)
    return YoloFaceDetector(network, YOLOV5_FACE.variant(state_dict), path, optimise=False)


def upstream_detections(reference, model, images, threshold):
    """Upstream's detect_faces steps on ``images`` (its letterbox is the identity at 320x448), before it
    rounds to whole pixels: NMS at 0.5, coordinates mapped back and clipped, boxes under 10 px dropped."""
    with torch.no_grad():
        prediction = model(images)[0]
    rows = []
    for index, found in enumerate(reference.general.non_max_suppression_face(prediction, threshold, 0.5)):
        reference.general.scale_coords(images.shape[2:], found[:, :4], images.shape[2:])
        reference.general.scale_coords_landmarks(images.shape[2:], found[:, 5:15], images.shape[2:])
        found = found[found[:, 3] - found[:, 1] >= 10]
        rows.append(torch.cat([torch.full((len(found), 1), float(index)), found[:, :15]], dim=1))
    return torch.cat(rows)


def threshold_for(reference, model, images, count=200):
    """A threshold that the ``count``-th best cell clears: a few hundred candidates, so NMS has work."""
    with torch.no_grad():
        prediction = model(images)[0]
    scores = (prediction[..., 4] * prediction[..., 15]).flatten().sort(descending=True).values
    return float(scores[count])


@pytest.mark.parametrize("size", SIZES)
def test_exact_path_matches_upstream(reference, yolo_files, size, tmp_path):
    model = upstream_model(reference, size, tmp_path)
    model.load_state_dict(torch.load(yolo_files[size]), strict=True)
    model.eval()
    images = signal_images()
    threshold = threshold_for(reference, model, images)
    expected = upstream_detections(reference, model, images, threshold)
    found = exact_detector(yolo_files[size]).detect(images, threshold)
    assert len(found) == len(expected) > 20
    assert torch.equal(found.image_index.float(), expected[:, 0])
    assert torch.allclose(found.boxes, expected[:, 1:5], atol=1e-4)
    assert torch.allclose(found.scores, expected[:, 5], atol=1e-5)
    assert torch.allclose(found.landmarks.view(-1, 10), expected[:, 6:16], atol=1e-4)
    assert len(set(found.scores.tolist())) == len(found)  # distinct scores: NMS's order is determined


@pytest.mark.parametrize("size", SIZES)
def test_config_is_read_from_keys(reference, yolo_files, size, tmp_path):
    state_dict = read_weights(yolo_files[size])
    assert detector_family(state_dict) == (YOLOV5_FACE, size)
    topology, widths, depths, _, anchors = config_from_keys(state_dict)
    assert topology == ("shufflenet" if size == "n" else "csp")
    if size != "n":  # upstream's depth multiple on the l layout's C3 repeats (3, 9, 9, 3, then 3 per head block)
        depth = CSP_MULTIPLES[size][0]
        assert [depths[i] for i in (1, 3, 5, 8, 12)] == [max(round(n * depth), 1) for n in (3, 9, 9, 3, 3)]
    assert anchors.shape == (3, 3, 2)
    upstream_keys = upstream_model(reference, size, tmp_path).state_dict().keys()
    assert YoloV5FaceNet(*config_from_keys(state_dict)).state_dict().keys() == upstream_keys


@pytest.mark.parametrize("size", ("n", "l"))
def test_fast_path_computes_what_the_exact_one_does(yolo_files, size):
    images = signal_images()
    exact, fast = exact_detector(yolo_files[size]), load_detector(yolo_files[size])
    assert fast.optimised and not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.network.modules())
    boxed = letterbox(images)[0]
    with torch.no_grad():
        for ours, theirs in zip(fast.raw_outputs(boxed), exact.raw_outputs(boxed)):
            assert (ours - theirs).abs().max() <= 1e-3 * theirs.abs().max()


def test_letterbox_matches_upstream(reference):
    rng = np.random.default_rng(0)
    for height, width in ((320, 448), (300, 470), (512, 600), (2160, 3840), (97, 131)):
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        expected, _, (pad_w, pad_h) = reference.datasets.letterbox(image, new_shape=-(-max(height, width) // 32) * 32)
        ours, gain, (off_x, off_y) = letterbox(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255)
        assert ours.shape[2:] == expected.shape[:2]
        # cv2's bilinear works in 8-bit fixed point: a level of difference where the frame is scaled
        difference = (ours[0].permute(1, 2, 0) * 255 - torch.from_numpy(expected).float()).abs()
        assert difference.max() <= (0 if ours.shape[2:] == (height, width) or (height, width) == (320, 448) else 2)
        # the offsets that undo it are upstream's scale_coords ones
        assert (off_x, off_y) == pytest.approx(((expected.shape[1] - width * gain) / 2, (expected.shape[0] - height * gain) / 2))
    assert letterbox_geometry(2160, 3840) == ((2160, 3840), (8, 8, 0, 0))


def test_coordinates_map_back_to_the_frame(yolo_files):
    """Padding and scaling undone: a frame that needs both gives the faces the padded frame gives, moved."""
    detector = load_detector(yolo_files["n"])
    images = signal_images()[:1, :, :, :416]  # 320x416: scaled by 448/416, then padded
    found = detector.detect(images, 0.5)
    assert len(found) > 0
    assert found.boxes[:, 0::2].min() >= 0 and found.boxes[:, 0::2].max() <= 416
    assert found.boxes[:, 1::2].min() >= 0 and found.boxes[:, 1::2].max() <= 320
    assert (found.boxes[:, 3] - found.boxes[:, 1]).min() >= 10


def test_foreign_and_damaged_yolo_files_are_one_line(yolo_files, tmp_path):
    state_dict = read_weights(yolo_files["n"])
    missing = dict(state_dict)
    del missing["model.21.anchors"]
    torch.save(missing, tmp_path / "no_anchors.pth")
    with pytest.raises(FaceModelError, match="YOLOv5-face"):
        load_detector(tmp_path / "no_anchors.pth")
    odd = dict(state_dict)
    odd["model.7.conv.weight"] = odd["model.7.conv.weight"][:, :3]
    torch.save(odd, tmp_path / "odd.pth")
    with pytest.raises(FaceModelError, match="YOLOv5-face"):
        load_detector(tmp_path / "odd.pth")


def test_yolo_file_drives_the_whole_pipeline(yolo_files):
    """A YOLOv5-face file through the same stages as RetinaFace's: detected faces aligned from their five
    landmarks, restored (here by a restorer that inverts colours, so a change shows) and pasted back."""
    from comfyui_gfpgan.face_pipeline import DetectSettings, PipelineResult, restore_faces_in_images

    class Inverting(torch.nn.Module):
        out_size = 512

        def __init__(self):
            super().__init__()
            self.anchor = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x, fidelity=1.0, noise=None):
            return -x

    detector = load_detector(yolo_files["l"])
    images = signal_images()
    found = exact_detector(yolo_files["l"]).detect(images, 0.9)
    settings = DetectSettings(threshold=0.9, min_eye_distance=0, selection="top_k", top_k=2)
    result = restore_faces_in_images(images, Inverting(), detector, detect=settings)
    assert isinstance(result, PipelineResult)
    assert 1 <= len(result.faces.faces) <= 4 and len(found) >= len(result.faces.faces)
    for face in result.faces.faces:  # the two best faces of each frame, at the boxes the detector found
        mine = found.boxes[found.image_index == face.image_index]
        assert any(torch.allclose(torch.tensor(face.box), box, atol=1.0) for box in mine)
        assert face.affine is not None
    changed = (result.images - images).abs().flatten(1).amax(dim=1)
    faces_per_frame = {face.image_index for face in result.faces.faces}
    for frame in range(len(images)):
        assert (changed[frame] > 0.1) == (frame in faces_per_frame)


def test_each_family_detects_at_its_own_default_confidence(yolo_files, retinaface_weights, monkeypatch):
    """No threshold given (the CLI's and the Python API's default): RetinaFace at GFPGANer's 0.97,
    YOLOv5-face at its upstream code's 0.7, whose scores run lower."""
    from comfyui_gfpgan.face_pipeline import DetectSettings, find_faces
    from comfyui_gfpgan.face_pipeline.detect import detect_faces

    def rows(faces):
        return [(f.image_index, f.box, f.score) for f in faces.faces]

    yolo, images = load_detector(yolo_files["n"]), signal_images()
    assert rows(detect_faces(yolo, images)) == rows(detect_faces(yolo, images, threshold=0.7))
    assert len(detect_faces(yolo, images)) > len(detect_faces(yolo, images, threshold=0.97))
    assert DetectSettings().threshold is None
    found = find_faces(images, yolo, DetectSettings(min_eye_distance=0))[0]
    assert rows(found) == rows(find_faces(images, yolo, DetectSettings(threshold=0.7, min_eye_distance=0))[0])
    retinaface, asked = load_detector(retinaface_weights), []
    detect = retinaface.detect
    monkeypatch.setattr(retinaface, "detect", lambda x, threshold, *a: asked.append(threshold) or detect(x, threshold, *a))
    find_faces(torch.rand(1, 3, 64, 64), retinaface, DetectSettings())
    assert asked == [0.97]
