"""The whole pipeline: against GFPGANer's algorithm, and on awkward inputs."""

import numpy as np
import pytest
import torch

from comfyui_gfpgan.face_pipeline.detect import load_detector
from comfyui_gfpgan.face_pipeline.errors import FaceInputError
from comfyui_gfpgan.face_pipeline.faces import FaceBatch, FaceRecord, Landmarks
from comfyui_gfpgan.face_pipeline.pipeline import (
    DetectSettings,
    PasteSettings,
    RestoreSettings,
    find_faces,
    find_faces_in_frames,
    restore_faces_in_images,
)

from factories import IdentityRestorer as Identity, seeded_clean_network


class Constant(Identity):
    def forward(self, x, fidelity=1.0, noise=None):
        return torch.full_like(x, 0.4)


def to_batch(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255


def psnr(a, b, where=None) -> float:
    error = (a.double() - b.double()) ** 2
    if where is not None:
        error = error[..., where]
    return float(10 * torch.log10(1 / error.mean()))


@pytest.fixture(scope="module")
def detector(retinaface_weights):
    return load_detector(retinaface_weights)


@pytest.mark.slow
@pytest.mark.parametrize("photo", ["astronaut_rgb", "grace_hopper_rgb"])
def test_matches_gfpganer_algorithm(
    photo, request, retinaface_weights, detector, official_clean_network, official_reference_network
):
    from gfpganer_reference import gfpganer_enhance, make_face_helper

    rgb = request.getfixturevalue(photo)
    helper = make_face_helper(retinaface_weights)
    reference, reference_faces = gfpganer_enhance(helper, official_reference_network, np.ascontiguousarray(rgb[:, :, ::-1]))
    ours = restore_faces_in_images(to_batch(rgb), official_clean_network, detector)  # the default settings
    assert len(ours.faces) == reference_faces == 1
    # the same face: GFPGANer's box (helper.det_faces rows are x1, y1, x2, y2, score) within 2 px
    assert np.abs(np.array(ours.faces.faces[0].box) - np.asarray(helper.det_faces[0][:4])).max() < 2
    face_region = ours.masks[0] > 0.5
    reference_rgb = to_batch(np.ascontiguousarray(reference[:, :, ::-1]))
    assert psnr(ours.images, reference_rgb, face_region) >= 35
    assert not torch.allclose(ours.images, to_batch(rgb))  # the faces did change


@pytest.mark.slow
def test_matches_gfpganer_on_a_multi_face_frame(
    astronaut_rgb, grace_hopper_rgb, retinaface_weights, detector, official_clean_network, official_reference_network
):
    from gfpganer_reference import gfpganer_enhance, make_face_helper

    canvas = np.full((700, 1200, 3), 128, np.uint8)
    canvas[:512, :512] = astronaut_rgb
    canvas[100:700, 600:1112] = grace_hopper_rgb
    helper = make_face_helper(retinaface_weights)
    reference, reference_faces = gfpganer_enhance(helper, official_reference_network, np.ascontiguousarray(canvas[:, :, ::-1]))
    ours = restore_faces_in_images(to_batch(canvas), official_clean_network, detector)
    assert len(ours.faces) == reference_faces == 2
    ours_boxes = sorted(face.box for face in ours.faces.faces)
    reference_boxes = sorted(tuple(float(v) for v in row[:4]) for row in helper.det_faces)
    assert np.abs(np.array(ours_boxes) - np.array(reference_boxes)).max() < 2
    reference_rgb = to_batch(np.ascontiguousarray(reference[:, :, ::-1]))
    assert psnr(ours.images, reference_rgb, ours.masks[0] > 0.5) >= 35


@pytest.mark.slow
def test_matches_gfpganer_pasting_into_an_upscaled_frame(
    astronaut_rgb, retinaface_weights, detector, official_clean_network, official_reference_network
):
    import cv2

    from gfpganer_reference import gfpganer_enhance, make_face_helper

    big = cv2.resize(astronaut_rgb, (1024, 1024), interpolation=cv2.INTER_CUBIC)  # the "background upsampler"
    ours = restore_faces_in_images(to_batch(astronaut_rgb), official_clean_network, detector, targets=to_batch(big))
    assert ours.images.shape == (1, 3, 1024, 1024) and len(ours.faces) == 1
    face_region = ours.masks[0] > 0.5
    for pixel_centres, bound in ((True, 35), (False, 30)):  # facexlib pastes half a pixel off when upscaling
        reference, _ = gfpganer_enhance(
            make_face_helper(retinaface_weights, upscale=2), official_reference_network,
            np.ascontiguousarray(astronaut_rgb[:, :, ::-1]), upsample_img=np.ascontiguousarray(big[:, :, ::-1]),
            pixel_centres=pixel_centres,
        )
        assert psnr(ours.images, to_batch(np.ascontiguousarray(reference[:, :, ::-1])), face_region) >= bound


def iou(a, b) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    overlap = width * height
    return overlap / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - overlap)


