"""Paste-back on synthetic faces (no detector): round trip, masks, order, colour, targets, odd frames."""

import pytest
import torch

from comfyui_gfpgan.face_pipeline import paste as paste_module
from comfyui_gfpgan.face_pipeline.align import FFHQ_TEMPLATE_512, align_faces, crop_faces
from comfyui_gfpgan.face_pipeline.errors import FaceInputError
from comfyui_gfpgan.face_pipeline.faces import FaceBatch, FaceRecord, Landmarks
from comfyui_gfpgan.face_pipeline.paste import paste_faces
from comfyui_gfpgan.face_pipeline.restore import restore_crops

from factories import IdentityRestorer

CROP = 128


def face_at(image_index: int, cx: float, cy: float, size: float) -> FaceRecord:
    """A face whose aligned crop covers roughly a ``size`` square centred on (cx, cy)."""
    points = (FFHQ_TEMPLATE_512 / 512 - 0.5) * size + torch.tensor([cx, cy], dtype=torch.float64)
    box = (cx - size / 3, cy - size / 3, cx + size / 3, cy + size / 3)
    return FaceRecord(image_index, box, 0.99, Landmarks.from_tensor(points))


def smooth_frames(count: int, height: int, width: int, channels: int = 3, seed: int = 0) -> torch.Tensor:
    coarse = torch.rand(count, channels, height // 16, width // 16, generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=False).clamp(0, 1)


def aligned(images: torch.Tensor, faces: list[FaceRecord], crop_size: int = CROP):
    rgb = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images[:, :3]
    batch = FaceBatch(faces, [tuple(images.shape[-2:])] * images.shape[0], crop_size)
    return align_faces(rgb, batch, crop_size)


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(10 * torch.log10(1 / ((a.double() - b.double()) ** 2).mean()))


def solid(count: int, color: tuple[float, float, float], size: int = CROP) -> torch.Tensor:
    return torch.tensor(color).view(1, 3, 1, 1).expand(count, 3, size, size).clone()


def test_identity_round_trip_on_the_photo(astronaut_rgb):
    # The README's landmarks for this photo: alignment and paste alone, no detector.
    image = torch.from_numpy(astronaut_rgb).permute(2, 0, 1)[None].float() / 255
    points = torch.tensor([[204.8, 100.8], [247.4, 103.4], [223.6, 129.2], [202.5, 138.1], [244.2, 140.6]])
    face = FaceRecord(0, (177.9, 56.8, 273.1, 177.2), 0.9995, Landmarks.from_tensor(points))
    faces, crops = aligned(image, [face], 512)
    before = image.clone()
    output, union = paste_faces(image, faces, crops)
    assert torch.equal(image, before), "input modified in place"
    inside, outside = union[0] > 0, union[0] == 0
    assert inside.sum() > 5000 and outside.any()
    assert psnr(output[0][:, inside], image[0][:, inside]) >= 40
    assert torch.equal(output[0][:, outside], image[0][:, outside])


def test_each_face_is_warped_only_over_its_own_window(monkeypatch):
    frames = smooth_frames(1, 1024, 1536)
    faces, crops = aligned(frames, [face_at(0, 300, 300, 120), face_at(0, 1200, 700, 200)])
    sizes = []
    original = paste_module.warp_affine

    def recording(images, affines, out_size, *args, **kwargs):
        sizes.append(out_size)
        return original(images, affines, out_size, *args, **kwargs)

    monkeypatch.setattr(paste_module, "warp_affine", recording)
    output, union = paste_faces(frames, faces, crops)
    assert len(sizes) == 2
    for (h, w), size in zip(sizes, (120, 200)):
        assert h * w < 4 * size * size < frames.shape[-1] * frames.shape[-2] / 4
    assert union[0, 300, 300] > 0.99 and union[0, 700, 1200] > 0.99 and union[0, 700, 300] == 0


def colour_frame(height: int, width: int) -> torch.Tensor:
    """A flat, not gray, frame (a gray one would turn the pasted faces gray)."""
    return torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1).expand(1, 3, height, width).clone()


