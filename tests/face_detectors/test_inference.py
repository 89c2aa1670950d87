"""The detector interface: the registry by keys, and the inference rewrites (BatchNorm folding, strips,
heads at candidates) that must compute what the plain networks compute."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from comfyui_gfpgan.face_detectors import (
    DETECTOR_FAMILIES,
    DETECTOR_FILES,
    FaceDetector,
    FaceModelError,
    detector_family,
    load_detector,
    read_weights,
)
from comfyui_gfpgan.face_detectors.inference import (
    CentredInputConv,
    fold_batch_norms,
    receptive_radius,
    run_in_strips,
)
from comfyui_gfpgan.face_detectors.retinaface import RETINAFACE, RetinaFaceDetector
from comfyui_gfpgan.face_detectors.retinaface_net import RetinaFaceNet
from comfyui_gfpgan.face_pipeline.detect import detect_faces


def photo_canvas(astronaut_rgb, grace_hopper_rgb, height=1080, width=1920):
    """A grey frame holding the two photos at several scales: faces from ~20 to ~400 px, for every level."""
    canvas = torch.full((1, 3, height, width), 0.5)
    placements = ((astronaut_rgb, 2.0, 0, 0), (grace_hopper_rgb, 1.0, 60, 1100), (astronaut_rgb, 0.5, 700, 1100),
                  (grace_hopper_rgb, 0.35, 760, 1500), (astronaut_rgb, 0.2, 500, 1700))
    for rgb, scale, top, left in placements:
        image = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
        image = F.interpolate(image, scale_factor=scale, mode="bilinear", antialias=scale < 1).clamp(0, 1)
        h, w = min(image.shape[2], height - top), min(image.shape[3], width - left)
        canvas[..., top : top + h, left : left + w] = image[..., :h, :w]
    return canvas


@pytest.fixture(scope="module")
def exact_and_fast(retinaface_weights):
    state_dict = read_weights(retinaface_weights)
    network = RetinaFaceNet("mobilenet0.25")
    network.load_state_dict(state_dict, strict=True)
    return RetinaFaceDetector(network, "mobilenet0.25", retinaface_weights, optimise=False), load_detector(retinaface_weights)


def test_registry_tells_families_from_keys(retinaface_weights, tmp_path):
    detector = load_detector(retinaface_weights)
    assert isinstance(detector, FaceDetector) and detector.family is RETINAFACE and detector.variant == "mobilenet0.25"
    assert detector.name == "RetinaFace mobilenet0.25"
    assert detector_family(read_weights(retinaface_weights)) == (RETINAFACE, "mobilenet0.25")
    assert detector_family({"conv.weight": torch.zeros(1)}) is None
    assert {f.name for f in DETECTOR_FAMILIES} == {"RetinaFace", "YOLOv5-face"}
    assert {"detection_Resnet50_Final.pth", "yolov5l-face.pth", "yolov5n-face.pth"} <= set(DETECTOR_FILES)
    torch.save({"model.0.stem_1.conv.weight": torch.zeros(32, 3, 3, 3)}, tmp_path / "stem_only.pth")
    with pytest.raises(FaceModelError):  # a YOLOv5-face stem alone is no detector: one line, no traceback
        load_detector(tmp_path / "stem_only.pth")


@pytest.mark.parametrize("fine_strip_cells", [None, 240 * 2 * 10], ids=["default", "10-row-strips"])
def test_fast_retinaface_finds_the_exact_faces_on_real_photos(exact_and_fast, astronaut_rgb, grace_hopper_rgb,
                                                              fine_strip_cells, monkeypatch):
    """Folding, channels-last, the stem and level 0 in strips and the heads at candidates change no face: same
    count, boxes, landmarks and scores, at full size and shrunk, in batches; level 0 whole (the default, at
    1080p) or in strips of 10 rows, whose seams cross the faces."""
    import comfyui_gfpgan.face_detectors.retinaface as retinaface

    if fine_strip_cells is not None:
        monkeypatch.setattr(retinaface, "_FINE_STRIP_CELLS", fine_strip_cells)
    exact, fast = exact_and_fast
    frames = torch.cat([photo_canvas(astronaut_rgb, grace_hopper_rgb), photo_canvas(grace_hopper_rgb, astronaut_rgb)])
    for working_size in (0, 640):
        expected = detect_faces(exact, frames, threshold=0.5, working_size=working_size)
        found = detect_faces(fast, frames, threshold=0.5, working_size=working_size)
        assert len(expected) >= 8 and len(found) == len(expected)
        for ours, reference in zip(found.faces, expected.faces):
            assert ours.image_index == reference.image_index
            assert ours.box == pytest.approx(reference.box, abs=1e-2)
            assert ours.score == pytest.approx(reference.score, abs=1e-4)
            assert torch.allclose(ours.landmarks.as_tensor(), reference.landmarks.as_tensor(), atol=1e-2)


def test_fast_retinaface_runs_its_stem_and_level_0_in_strips_on_big_frames(exact_and_fast, monkeypatch):
    import comfyui_gfpgan.face_detectors.retinaface as retinaface

    _, fast = exact_and_fast
    strips, pieces = [], []
    original = retinaface.run_in_strips
    monkeypatch.setattr(retinaface, "run_in_strips",
                        lambda stage, images, *a: original(lambda x: strips.append(x.shape[2]) or stage(x), images, *a))
    original_pieces = fast.network.feature_pieces
    monkeypatch.setattr(fast.network, "feature_pieces",
                        lambda *a, **k: (pieces.append(piece[:2]) or piece for piece in original_pieces(*a, **k)))
    detect_faces(fast, torch.rand(1, 3, 2160, 3840))
    assert len(strips) > 1 and max(strips) < 2160
    level_0 = [first for level, first in pieces if level == 0]
    assert len(level_0) > 1 and level_0[0] == 0 and [level for level, _ in pieces].count(1) == 1


@pytest.mark.parametrize("kernel, stride, padding, bias", [(3, 2, 1, True), (7, 2, 3, False), (3, 1, 1, True)])
@pytest.mark.parametrize("height, width", [(1, 1), (2, 3), (9, 11), (32, 33)])
def test_centred_input_conv_is_the_conv_of_the_centred_input(kernel, stride, padding, bias, height, width):
    """The mean folded into the bias and given back where taps fall on the padding: at every output, borders
    and corners of odd and even sizes included, frames smaller than the kernel too."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 8, kernel, stride, padding, bias=bias)
    mean = torch.tensor([0.48, 0.46, 0.41])
    x = torch.rand(2, 3, height, width)
    with torch.no_grad():
        expected = conv(x - mean.view(1, 3, 1, 1))
        folded = CentredInputConv(conv, mean)(x)
    assert folded.shape == expected.shape and (folded - expected).abs().max() <= 1e-5