@pytest.mark.parametrize("name", ["2048x2048", pytest.param("3840x2160", marks=pytest.mark.slow)])
def test_defaults_find_small_faces_in_a_big_frame(name, small_face_frames, detector):
    """Faces 70-100 px wide in a 2048x2048 / 3840x2160 frame: every one, where it was put (a 640 px working size
    found 3 of 4 and 6 of 8)."""
    frame, expected = small_face_frames[name]
    faces, crops = find_faces_in_frames(to_batch(frame), detector, DetectSettings())
    assert len(faces) == len(expected) and crops.shape[0] == len(expected)
    for box in expected:
        assert max(iou(box, face.box) for face in faces.faces) > 0.75, box


@pytest.mark.slow
@pytest.mark.parametrize("name", ["2048x2048", "3840x2160"])
def test_default_detection_equals_gfpganer_on_small_faces(name, small_face_frames, retinaface_weights, detector):
    """The default settings find GFPGANer's faces: same count, boxes and landmarks, same order (by score)."""
    from gfpganer_reference import make_face_helper

    frame, _ = small_face_frames[name]
    helper = make_face_helper(retinaface_weights)
    helper.read_image(np.ascontiguousarray(frame[:, :, ::-1]))
    with torch.no_grad():
        count = helper.get_face_landmarks_5(only_center_face=False, eye_dist_threshold=5)  # as GFPGANer.enhance
    faces, _, _ = find_faces(to_batch(frame), detector, DetectSettings())
    assert len(faces) == count == 4 * (1 + (name == "3840x2160"))
    np.testing.assert_allclose([f.box for f in faces.faces], np.array(helper.det_faces)[:, :4], atol=1e-2)
    np.testing.assert_allclose(torch.stack([f.landmarks.as_tensor() for f in faces.faces]).numpy(),
                               np.array(helper.all_landmarks_5), atol=1e-2)


def test_default_settings_drop_faces_with_close_eyes_as_gfpganer(monkeypatch, astronaut_rgb, detector):
    """GFPGANer skips faces whose eyes are under 5 px apart (side views, specks); so do the defaults."""
    import comfyui_gfpgan.face_pipeline.pipeline as pipeline

    def two_faces(detector, images, **_):
        def record(x, eye_distance):
            points = [(x, 50), (x + eye_distance, 50), (x + 2, 55), (x, 60), (x + eye_distance, 60)]
            return FaceRecord(0, (x - 5.0, 40.0, x + 15.0, 65.0), 0.99, Landmarks(*points))

        return FaceBatch([record(100, 4.9), record(300, 5.0)], [tuple(images.shape[-2:])])

    monkeypatch.setattr(pipeline, "detect_faces", two_faces)
    faces, _, _ = find_faces(to_batch(astronaut_rgb), detector, DetectSettings())
    assert [f.box[0] for f in faces.faces] == [295.0]
    faces, _, _ = find_faces(to_batch(astronaut_rgb), detector, DetectSettings(min_eye_distance=0))
    assert len(faces) == 2


