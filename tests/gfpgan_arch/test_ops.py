"""Pure-torch StyleGAN2 ops against straightforward reference formulas."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from comfyui_gfpgan.gfpgan_arch.ops import fused_leaky_relu, resample_kernel, upfirdn2d


def reference_upfirdn2d(x: np.ndarray, kernel: np.ndarray, up: int, down: int, pad: tuple[int, int]) -> np.ndarray:
    """The definition, one output pixel at a time: zero-stuff, pad, true 2D convolution, decimate."""
    h, w = x.shape
    stuffed = np.zeros((h * up, w * up))
    stuffed[::up, ::up] = x
    before, after = pad
    padded = np.zeros((h * up + before + after, w * up + before + after))
    padded[before : before + h * up, before : before + w * up] = stuffed
    kh, kw = kernel.shape
    flipped = kernel[::-1, ::-1]
    out_h, out_w = padded.shape[0] - kh + 1, padded.shape[1] - kw + 1
    out = np.array([[np.sum(padded[i : i + kh, j : j + kw] * flipped) for j in range(out_w)] for i in range(out_h)])
    return out[::down, ::down]


# Tolerance per dtype, relative to the largest output (about 9 here): float64's rounding and fp32's over 12 taps,
# summed in an order that differs between CPUs (AVX-512 or not); bf16 and fp16 are blurred in fp32 and rounded
# once, to within half a unit in the last place: 2**-8 and 2**-11 of a value.
TOLERANCES = {torch.float64: 1e-14, torch.float32: 1e-6, torch.bfloat16: 2**-7, torch.float16: 2**-10}


@pytest.mark.parametrize("dtype", list(TOLERANCES), ids=str)
@pytest.mark.parametrize("up,down,pad", [(1, 1, (1, 2)), (2, 1, (2, 1)), (1, 2, (1, 1)), (2, 2, (1, 2))])
def test_upfirdn2d_matches_the_definition(up, down, pad, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((9, 7))
    kernel = rng.standard_normal((4, 3))  # asymmetric, so a missing flip would show
    ours = upfirdn2d(torch.from_numpy(x)[None, None].to(dtype), torch.from_numpy(kernel), up=up, down=down, pad=pad)
    assert ours.dtype == dtype
    # The definition on the input and kernel as the op sees them, rounded to dtype.
    x, kernel = (torch.from_numpy(a).to(dtype).double().numpy() for a in (x, kernel))
    expected = reference_upfirdn2d(x, kernel, up, down, pad)
    assert np.abs(ours[0, 0].double().numpy() - expected).max() <= TOLERANCES[dtype] * np.abs(expected).max()


def test_upfirdn2d_under_cpu_autocast_blurs_in_fp32():
    x, kernel = torch.randn(1, 4, 8, 8), resample_kernel()
    with torch.autocast("cpu", dtype=torch.bfloat16):  # how bf16 compute runs: no per-channel bf16 loop
        blurred = upfirdn2d(x, kernel, up=2, pad=(2, 1))
    assert blurred.dtype == torch.float32 and torch.equal(blurred, upfirdn2d(x, kernel, up=2, pad=(2, 1)))


def test_upfirdn2d_negative_pad_crops():
    x = torch.arange(36.0).view(1, 1, 6, 6)
    identity = torch.ones(1, 1)
    assert torch.equal(upfirdn2d(x, identity, pad=(-1, -2)), x[..., 1:4, 1:4])


def test_upfirdn2d_channels_are_independent():
    x = torch.randn(2, 3, 8, 8)
    kernel = resample_kernel()
    whole = upfirdn2d(x, kernel, up=2, pad=(2, 1))
    per_channel = torch.cat([upfirdn2d(x[:, c : c + 1], kernel, up=2, pad=(2, 1)) for c in range(3)], dim=1)
    assert torch.allclose(whole, per_channel) and whole.shape == (2, 3, 16, 16)
    assert resample_kernel().sum() == pytest.approx(1.0)


def test_fused_leaky_relu_formula():
    x, bias = torch.randn(2, 4, 3, 3), torch.randn(4)
    expected = torch.where(x + bias[:, None, None] >= 0, x + bias[:, None, None], 0.2 * (x + bias[:, None, None])) * 2**0.5
    assert torch.allclose(fused_leaky_relu(x, bias), expected)
    assert torch.allclose(fused_leaky_relu(x, None, 0.0, 1.0), F.relu(x))