def test_constant_face_gives_a_smooth_mask_that_scales_with_face_size():
    frames = colour_frame(600, 800)

    def ramp_width(size: float) -> int:
        faces, _ = aligned(frames, [face_at(0, 400, 300, size)])
        output, union = paste_faces(frames, faces, solid(1, (1.0, 0.0, 0.0)))
        steps = max((union[0, 1:] - union[0, :-1]).abs().max(), (union[0, :, 1:] - union[0, :, :-1]).abs().max())
        assert steps < 4.0 / (size / 20), "mask steps too large for its feathered edge"
        assert union.max() == pytest.approx(1.0, abs=1e-3)
        assert torch.allclose(output[0, 0, 300, 400], torch.tensor(1.0)) and output[0, 1, 300, 400] < 1e-3
        row = union[0, 300]
        return int(((row > 0.05) & (row < 0.95)).sum())

    small, large = ramp_width(150), ramp_width(300)
    assert small >= 6 and 1.6 < large / small < 2.4


def test_hard_edge_without_feather():
    frames = colour_frame(300, 300)
    faces, _ = aligned(frames, [face_at(0, 150, 150, 150)])
    _, union = paste_faces(frames, faces, solid(1, (1.0, 1.0, 1.0)), feather=0.0)
    assert (union[0, 1:] - union[0, :-1]).abs().max() > 0.5  # the smoothness check above can fail


def test_faces_touching_the_border():
    frames = smooth_frames(1, 256, 256, seed=2)
    faces, crops = aligned(frames, [face_at(0, 10, 20, 160), face_at(0, 250, 250, 120)])
    output, union = paste_faces(frames, faces, solid(2, (0.0, 1.0, 0.0)))
    assert output.shape == frames.shape and torch.isfinite(output).all()
    assert union[0, 20, 10] > 0.99 and union[0, 250, 250] > 0.99 and union[0, 128, 128] == 0
    assert torch.allclose(output[0, :, 20, 10], torch.tensor([0.0, 1.0, 0.0]), atol=1e-3)
    # a face wholly outside the frame is skipped, not an error
    gone, _ = aligned(frames, [face_at(0, -500, -500, 100)])
    output, union = paste_faces(frames, gone, solid(1, (1.0, 0.0, 0.0)))
    assert torch.equal(output, frames) and union.max() == 0


def test_overlapping_faces_composite_in_face_order():
    frames = colour_frame(240, 240)
    first, second = face_at(0, 105, 120, 140), face_at(0, 135, 120, 140)
    colors = solid(1, (1.0, 0.0, 0.0)), solid(1, (0.0, 0.0, 1.0))

    def paste(order):
        faces, _ = aligned(frames, [(first, second)[i] for i in order])
        return paste_faces(frames, faces, torch.cat([colors[i] for i in order]))[0][0, :, 120, 120]

    assert torch.allclose(paste([0, 1]), torch.tensor([0.0, 0.0, 1.0]), atol=1e-3)  # the later face is on top
    assert torch.allclose(paste([1, 0]), torch.tensor([1.0, 0.0, 0.0]), atol=1e-3)
    assert torch.equal(paste([0, 1]), paste([0, 1]))


def test_frames_with_different_face_counts_and_no_faces():
    frames = smooth_frames(3, 200, 200, seed=3)
    faces, _ = aligned(frames, [face_at(0, 60, 60, 80), face_at(0, 140, 140, 80), face_at(2, 100, 100, 100)])
    output, union = paste_faces(frames, faces, solid(3, (1.0, 1.0, 1.0)))
    assert torch.equal(output[1], frames[1]) and union[1].max() == 0
    assert union[0, 60, 60] > 0.99 and union[0, 140, 140] > 0.99 and union[2, 100, 100] > 0.99
    empty = FaceBatch([], [(200, 200)] * 3, CROP)
    output, union = paste_faces(frames, empty, torch.zeros(0, 3, CROP, CROP))
    assert torch.equal(output, frames) and output is not frames and union.max() == 0