def test_eye_distance_setting_reaches_detection(astronaut_rgb, detector):
    image = to_batch(astronaut_rgb)  # eyes 42.7 px apart
    assert len(find_faces(image, detector, DetectSettings(min_eye_distance=40))[0]) == 1
    assert len(find_faces(image, detector, DetectSettings(min_eye_distance=45))[0]) == 0


def test_order_and_indices_pick_faces_of_a_real_frame(small_face_frames, detector):
    frame, expected = small_face_frames["2048x2048"]  # faces 0, 1 in the top row (left, right), 2, 3 below
    image = to_batch(frame)

    def picked(**settings):
        faces, crops, _ = find_faces(image, detector, DetectSettings(**settings))
        assert crops.shape[0] == len(faces)
        return [max(range(4), key=lambda i: iou(expected[i], f.box)) for f in faces.faces]

    def placed(key, reverse=False):  # the faces' numbers, in an order of where they were put
        return sorted(range(4), key=lambda i: key(expected[i]), reverse=reverse)

    left_to_right = placed(lambda b: b[0] + b[2])
    top_to_bottom = placed(lambda b: b[1] + b[3])
    by_size = placed(lambda b: (b[2] - b[0]) * (b[3] - b[1]), reverse=True)
    assert picked(order="left_to_right", face_indices="0") == left_to_right[:1]
    assert picked(order="top_to_bottom", face_indices="2-3") == top_to_bottom[2:]
    assert picked(order="size", face_indices="0,3") == [by_size[0], by_size[3]] == [3, 0]  # 100 px, then 70 px
    assert picked(order="right_to_left", face_indices="0, 5") == left_to_right[-1:]  # position 5 does not exist
    assert picked(face_indices="9") == []


@pytest.mark.parametrize("settings,message", [
    (dict(threshold=5), "threshold"), (dict(threshold=-0.1), "threshold"), (dict(threshold=1.0), "threshold"),
    (dict(threshold=float("nan")), "threshold"), (dict(threshold="0.9"), "threshold"),
    (dict(working_size=-5), "working_size"), (dict(working_size=640.5), "working_size"),
    (dict(top_k=0), "top_k"), (dict(selection="top_k", top_k=-1), "top_k"),
    (dict(min_face_size=-1), "negative"), (dict(max_face_size=-8), "negative"),
    (dict(min_face_size=200, max_face_size=100), "above max_face_size"),
    (dict(min_eye_distance=-1), "negative"), (dict(min_eye_distance=float("inf")), "min_eye_distance"),
    (dict(selection="biggest"), "selection"), (dict(order="random"), "order"),
    (dict(face_indices="first"), "not an index"), (dict(face_indices="3-1"), "backwards"),
    (dict(smoothing=1.0), "smoothing"), (dict(smoothing=-0.5), "smoothing"),
])
def test_impossible_detect_settings_are_refused(settings, message):
    with pytest.raises(FaceInputError, match=message):
        DetectSettings(**settings)


def test_working_sizes_too_small_to_find_a_face_in_are_refused(astronaut_rgb, detector):
    for size in (1, 16, 63):  # --working-size 1 was accepted, and missed every face
        with pytest.raises(FaceInputError, match=r"working_size must be 0 \(full size\) or at least 64 px") as error:
            DetectSettings(working_size=size)
        assert "\n" not in str(error.value)
    assert DetectSettings(working_size=64).working_size == 64 and DetectSettings(working_size=0).working_size == 0
    assert len(find_faces(to_batch(astronaut_rgb), detector, DetectSettings(working_size=128))[0]) == 1


