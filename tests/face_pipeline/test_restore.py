"""Chunked restoration: semantics, chunk independence, OOM back-off, cancel."""

import shutil
import warnings

import pytest
import torch

from comfyui_gfpgan.face_pipeline.errors import FaceInputError
from comfyui_gfpgan.face_pipeline.restore import restore_crops
from comfyui_gfpgan.face_restorers import CompiledNetwork

from factories import IdentityRestorer, seeded_clean_network

SMALL = dict(out_size=64, num_style_feat=32, channel_multiplier=1, num_mlp=2, narrow=0.25)


@pytest.fixture(scope="module")
def network():
    return seeded_clean_network(seed=4, **SMALL)


@pytest.fixture(scope="module")
def crops():
    return torch.rand(5, 3, 64, 64, generator=torch.Generator().manual_seed(0))


def test_matches_the_network_and_is_independent_of_chunking(network, crops):
    with torch.inference_mode():
        direct = network(crops * 2 - 1).add(1).div(2).clamp(0, 1)
    for chunk in (1, 2, 5, 8):
        assert torch.allclose(restore_crops(network, crops, chunk_size=chunk), direct, atol=1e-5)
    seeded = [restore_crops(network, crops, noise="seeded", seed=11, chunk_size=c) for c in (1, 3)]
    assert torch.allclose(seeded[0], seeded[1], atol=1e-5)
    assert not torch.allclose(seeded[0], restore_crops(network, crops, noise="seeded", seed=12), atol=1e-4)


def test_per_face_seeds_give_each_face_the_noise_of_its_own_run(network, crops):
    # a batch gathering faces of several images: face 2 is the second face of an image seeded 11
    batched = restore_crops(network, crops[:3], noise="seeded", seeds=[11, 20, 12], chunk_size=2)
    alone = [restore_crops(network, crops[:1], noise="seeded", seed=11)[0],
             restore_crops(network, crops[1:2], noise="seeded", seed=20)[0],
             restore_crops(network, crops[1:3], noise="seeded", seed=11)[1]]
    for face, expected in zip(batched, alone):
        assert torch.allclose(face, expected, atol=1e-5)
    assert not torch.allclose(batched[1], restore_crops(network, crops[1:2], noise="seeded", seed=1)[0], atol=1e-4)
    with pytest.raises(ValueError, match="2 seeds for 3 face crops"):
        restore_crops(network, crops[:3], noise="seeded", seeds=[1, 2])
    with pytest.raises(ValueError, match="seed must be a whole number"):
        restore_crops(network, crops[:2], noise="seeded", seeds=[1, -2])


def test_blend_mixes_in_image_space(network, crops):
    full = restore_crops(network, crops)
    assert torch.allclose(restore_crops(network, crops, blend=0.25), 0.75 * crops + 0.25 * full, atol=1e-5)
    assert torch.equal(restore_crops(network, crops, blend=0.0), crops)


def test_progress_and_cancel(network, crops):
    calls = []
    restore_crops(network, crops, chunk_size=2, on_chunk=lambda done, total: calls.append((done, total)))
    assert calls == [(2, 5), (4, 5), (5, 5)]

    class Cancelled(Exception):
        pass

    def cancel(done, total):
        raise Cancelled

    with pytest.raises(Cancelled):
        restore_crops(network, crops, chunk_size=2, on_chunk=cancel)


class RunsOutOfMemory(IdentityRestorer):
    """Identity network that fails like CUDA does when given more than ``limit`` faces."""

    out_size = 64

    def __init__(self, limit):
        super().__init__()
        self.limit, self.sizes = limit, []

    def forward(self, x, fidelity=1.0, noise=None):
        self.sizes.append(x.shape[0])
        if x.shape[0] > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return x


def test_out_of_memory_halves_the_chunk(crops):
    fake = RunsOutOfMemory(limit=2)
    out = restore_crops(fake, crops, chunk_size=8)
    assert torch.allclose(out, crops, atol=1e-6)
    assert fake.sizes[:3] == [5, 4, 2] and max(fake.sizes[3:]) <= 2
    with pytest.raises(torch.cuda.OutOfMemoryError):
        restore_crops(RunsOutOfMemory(limit=0), crops, chunk_size=4)


@pytest.mark.parametrize("kwargs,message", [
    (dict(noise="random"), "noise"),
    (dict(fidelity=1.5), "fidelity"),
    (dict(blend=-0.1), "blend"),
    (dict(chunk_size=0), "chunk_size"),
    (dict(seed=-1), "seed"),
])
def test_bad_settings(network, crops, kwargs, message):
    with pytest.raises(ValueError, match=message):
        restore_crops(network, crops, **kwargs)


