"""GPEN (gpen_arch): parity with upstream's CPU path, key detection, loading, batching, bf16, errors.

The reference (tests/data/gpen_reference.safetensors, 148 KB) holds upstream GPEN's outputs
(yangxy/GPEN @ 2c73670, face_model/gpen_model.py FullGenerator, its CPU path: upfirdn2d_native and
the textbook fused leaky ReLU) on ``seeded_gpen_network`` weights at the official configs:
256 px (seed 0, a batch of 2, every 4th pixel kept) and 512 px (seed 1, one face, every 8th pixel),
inputs ``torch.rand(B, 3, S, S, generator=manual_seed(100 + S)) * 2 - 1``. Upstream draws no random
noise there (its FullGenerator injects the encoder's features), so nothing needs matching; the
script checked that two upstream runs are equal. Made by /tmp/gpen/make_reference.py, whose
docstring the report quotes: load the seeded state dict into upstream's FullGenerator(strict=True),
run, keep the strided samples.
"""

import pytest
import torch
from safetensors.torch import load_file, save_file

from comfyui_gfpgan.face_pipeline.restore import restore_crops
from comfyui_gfpgan.face_restorers import detect_family, load_face_restorer
from comfyui_gfpgan.face_restorers.families import GPEN as GPEN_FAMILY
from comfyui_gfpgan.gfpgan_arch import is_gfpgan
from comfyui_gfpgan.gpen_arch import GPEN, detect_architecture, is_gpen
from comfyui_gfpgan.gpen_arch.testing import OFFICIAL_CONFIGS, seeded_gpen_network
from comfyui_gfpgan.model_files import ModelLoadError

from factories import seeded_clean_network
from paths import TESTS

REFERENCE = TESTS / "data" / "gpen_reference.safetensors"
# Small enough for quick tests, yet every kind of layer: encoder stages, 64 px level (channel multiplier).
SMALL = dict(size=64, style_dim=64, n_mlp=2, channel_multiplier=1, narrow=0.125, is_concat=True)