def test_detect_settings_defaults_are_gfpganers():
    from comfyui_gfpgan.face_detectors.retinaface import RETINAFACE

    settings = DetectSettings()  # threshold None: the detector's default, GFPGANer's 0.97 for RetinaFace
    assert (settings.threshold, RETINAFACE.default_threshold) == (None, 0.97)
    assert (settings.working_size, settings.min_eye_distance) == (0, 5)
    assert settings.face_indices == () and settings.order == "score" and settings.selection == "all"
    assert DetectSettings(face_indices="3, 0-1").face_indices == (0, 1, 3)  # parsed once, here
    assert DetectSettings(min_face_size=100, max_face_size=100, threshold=0).max_face_size == 100  # edges are fine


def test_identity_restorer_reproduces_the_photo(grace_hopper_rgb, detector):
    image = to_batch(grace_hopper_rgb)
    result = restore_faces_in_images(image, Identity(), detector)
    inside, outside = result.masks[0] > 0, result.masks[0] == 0
    assert inside.any() and outside.any()
    assert psnr(result.images, image, inside) >= 40
    assert torch.equal(result.images[0][:, outside], image[0][:, outside])


def test_constant_restorer_mask_is_smooth(astronaut_rgb, detector):
    def largest_step(feather):
        result = restore_faces_in_images(to_batch(astronaut_rgb), Constant(), detector, paste=PasteSettings(feather=feather))
        mask = result.masks[0]
        assert mask.max() == pytest.approx(1.0, abs=1e-3)
        return max((mask[1:] - mask[:-1]).abs().max(), (mask[:, 1:] - mask[:, :-1]).abs().max())

    # A ~95 px face: the default ramp spans ~10 px, so no neighbour step comes near a seam's 1.0.
    assert largest_step(1.0) < 0.2
    assert largest_step(2.0) < largest_step(1.0) / 1.5
    assert largest_step(0.0) > 0.5  # a hard edge, which the test would catch


def test_no_faces_and_mixed_batch(astronaut_rgb, detector):
    blank = torch.rand(1, 3, 512, 512) * 0.1
    batch = torch.cat([to_batch(astronaut_rgb), blank, to_batch(astronaut_rgb).flip(-1)])
    before = batch.clone()
    result = restore_faces_in_images(batch, Constant(), detector, frames_per_chunk=2, keep_crops=True)
    assert torch.equal(batch, before), "input modified in place"
    assert [f.image_index for f in result.faces.faces] == [0, 2]
    assert torch.equal(result.images[1], blank[0])
    assert not torch.equal(result.images[0], batch[0]) and not torch.equal(result.images[2], batch[2])
    assert result.masks[1].max() == 0 and result.frames_with_faces == [0, 2]
    assert result.crops.shape == result.restored.shape == (2, 3, 512, 512)
    lean = restore_faces_in_images(batch, Constant(), detector, frames_per_chunk=2)  # by default: no crops kept
    assert torch.equal(lean.images, result.images) and torch.equal(lean.masks, result.masks)
    assert lean.crops.shape == lean.restored.shape == (0, 3, 512, 512) and len(lean.faces) == 2


def test_comfyui_layout_comes_back_without_a_second_copy(astronaut_rgb, detector):
    """ComfyUI's [B,H,W,C] frames, viewed as [B,C,H,W]: the output is written in that memory layout, so the
    node hands it back to ComfyUI as it is (a long video batch is never copied whole), faceless frames bit-exact."""
    photo = torch.from_numpy(astronaut_rgb).float() / 255
    frames = torch.stack([photo, torch.rand_like(photo) * 0.1, photo.flip(1)])  # [B,H,W,C]
    result = restore_faces_in_images(frames.movedim(-1, 1), Constant(), detector, frames_per_chunk=2)
    out = result.images.movedim(1, -1)
    assert out.is_contiguous() and result.frames_with_faces == [0, 2]
    assert torch.equal(out[1], frames[1]) and not torch.equal(out[0], frames[0])