def test_colour_correction_matches_the_original_statistics():
    frames = smooth_frames(1, 256, 256, seed=4)
    faces, crops = aligned(frames, [face_at(0, 128, 128, 160)])
    tinted = crops * 0.5 + torch.tensor([0.4, 0.1, 0.3]).view(1, 3, 1, 1)  # a colour cast, per channel affine
    plain, union = paste_faces(frames, faces, tinted)
    corrected, _ = paste_faces(frames, faces, tinted, color_correction=True)
    inside = union[0] > 0
    error_plain = psnr(plain[0][:, inside], frames[0][:, inside])
    error_corrected = psnr(corrected[0][:, inside], frames[0][:, inside])
    assert error_corrected >= 35 and error_corrected > error_plain + 10


def bright_frame(height: int, width: int) -> torch.Tensor:
    """A bright, slightly textured frame: the crops' black or gray outside it stands out in any statistic."""
    texture = smooth_frames(1, height, width, seed=10)
    return (torch.tensor([0.85, 0.75, 0.85]).view(1, 3, 1, 1) + 0.1 * texture).clamp(0, 1)


@pytest.mark.parametrize("cx,cy", [(30, 30), (370, 280)])  # the crop reaches past the top-left / bottom-right corner
def test_colour_correction_leaves_out_crop_pixels_outside_the_frame(cx, cy):
    frames = bright_frame(300, 400)
    faces, crops = aligned(frames, [face_at(0, cx, cy, 200)], 512)
    restored = restore_crops(IdentityRestorer(), crops)
    plain, union = paste_faces(frames, faces, restored)
    corrected, _ = paste_faces(frames, faces, restored, color_correction=True)
    inside = union[0] > 0
    error_plain = psnr(plain[0][:, inside], frames[0][:, inside])
    error_corrected = psnr(corrected[0][:, inside], frames[0][:, inside])
    assert error_plain > 50  # (measured 53-59 dB; counting the border gave 28 dB with correction)
    assert error_corrected > error_plain - 0.5


def test_colour_reference_crops_move_only_the_face_window():
    frames = bright_frame(300, 400)
    faces, _ = aligned(frames, [face_at(0, 30, 30, 200), face_at(0, 200, 150, 120)], 512)
    affines = torch.stack([face.affine for face in faces.faces])
    originals, in_frame = paste_module._in_frame_crops(frames, faces, 512, frames.device)
    assert torch.allclose(originals, crop_faces(frames, faces, affines, 512), atol=1e-4)
    assert torch.allclose(in_frame, crop_faces(torch.ones(1, 1, 300, 400), faces, affines, 512), atol=1e-4)
    assert in_frame[0].min() == 0 and in_frame[1].min() > 0.999  # the corner face's crop reaches outside


def test_gray_stays_gray_and_alpha_is_kept():
    colourful = torch.rand(1, 3, CROP, CROP, generator=torch.Generator().manual_seed(5))
    gray = smooth_frames(1, 200, 200, channels=1, seed=5)
    faces, _ = aligned(gray, [face_at(0, 100, 100, 120)])
    output, union = paste_faces(gray, faces, colourful)
    assert output.shape == gray.shape and not torch.equal(output, gray)
    gray3 = gray.expand(-1, 3, -1, -1).contiguous()
    output3, _ = paste_faces(gray3, faces, colourful)
    assert torch.equal(output3[:, 0], output3[:, 1]) and torch.equal(output3[:, 1], output3[:, 2])
    assert torch.allclose(output3[:, :1], output, atol=1e-6)
    rgba = torch.cat([smooth_frames(1, 200, 200, seed=6), torch.rand(1, 1, 200, 200)], dim=1)
    output4, _ = paste_faces(rgba, faces, colourful)
    assert torch.equal(output4[:, 3], rgba[:, 3]) and not torch.equal(output4[:, :3], rgba[:, :3])