def seeded_input(batch: int, size: int, seed: int) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR of two [-1, 1] images (clamped as the pipeline does) on a 0..1 scale."""
    mse = (a.clamp(-1, 1) - b.clamp(-1, 1)).div(2).pow(2).mean()
    return float(10 * torch.log10(1 / mse))


@pytest.fixture(scope="module")
def small_network():
    return seeded_gpen_network(**SMALL, seed=5)


@pytest.fixture(scope="module")
def reference():
    return load_file(str(REFERENCE))


@pytest.mark.slow
@pytest.mark.parametrize("size,seed,batch,stride", [(256, 0, 2, 4), (512, 1, 1, 8)], ids=["256", "512"])
def test_matches_upstream_reference(reference, size, seed, batch, stride):
    network = seeded_gpen_network(size, seed=seed)
    x = seeded_input(batch, size, 100 + size)
    with torch.inference_mode():
        out = network(x)[:, :, stride // 2 :: stride, stride // 2 :: stride]
        # A batch of one modulates the weights, a larger batch the activations: check both paths.
        single = network(x[-1:])[:, :, stride // 2 :: stride, stride // 2 :: stride]
    expected = reference[f"out{size}"]
    diff = (out - expected).abs().max()
    print(f"GPEN {size}px vs upstream: max abs diff {diff:.2e} (outputs up to {expected.abs().max():.2f})")
    assert out.shape == expected.shape and diff <= 1e-4  # (measured 4.2e-06 at 256; 0 at 512, one face)
    assert (single - expected[-1:]).abs().max() <= 1e-4


def meta_state_dict(**config) -> dict[str, torch.Tensor]:
    """The state dict of a GPEN of ``config`` as shapes only (meta tensors): 1024 / 2048 px networks
    hold 100M+ parameters, too many to fill for a test that reads only shapes."""
    with torch.device("meta"):
        return GPEN(**config).state_dict()


@pytest.mark.parametrize(
    "config",
    [*OFFICIAL_CONFIGS.values(), SMALL, {**SMALL, "is_concat": False, "n_mlp": 3, "channel_multiplier": 2},
     {**SMALL, "size": 32, "channel_multiplier": 2}, {**SMALL, "size": 128, "narrow": 0.25, "style_dim": 32}],
    ids=["256", "512", "1024", "2048", "small", "added-noise", "32px", "128px"],
)
def test_detection_round_trips(config):
    spec = detect_architecture(meta_state_dict(**config), "gpen.pth")
    assert spec.name == "GPEN" and spec.config == config and spec.crop_size == config["size"]
    assert type(spec.config["channel_multiplier"]) is int  # as upstream builds it (int(16 * cm * narrow) ...)


def test_random_weights_detect_and_load(small_network):
    spec = detect_architecture(small_network.state_dict())
    rebuilt = GPEN(**spec.config)
    rebuilt.load_state_dict(small_network.state_dict(), strict=True)


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_loads_the_official_layout(tmp_path, small_network, suffix):
    # The official files are bare state dicts (upstream calls load_state_dict on torch.load's result).
    state_dict = {k: v.contiguous() for k, v in small_network.state_dict().items()}
    path = tmp_path / f"GPEN-BFR-64{suffix}"
    torch.save(state_dict, path) if suffix == ".pth" else save_file(state_dict, str(path))
    restorer = load_face_restorer(path)
    assert restorer.family is GPEN_FAMILY and restorer.arch == "GPEN" and restorer.crop_size == 64
    assert restorer.config == SMALL and not restorer.has_fidelity
    x = seeded_input(2, 64, 1)
    with torch.inference_mode():
        assert torch.equal(restorer(x, fidelity=0.3, noise=None), small_network(x))


@pytest.mark.slow
def test_official_256_file_loads(tmp_path):
    network = seeded_gpen_network(256, seed=0)
    path = tmp_path / "GPEN-BFR-256.pth"
    torch.save(network.state_dict(), path)
    restorer = load_face_restorer(path)
    assert restorer.config == OFFICIAL_CONFIGS[256] and restorer.crop_size == 256
    for key, value in network.state_dict().items():
        assert torch.equal(restorer.network.state_dict()[key], value), key


def test_family_has_no_fidelity_or_noise_knob():
    # Upstream's FullGenerator feeds every noise input from the encoder, so no random draw is left to seed.
    assert GPEN_FAMILY.fidelity is None and GPEN_FAMILY.noise is False and GPEN_FAMILY.input_range == (-1.0, 1.0)
    assert "non-commercial" in GPEN_FAMILY.licence


def test_output_is_deterministic_and_seed_free(small_network):
    from comfyui_gfpgan.face_restorers.interface import TorchFaceRestorer

    spec = detect_architecture(small_network.state_dict())
    restorer = TorchFaceRestorer(small_network, GPEN_FAMILY, spec)
    crops = seeded_input(3, 64, 2).add(1).div(2)
    rng_state = torch.get_rng_state()
    fixed = restore_crops(restorer, crops, noise="fixed")
    seeded = restore_crops(restorer, crops, noise="seeded", seed=7)
    assert torch.equal(torch.get_rng_state(), rng_state), "inference must not touch the global RNG"
    assert torch.equal(fixed, seeded) and torch.equal(fixed, restore_crops(restorer, crops, noise="fixed"))
    # Batched (activations modulated) == one face at a time (weights modulated), whatever the chunking.
    for chunk in (1, 2):
        assert (restore_crops(restorer, crops, chunk_size=chunk) - fixed).abs().max() < 1e-5
    assert (restore_crops(restorer, crops[1:2]) - fixed[1:2]).abs().max() < 1e-5
    # The encoder features reach the generator: a face's output depends on its own input only.
    other = crops.clone()
    other[0] = 1 - other[0]
    changed = restore_crops(restorer, other, chunk_size=3)
    assert not torch.allclose(changed[0], fixed[0], atol=1e-3)
    assert (changed[1:] - fixed[1:]).abs().max() < 1e-5


def test_feature_injection_matters(small_network):
    """With the injection strengths zeroed the output changes: the concatenated features are used."""
    x = seeded_input(1, 64, 3)
    muted = seeded_gpen_network(**SMALL, seed=5)
    with torch.no_grad():
        for name, param in muted.named_parameters():
            if name.endswith("noise.weight"):
                param.zero_()
    with torch.inference_mode():
        assert not torch.allclose(small_network(x), muted(x), atol=1e-3)


def bf16_quality(network: GPEN, x: torch.Tensor) -> tuple[float, float]:
    """PSNR of bf16 against fp32: under autocast (fp32 weights) and with bf16 weights and input."""
    with torch.inference_mode():
        fp32 = network(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast = network(x).float()
        bf16 = network.to(torch.bfloat16)(x.to(torch.bfloat16)).float()
    network.float()
    return psnr(fp32, autocast), psnr(fp32, bf16)


def test_bfloat16_stays_close_to_fp32(small_network):
    quality = bf16_quality(small_network, seeded_input(2, 64, 4))
    print(f"GPEN-64 bf16 vs fp32 PSNR: autocast {quality[0]:.1f} dB, bf16 weights {quality[1]:.1f} dB")
    assert quality[0] > 50 and quality[1] > 47  # (measured 53.4 and 50.5 dB)


@pytest.mark.slow
def test_bfloat16_stays_close_to_fp32_at_the_official_256_config():
    # One face: the CPU runs bf16 convolutions without native support, about 10x slower than fp32.
    quality = bf16_quality(seeded_gpen_network(256, seed=0), seeded_input(1, 256, 4))
    print(f"GPEN-256 bf16 vs fp32 PSNR: autocast {quality[0]:.1f} dB, bf16 weights {quality[1]:.1f} dB")
    assert quality[0] > 46 and quality[1] > 46  # (measured 49.1 and 49.1 dB)


def test_damaged_state_dicts_get_one_line_errors(tmp_path, small_network):
    state_dict = {k: v.contiguous() for k, v in small_network.state_dict().items()}
    cases = {
        "missing": ({k: v for k, v in state_dict.items() if k != "generator.conv1.conv.weight"},
                    r"GPEN state dict with missing or odd tensors .*generator\.conv1\.conv\.weight"),
        "reshaped": ({**state_dict, "generator.convs.1.conv.weight": torch.zeros(1, 3, 3, 3, 3)},
                     r"looks like GPEN GPEN .* does not fit it: 1 tensors of other shapes"),
        "truncated": ({k: v for k, v in state_dict.items() if not k.startswith("ecd4.")},
                      r"a 32 px encoder with a 64 px generator \(GPEN's FullGenerator_SR, not supported\)"),
        "gutted": ({k: v for k, v in state_dict.items() if not k.startswith("generator.convs.3.")},
                   r"does not fit it: \d+ missing tensors"),
    }
    for name, (broken, message) in cases.items():
        path = tmp_path / f"{name}.safetensors"
        save_file(broken, str(path))
        with pytest.raises(ModelLoadError, match=message) as error:
            load_face_restorer(path)
        assert str(path) in str(error.value) and "\n" not in str(error.value), name


def test_gpen_and_gfpgan_never_taken_for_each_other(small_network):
    from comfyui_gfpgan.gfpgan_arch.original import GFPGANv1

    gpen = small_network.state_dict()
    clean = seeded_clean_network(seed=0, out_size=64, num_style_feat=32, channel_multiplier=1, num_mlp=2, narrow=0.25)
    with torch.device("meta"):
        v1 = GFPGANv1(out_size=64, num_style_feat=32, num_mlp=2, narrow=0.5).state_dict()
    assert is_gpen(gpen) and not is_gfpgan(gpen)
    for gfpgan in (clean.state_dict(), v1):
        assert is_gfpgan(gfpgan) and not is_gpen(gfpgan)
        assert detect_family(gfpgan)[0].name == "GFP-GAN"
    assert detect_family(gpen)[0] is GPEN_FAMILY