@pytest.mark.parametrize("shape", [(1, 3, 1, 1), (1, 3, 1, 640), (2, 4, 640, 1), (1, 1, 15, 900)])
def test_frames_too_small_for_a_face_pass_through_bit_exact(shape, detector):
    frames = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    result = restore_faces_in_images(frames, Constant(), detector)
    assert torch.equal(result.images, frames) and len(result.faces) == 0 and result.frames_with_faces == []
    assert result.masks.shape == (shape[0], *shape[-2:]) and result.masks.max() == 0


def test_multi_face_composite(astronaut_rgb, grace_hopper_rgb, detector):
    frame = torch.zeros(1, 3, 700, 1200)
    frame[:, :, :512, :512] = to_batch(astronaut_rgb)
    frame[:, :, 100:700, 600:1112] = to_batch(grace_hopper_rgb)
    result = restore_faces_in_images(frame, Constant(), detector)
    assert len(result.faces) == 2
    assert result.masks[0, :, :550].max() > 0.99 and result.masks[0, :, 600:].max() > 0.99


def test_rgba_keeps_alpha_and_gray_stays_gray(astronaut_rgb, detector):
    rgba = torch.cat([to_batch(astronaut_rgb), torch.rand(1, 1, 512, 512)], dim=1)
    result = restore_faces_in_images(rgba, Constant(), detector)
    assert result.images.shape == rgba.shape and torch.equal(result.images[:, 3], rgba[:, 3])
    gray = to_batch(astronaut_rgb).mean(dim=1, keepdim=True)
    for image in (gray, gray.expand(-1, 3, -1, -1).contiguous()):
        result = restore_faces_in_images(image, seeded_clean_network(0, out_size=512, narrow=0.25, num_mlp=2), detector)
        assert len(result.faces) == 1 and result.images.shape == image.shape
        if image.shape[1] == 3:
            assert torch.equal(result.images[:, 0], result.images[:, 1]) and torch.equal(result.images[:, 1], result.images[:, 2])


def test_paste_into_upscaled_targets(astronaut_rgb, detector):
    image = to_batch(astronaut_rgb)
    big = torch.nn.functional.interpolate(image, scale_factor=2, mode="bicubic", align_corners=False).clamp(0, 1)
    result = restore_faces_in_images(image, Identity(), detector, targets=big)
    same_size = restore_faces_in_images(image, Identity(), detector)
    assert result.images.shape == big.shape and result.masks.shape == (1, 1024, 1024)
    inside = result.masks[0] > 0
    assert psnr(result.images, big, inside) >= 39  # where it belongs (measured 41.6 dB; without the half-pixel shift 34.1)

    def centroid(mask):  # mask-weighted, in pixels (x, y)
        rows, cols = torch.meshgrid(*(torch.arange(n, dtype=torch.float64) for n in mask.shape), indexing="ij")
        return torch.stack([(cols * mask).sum(), (rows * mask).sum()]) / mask.sum()

    # pixel centres: x_big = 2 * (x + 0.5) - 0.5 (measured within 1e-5 px; without the shift 0.5 px off)
    assert torch.allclose(centroid(result.masks[0].double()), 2 * centroid(same_size.masks[0].double()) + 0.5, atol=0.05)


@pytest.mark.parametrize(
    "images,message",
    [
        (torch.zeros(1, 3, 0, 8), "empty"),
        (torch.zeros(1, 2, 8, 8), "channels"),
        (torch.zeros(1, 3, 8, 8, dtype=torch.uint8), "float"),
    ],
)
def test_bad_input_is_a_clear_error(images, message, detector):
    with pytest.raises(ValueError, match=message):
        restore_faces_in_images(images, Identity(), detector)