@pytest.mark.parametrize("backbone", ["mobilenet0.25", "resnet50"])
def test_optimised_retinaface_computes_the_exact_features(backbone):
    """Folded BatchNorms, the means in the first convolution (MobileNet's 3x3, ResNet's 7x7), channels-last and
    strips: each level's SSH features as facexlib's arithmetic gives them, on seeded networks."""
    torch.manual_seed(0)
    network = RetinaFaceNet(backbone).eval()
    for module in network.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
    exact = RetinaFaceDetector(network, backbone, optimise=False)
    fast = RetinaFaceDetector(copy.deepcopy(network), backbone)
    images = torch.rand(2, 3, 75, 98)
    with torch.no_grad():
        expected = {level: piece for level, _, piece in exact._feature_pieces(images)}
        found = list(fast._feature_pieces(images))
    for level, first, piece in found:
        reference = expected[level][:, :, first : first + piece.shape[2]]
        assert (piece - reference).abs().max() <= 1e-4 * reference.abs().max()


@pytest.mark.parametrize("backbone", ["mobilenet0.25", "resnet50"])
def test_folding_batch_norms_keeps_the_outputs(backbone):
    torch.manual_seed(0)
    network = RetinaFaceNet(backbone).eval()
    for module in network.modules():  # statistics away from identity, so a wrong fold shows
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.2, 0.2)
    x = torch.randn(2, 3, 96, 128) * 50
    with torch.no_grad():
        expected = network(x)
        folded = fold_batch_norms(network)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
        for ours, reference in zip(folded(x), expected):
            assert (ours - reference).abs().max() <= 1e-4 * max(1.0, reference.abs().max())