def test_paste_into_upscaled_targets():
    frames = smooth_frames(1, 200, 300, seed=7)
    faces, crops = aligned(frames, [face_at(0, 120, 90, 110)])
    big = torch.nn.functional.interpolate(frames, scale_factor=3, mode="bicubic", align_corners=False).clamp(0, 1)
    small_out, small_union = paste_faces(frames, faces, crops)
    big_out, big_union = paste_faces(frames, faces, crops, targets=big)
    assert big_out.shape == big.shape and big_union.shape == (1, 600, 900)
    inside = big_union[0] > 0.5
    assert psnr(big_out[0][:, inside], big[0][:, inside]) >= 50  # (measured 55.6 dB; without the half-pixel shift 38.4)

    def centroid(mask):
        rows, cols = torch.nonzero(mask > 0.5, as_tuple=True)
        return torch.stack([cols.float().mean(), rows.float().mean()])

    # pixel centres: x_big = 3 * (x + 0.5) - 0.5 (measured 0.02 px off; without the shift 1 px)
    assert torch.allclose(centroid(big_union[0]), 3 * centroid(small_union[0]) + 1, atol=0.1)


def test_parsing_mask_only_narrows_the_feathered_mask():
    frames = smooth_frames(1, 200, 200, seed=8)
    faces, _ = aligned(frames, [face_at(0, 100, 100, 140)])
    white = solid(1, (1.0, 1.0, 1.0))
    feathered, feathered_union = paste_faces(frames, faces, white)
    ones, ones_union = paste_faces(frames, faces, white, mask="parsing", parse_masks=torch.ones(1, CROP, CROP))
    assert torch.equal(ones, feathered) and torch.equal(ones_union, feathered_union)
    left_half = torch.zeros(1, CROP, CROP)
    left_half[:, :, : CROP // 2] = 1
    _, half_union = paste_faces(frames, faces, white, mask="parsing", parse_masks=left_half)
    assert (half_union <= feathered_union + 0.03).all()  # bicubic rings a little at this hard test edge
    assert half_union[0, 100, 80] > 0.9 and half_union[0, 100, 120] < 0.1


def test_blend_scales_the_mask():
    frames = smooth_frames(1, 200, 200, seed=9)
    faces, _ = aligned(frames, [face_at(0, 100, 100, 140)])
    white = solid(1, (1.0, 1.0, 1.0))
    full, full_union = paste_faces(frames, faces, white)
    half, half_union = paste_faces(frames, faces, white, blend=0.5)
    assert torch.allclose(half, (full + frames) / 2, atol=1e-5) and torch.allclose(half_union, full_union / 2)


def test_bad_inputs_are_clear_errors():
    frames = smooth_frames(1, 100, 100)
    faces, crops = aligned(frames, [face_at(0, 50, 50, 60)])
    with pytest.raises(FaceInputError, match="2 restored"):
        paste_faces(frames, faces, crops.expand(2, -1, -1, -1))
    with pytest.raises(FaceInputError, match="mask"):
        paste_faces(frames, faces, crops, mask="oval")
    with pytest.raises(FaceInputError, match="parse_masks"):
        paste_faces(frames, faces, crops, mask="parsing")
    with pytest.raises(FaceInputError, match="affine"):
        paste_faces(frames, FaceBatch([face_at(0, 50, 50, 60)], [(100, 100)], CROP), crops)
    with pytest.raises(FaceInputError, match="frames"):
        paste_faces(torch.cat([frames, frames]), faces, crops)
    with pytest.raises(FaceInputError, match="feather"):
        paste_faces(frames, faces, crops, feather=-1)