@pytest.mark.parametrize("settings,message", [
    (lambda: RestoreSettings(fidelity=1.5), "fidelity"),
    (lambda: RestoreSettings(fidelity=float("nan")), "fidelity"),
    (lambda: RestoreSettings(noise="random"), "noise"),
    (lambda: RestoreSettings(seed=-1), "seed"),
    (lambda: RestoreSettings(chunk_size=0), "chunk_size"),
    (lambda: RestoreSettings(dtype=torch.float16), "dtype"),
    (lambda: PasteSettings(mask="oval"), "mask"),
    (lambda: PasteSettings(feather=-1.0), "feather"),
    (lambda: PasteSettings(blend=1.1), "blend"),
    (lambda: PasteSettings(blend=-0.1), "blend"),
])
def test_impossible_settings_are_refused_where_they_are_made(settings, message):
    with pytest.raises(FaceInputError, match=message):
        settings()


def test_edge_settings_are_accepted():
    RestoreSettings(fidelity=0.0, seed=0, chunk_size=1, dtype=torch.bfloat16, noise="seeded")
    PasteSettings(mask="parsing", feather=0.0, blend=0.0, color_correction=True)


@pytest.mark.parametrize("where", ["images", "targets"])
def test_a_frame_with_nan_passes_through_and_the_batch_goes_on(where, astronaut_rgb, detector):
    photo = to_batch(astronaut_rgb)
    frames = photo.repeat(5, 1, 1, 1)
    targets = frames.clone()
    (frames if where == "images" else targets)[3, 1, 7, 9] = float("inf" if where == "targets" else "nan")
    untouched = frames.clone(), targets.clone()
    alone = restore_faces_in_images(photo, Constant(), detector)
    with pytest.warns(UserWarning, match=r"frames \[3\] contain NaN or infinite values: passed through unchanged"):
        result = restore_faces_in_images(frames, Constant(), detector, targets=targets, frames_per_chunk=2)
    assert result.skipped_frames == [3] and result.frames_with_faces == [0, 1, 2, 4]
    for good in (0, 1, 2, 4):  # the rest of the batch is restored as each frame alone would be (batched detection
        assert psnr(result.images[good], alone.images[0]) > 60  # differs from a lone frame's in the last float bits)
    expected = targets[3]  # the bad frame: the target's pixels, NaN / inf and all
    assert torch.equal(result.images[3].nan_to_num(-1.0), expected.nan_to_num(-1.0))
    assert not result.masks[3].any()
    assert torch.equal(frames.nan_to_num(-1), untouched[0].nan_to_num(-1))  # inputs never modified
    assert torch.equal(targets.nan_to_num(-1), untouched[1].nan_to_num(-1))
    with pytest.warns(UserWarning, match=r"frames \[3\]"):
        faces, crops = find_faces_in_frames(frames if where == "images" else targets, detector, DetectSettings(),
                                            frames_per_chunk=2)
    assert sorted({face.image_index for face in faces.faces}) == [0, 1, 2, 4] and crops.shape[0] == 4


class FailsOnFirstFace(Constant):
    """Gives NaN (or inf) for the first face it sees, 0.4 everywhere for the rest: a model that broke on one."""

    def __init__(self, bad: float):
        super().__init__()
        self.bad, self.calls = bad, 0

    def forward(self, x, fidelity=1.0, noise=None):
        self.calls += 1
        out = super().forward(x)
        if self.calls == 1:
            out[0, 1, 100:200, 100:200] = self.bad
        return out


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_a_face_the_model_gives_nan_for_is_left_as_it_was_and_reported(bad, astronaut_rgb, detector):
    frames = to_batch(astronaut_rgb).repeat(3, 1, 1, 1)
    alone = restore_faces_in_images(frames[:1], Constant(), detector)
    with pytest.warns(UserWarning, match=r"face crops \[0\]: the network's output holds NaN or infinite values"):
        result = restore_faces_in_images(frames, FailsOnFirstFace(bad), detector, frames_per_chunk=2,
                                         restore=RestoreSettings(chunk_size=1), keep_crops=True)
    assert result.unrestored_faces == [0] and len(result.faces) == 3  # found, but not restored
    assert torch.equal(result.images[0], frames[0]) and not result.masks[0].any()  # the original pixels
    assert torch.equal(result.restored[0], result.crops[0])  # (its crop comes back as it went in)
    for good in (1, 2):  # the rest of the batch is restored
        assert psnr(result.images[good], alone.images[0]) > 60 and result.masks[good].any()
    assert restore_faces_in_images(frames[:1], Constant(), detector).unrestored_faces == []