@pytest.mark.parametrize("backbone", ["mobilenet0.25", "resnet50"])
@pytest.mark.parametrize("height", [208, 211, 333])
def test_strips_equal_the_whole_image_pass(backbone, height):
    """Stitched strips equal the whole-image stem at every row, whatever the height (multiples of the
    stride or not) and batch; fewer context rows than the bound would change the rows at the seams."""
    torch.manual_seed(0)
    stem = RetinaFaceNet(backbone).eval().stem()

    def run(x):
        for layer in stem:
            x = layer(x)
        return x

    radius = receptive_radius(stem)
    images = torch.randn(2, 3, height, 96)
    with torch.no_grad():
        whole = run(images)
        stitched = run_in_strips(run, images, 8, radius, strip_pixels=2 * 96 * 32)  # 32-row strips
        assert stitched.shape == whole.shape
        scale = whole.abs().max()
        assert (stitched - whole).abs().max() <= 1e-5 * scale
        starved = run_in_strips(run, images, 8, 0, strip_pixels=2 * 96 * 32)
        assert (starved - whole).abs().max() > 1e-2 * scale


@pytest.mark.parametrize("backbone", ["mobilenet0.25", "resnet50"])
@pytest.mark.parametrize("height", [200, 232, 333])  # level 0: 25, 29, 42 rows
@pytest.mark.parametrize("fine_rows", [5, 6])  # 5 asks for odd strips: they start on even rows (4 rows each)
def test_level_0_strips_equal_the_whole_map(backbone, height, fine_rows, monkeypatch):
    """Level 0's SSH features in strips (odd and even heights, a batch) equal the whole map's rows, and the other
    levels are the same maps; fewer context rows than ``FINE_RADIUS`` would change the rows at the seams."""
    import comfyui_gfpgan.face_detectors.retinaface_net as retinaface_net

    torch.manual_seed(0)
    network = RetinaFaceNet(backbone).eval()
    with torch.no_grad():
        levels = network.levels(torch.randn(2, 3, height, 64) * 50)
        whole = {level: piece for level, _, piece in network.feature_pieces(levels)}
        pieces = list(network.feature_pieces(levels, fine_rows=fine_rows))

        def stitched(pieces):
            return torch.cat([piece for level, _, piece in pieces if level == 0], dim=2)

        rows = whole[0].shape[2]
        assert [first for level, first, _ in pieces if level == 0] == list(range(0, rows, fine_rows // 2 * 2))
        scale = whole[0].abs().max()
        assert stitched(pieces).shape == whole[0].shape and (stitched(pieces) - whole[0]).abs().max() <= 1e-5 * scale
        assert all(torch.equal(piece, whole[level]) for level, _, piece in pieces if level > 0)
        monkeypatch.setattr(retinaface_net, "FINE_RADIUS", retinaface_net.FINE_RADIUS - 2)
        starved = stitched(network.feature_pieces(levels, fine_rows=fine_rows))
        assert (starved - whole[0]).abs().max() > 1e-3 * scale


def test_receptive_radius_bounds_what_a_stem_sees():
    """The bound is at least the true reach: changing an input pixel ``radius + 1`` rows away changes nothing."""
    stem = RetinaFaceNet("mobilenet0.25").eval().stem()
    radius = receptive_radius(stem)
    assert radius >= 21  # facexlib's MobileNet stage 1: 1 + 2 + 2 + 4 + 4 + 8 input pixels

    def run(x):
        for layer in stem:
            x = layer(x)
        return x

    torch.manual_seed(0)
    images = torch.randn(1, 3, 256, 64)
    with torch.no_grad():
        before = run(images)
        changed = images.clone()
        changed[:, :, 128 + radius + 8] += 10  # a row beyond the reach of output row 16 (input row 128)
        assert torch.equal(run(changed)[:, :, 16], before[:, :, 16])