def test_seeds_outside_the_generators_range_are_one_line_errors(network, crops):
    from comfyui_gfpgan.face_pipeline.pipeline import RestoreSettings

    SEED_MAX = 2**63 - 1  # a signed 64-bit integer's range: seed + a face index then fits the generator's
    for seed in (10**23, SEED_MAX + 1, -1, 1.5):  # 10**23 once died in torch: "Overflow when unpacking long long"
        with pytest.raises(FaceInputError, match=r"seed must be a whole number in 0\.\.9223372036854775807") as error:
            RestoreSettings(noise="seeded", seed=seed)
        assert "\n" not in str(error.value)
    RestoreSettings(noise="seeded", seed=SEED_MAX)
    # the largest seed, plus the face offsets the pipeline adds, still drives the generator
    out = restore_crops(network, crops[:2], noise="seeded", seed=SEED_MAX + 3)
    assert out.shape == (2, 3, 64, 64) and torch.isfinite(out).all()
    with pytest.raises(FaceInputError, match="seed must be a whole number in 0..18446744073709551615"):
        restore_crops(network, crops[:2], noise="seeded", seed=2**64 - 1)  # the second face's seed is 2**64
    with pytest.raises(FaceInputError, match="seed must be"):
        restore_crops(network, crops[:2], noise="seeded", seeds=[1, 10**23])


def test_a_face_whose_output_is_not_finite_comes_back_as_it_went_in_and_is_reported(crops):
    class BreaksOnMarkedFaces(IdentityRestorer):
        out_size = 64

        def forward(self, x, fidelity=1.0, noise=None):
            out = -x  # unlike its input, so a face left as it was is told from one restored
            out[x[:, 0, 0, 0] > 0.5, 0, 5, 5] = float("inf")  # inf once passed the clamp as a white pixel
            return out

    marked = crops.clone()
    marked[:, 0, 0, 0] = torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0])  # faces 1, 2 and 4 break the network
    reported = []
    with pytest.warns(UserWarning, match=r"face crops \[1, 2, 4\]: the network's output holds NaN or infinite"):
        out = restore_crops(BreaksOnMarkedFaces(), marked, chunk_size=2, on_not_finite=reported.append)
    assert reported == [[1, 2, 4]]
    assert torch.equal(out[[1, 2, 4]], marked[[1, 2, 4]])
    assert torch.allclose(out[[0, 3]], 1 - marked[[0, 3]], atol=1e-6)


def test_wrong_crop_size(network):
    with pytest.raises(ValueError, match=r"\[N,3,64,64\]"):
        restore_crops(network, torch.rand(1, 3, 32, 32))


def test_bfloat16_compute_dtype(network, crops):
    full = restore_crops(network, crops[:2])
    bf16 = restore_crops(network, crops[:2], dtype=torch.bfloat16)
    assert bf16.dtype == torch.float32 and not torch.equal(bf16, full)  # it did run in bf16
    mse = ((bf16 - full) ** 2).mean()
    assert 10 * torch.log10(1 / mse) > 51  # (measured 54.2 dB)
    assert torch.equal(restore_crops(network, crops[:2], dtype=torch.float32), full)
    with pytest.raises(ValueError, match="float16"):
        restore_crops(network, crops, dtype=torch.float16)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None, reason="inductor needs a C++ compiler")
def test_compiled_network_matches_eager(network, crops):
    compiled = CompiledNetwork(network)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # a failed compile warns and falls back: fail instead
        got = [restore_crops(compiled, crops[:2], fidelity=f) for f in (1.0, 0.5)]
    assert all(torch.allclose(g, restore_crops(network, crops[:2], fidelity=f), atol=1e-5) for g, f in zip(got, (1.0, 0.5)))
    assert not torch.allclose(got[0], got[1], atol=1e-4)  # the fidelity reached the compiled graph


def test_failed_compile_warns_once_and_runs_eagerly(network, crops, monkeypatch):
    calls = []

    def compile_without_a_compiler(function, **options):
        def compiled(*args, **kwargs):
            calls.append(1)
            raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found\n(long inductor trace)")
        return compiled

    monkeypatch.setattr(torch, "compile", compile_without_a_compiler)
    compiled = CompiledNetwork(network)
    with pytest.warns(UserWarning, match=r"uncompiled: InvalidCxxCompiler: No working C\+\+ compiler found$"):
        first = restore_crops(compiled, crops[:2])
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        second = restore_crops(compiled, crops[:2])
    assert len(calls) == 1
    expected = restore_crops(network, crops[:2])
    assert torch.equal(first, expected) and torch.equal(second, expected)


def test_cpu_crops_reach_the_network_in_channels_last(crops):
    layouts = []

    class RecordsLayout(IdentityRestorer):
        out_size = 64

        def forward(self, x, fidelity=1.0, noise=None):
            layouts.append(x.is_contiguous(memory_format=torch.channels_last))
            return x

    assert torch.allclose(restore_crops(RecordsLayout(), crops, chunk_size=2), crops, atol=1e-6)
    assert layouts == [True, True, True]