def test_finiteness_is_checked_a_chunk_at_a_time(detector, monkeypatch):
    frames = torch.rand(6, 3, 48, 48, generator=torch.Generator().manual_seed(1))
    checked = []
    isfinite = torch.isfinite

    def recording(tensor):
        checked.append(tuple(tensor.shape))
        return isfinite(tensor)

    monkeypatch.setattr(torch, "isfinite", recording)
    restore_faces_in_images(frames, Identity(), detector, targets=frames.clone(), frames_per_chunk=2)
    find_faces_in_frames(frames, detector, DetectSettings(), frames_per_chunk=2)
    # images and targets, chunk by chunk: never a [6,...] boolean copy of the batch
    frame_checks = [shape[0] for shape in checked if shape[1:] == (3, 48, 48)]
    assert frame_checks == [2] * 6 + [2] * 3


def test_huge_frame(astronaut_rgb, detector):
    frame = torch.zeros(1, 3, 4096, 4096)
    frame[:, :, 2000:2512, 3000:3512] = to_batch(astronaut_rgb)
    result = restore_faces_in_images(frame, Constant(), detector, detect=DetectSettings(working_size=2048))
    assert len(result.faces) == 1 and result.images.shape == frame.shape
    assert torch.equal(result.images[0, :, :1900], frame[0, :, :1900])


def test_settings_reach_the_stages(astronaut_rgb, detector):
    image = to_batch(astronaut_rgb)
    none = restore_faces_in_images(image, Constant(), detector, detect=DetectSettings(threshold=0.99999))
    assert len(none.faces) == 0 and torch.equal(none.images, image)
    half = restore_faces_in_images(image, Constant(), detector, paste=PasteSettings(blend=0.5))
    full = restore_faces_in_images(image, Constant(), detector)
    assert torch.allclose(half.images, (full.images + image) / 2, atol=1e-5)
    assert torch.allclose(half.masks, full.masks / 2, atol=1e-6)
    seeded = restore_faces_in_images(image, seeded_clean_network(1, narrow=0.25, num_mlp=2), detector,
                                     restore=RestoreSettings(noise="seeded", seed=3, fidelity=0.5))
    assert len(seeded.faces) == 1
    corrected = restore_faces_in_images(image, Constant(), detector, paste=PasteSettings(color_correction=True))
    assert not torch.allclose(corrected.images, full.images)


def test_landmark_smoothing_continues_across_chunks(astronaut_rgb, detector):
    frames = torch.cat([torch.roll(to_batch(astronaut_rgb), shifts=(dy, dx), dims=(2, 3))
                        for dy, dx in [(0, 0), (3, -2), (-2, 3), (2, 2), (-3, -1), (1, -3)]])
    settings = DetectSettings(smoothing=0.6)
    whole = restore_faces_in_images(frames, Constant(), detector, detect=settings, frames_per_chunk=6)
    chunked = restore_faces_in_images(frames, Constant(), detector, detect=settings, frames_per_chunk=2)
    def points(result):
        return torch.stack([f.landmarks.as_tensor() for f in result.faces.faces])

    assert torch.allclose(points(whole), points(chunked), atol=1e-3)
    # a video restored a call at a time (as the CLI does): each call continues from the last one's faces
    calls, previous = [], None
    for start in range(0, 6, 2):
        result = restore_faces_in_images(frames[start:start + 2], Constant(), detector, detect=settings,
                                         previous_faces=previous)
        calls.append(result)
        previous = result.last_faces
    assert torch.allclose(points(whole), torch.cat([points(call) for call in calls]), atol=1e-3)
    assert torch.equal(torch.cat([call.images for call in calls]), whole.images)
    restarted = restore_faces_in_images(frames[2:4], Constant(), detector, detect=settings)
    assert not torch.allclose(points(restarted), points(calls[1]), atol=0.1)
    raw = restore_faces_in_images(frames, Constant(), detector, frames_per_chunk=6)
    assert not torch.allclose(points(raw), points(whole), atol=0.1)


@pytest.mark.slow
def test_parsing_mask_narrows_the_paste(astronaut_rgb, detector, tmp_path):
    from facexlib.parsing.parsenet import ParseNet
    from safetensors.torch import save_file

    from comfyui_gfpgan.face_pipeline.parse import load_parser

    torch.manual_seed(0)  # seeded weights: no real parsing weights offline
    state_dict = {k: v.contiguous() for k, v in ParseNet(in_size=512, out_size=512, parsing_ch=19).state_dict().items()}
    save_file(state_dict, str(tmp_path / "parsenet.safetensors"))
    parser = load_parser(tmp_path / "parsenet.safetensors")
    image = to_batch(astronaut_rgb)
    parsed = restore_faces_in_images(image, Identity(), detector, parser, paste=PasteSettings(mask="parsing"))
    feathered = restore_faces_in_images(image, Identity(), detector)
    assert parsed.masks.max() > 0.99 and parsed.masks.sum() < 0.95 * feathered.masks.sum()
    assert (parsed.masks <= feathered.masks + 0.03).all()  # within the feathered mask: no crop edge can show
    inside, outside = parsed.masks[0] > 0, parsed.masks[0] == 0
    assert psnr(parsed.images, image, inside) >= 40
    assert torch.equal(parsed.images[0][:, outside], image[0][:, outside])
    with pytest.raises(ValueError, match="parser"):
        restore_faces_in_images(image, Identity(), detector, paste=PasteSettings(mask="parsing"))


def test_seeded_noise_does_not_depend_on_frame_chunks(astronaut_rgb, detector):
    network = seeded_clean_network(2, out_size=256, narrow=0.25, num_mlp=2)
    frames = torch.cat([to_batch(astronaut_rgb)] * 2)
    settings = RestoreSettings(noise="seeded", seed=5)

    def run(frames_per_chunk):
        return restore_faces_in_images(frames, network, detector, restore=settings, frames_per_chunk=frames_per_chunk,
                                       keep_crops=True)

    whole, one_by_one = run(2), run(1)
    assert len(whole.faces) == 2 and whole.restored.shape[-1] == 256
    # (batched detection moves landmarks by ~1e-5 px: float noise, nothing else)
    assert torch.allclose(whole.restored, one_by_one.restored, atol=1e-4)
    assert torch.allclose(whole.images, one_by_one.images, atol=1e-4)
    # each face draws its own noise: the same face in both frames comes out differently
    assert (whole.restored[0] - whole.restored[1]).abs().max() > 1e-2


def test_progress_reports_and_cancels(astronaut_rgb, detector):
    frames = torch.cat([to_batch(astronaut_rgb)] * 3)
    calls = []
    restore_faces_in_images(frames, Constant(), detector, frames_per_chunk=2,
                            on_progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (3, 3) and all(total == 3 for _, total in calls)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls) and (2, 3) in calls

    class Cancelled(Exception):
        pass

    def cancel_after_first_chunk(done, total):
        if done >= 2:
            raise Cancelled

    with pytest.raises(Cancelled):
        restore_faces_in_images(frames, Constant(), detector, frames_per_chunk=2, on_progress=cancel_after_first_chunk)
    with pytest.raises(ValueError, match="frames_per_chunk"):
        restore_faces_in_images(frames, Constant(), detector, frames_per_chunk=0)
