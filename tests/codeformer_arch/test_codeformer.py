"""CodeFormer: parity with spandrel_extra_arches' (upstream's) network, fidelity, batching, bf16, key
detection for upstream's releases, loading through the registry, and a whole-pipeline restore."""

import math

import pytest
import torch
from safetensors.torch import save_file

from comfyui_gfpgan.codeformer_arch import CodeFormer, CodeFormerColorization, detect_architecture
from comfyui_gfpgan.codeformer_arch.testing import OFFICIAL_CONFIG, seeded_codeformer, with_input_skip
from comfyui_gfpgan.face_restorers import detect_family, load_face_restorer, restorer_from_state_dict
from comfyui_gfpgan.model_files import ArchSpec, ModelLoadError

# Small widths for speed (the VQ-GAN's layout and the 512 px input are fixed by the architecture).
SMALL = dict(nf=32, emb_dim=64, dim_embd=64, n_layers=2, codebook_size=64)
COLORIZATION = dict(OFFICIAL_CONFIG, connect_list=["32", "64", "128"])
INPAINTING = dict(OFFICIAL_CONFIG, codebook_size=512, connect_list=["32", "64", "128"])
FIDELITIES = (0.0, 0.25, 0.5, 0.75, 1.0)


def face_like(batch: int = 1, seed: int = 1) -> torch.Tensor:
    """Smooth [-1, 1] images (a few random low-frequency waves per channel): face crops are smooth too."""
    generator = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.linspace(-1, 1, 512), torch.linspace(-1, 1, 512), indexing="ij")
    freq, phase = torch.rand(2, batch, 3, 2, generator=generator) * 4
    waves = torch.sin(freq[..., :1, None] * 3 * x + phase[..., :1, None]) * torch.cos(freq[..., 1:, None] * 2 * y + phase[..., 1:, None])
    return 0.8 * waves


def state_dict_of(network: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().contiguous() for k, v in network.state_dict().items()}


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """On [-1, 1] images (peak-to-peak 2)."""
    return float(10 * torch.log10(4 / (a.double() - b.double()).square().mean()))


@pytest.fixture(scope="module")
def small_network():
    return seeded_codeformer(seed=5, **SMALL)


@pytest.fixture(scope="module")
def official_network():
    return seeded_codeformer(seed=0)


@pytest.mark.slow
def test_parity_with_reference_at_the_official_config(official_network):
    arch = pytest.importorskip("spandrel_extra_arches.architectures.CodeFormer")
    reference = arch.CodeFormer(**{k: v for k, v in OFFICIAL_CONFIG.items() if k not in ("nf", "emb_dim")}).eval()
    reference.load_state_dict(official_network.state_dict(), strict=True)
    x = face_like()
    outputs = {}
    with torch.inference_mode():
        for w in (0.0, 0.5, 1.0):
            outputs[w] = official_network(x, fidelity=w)
            expected = reference(x, w)[0]  # upstream inference: net(x, w=w, adain=True)[0]
            # measured 7e-5 at w = 0, 1.0e-4 to 1.5e-4 at w = 1: fp32 rounding (the float64 test below agrees
            # to 1e-13), amplified by the random network's fuse layers where w opens them
            assert (outputs[w] - expected).abs().max() <= (1e-4 if w < 1 else 2e-4), (w, (outputs[w] - expected).abs().max())
    assert (outputs[0.5] - outputs[0.0]).abs().max() > 0.05 and (outputs[1.0] - outputs[0.5]).abs().max() > 0.05


@pytest.mark.slow
def test_same_maths_as_the_reference_in_float64(official_network):
    """In float64 rounding no longer hides a difference: ours and the reference agree to ~1e-13 at every w,
    so the fp32 gap above is rounding, not a different computation."""
    arch = pytest.importorskip("spandrel_extra_arches.architectures.CodeFormer")
    reference = arch.CodeFormer(**{k: v for k, v in OFFICIAL_CONFIG.items() if k not in ("nf", "emb_dim")}).eval()
    reference.load_state_dict(official_network.state_dict(), strict=True)
    codebook = reference.quantize
    # The reference's lookup casts its one-hot matrix to float32 (a float64 run fails there); picking the rows
    # is the same product, in any dtype.
    codebook.get_codebook_feat = lambda indices, shape: (
        codebook.embedding.weight[indices.view(-1)].view(shape).permute(0, 3, 1, 2).contiguous())
    ours = seeded_codeformer(seed=0).double()
    reference.double()
    x = face_like().double()
    with torch.inference_mode():
        for w in (0.0, 1.0):
            difference = (ours(x, fidelity=w) - reference(x, w)[0]).abs().max()
            assert difference <= 1e-10, (w, difference)


def test_higher_fidelity_is_closer_to_the_input():
    network = with_input_skip(seeded_codeformer(seed=3, **SMALL))
    x = face_like(seed=2)
    with torch.inference_mode():
        distances = [float((network(x, fidelity=w) - x).square().mean().sqrt()) for w in FIDELITIES]
    assert all(a > b for a, b in zip(distances, distances[1:])) and distances[0] - distances[-1] > 0.2, distances


def test_batched_equals_one_at_a_time(small_network):
    x = face_like(batch=2, seed=3)
    with torch.inference_mode():
        batched = small_network(x, fidelity=0.5)
        single = torch.cat([small_network(x[i : i + 1], fidelity=0.5) for i in range(2)])
    # measured 4e-4 at most (typically 1e-6): oneDNN picks other kernels per batch size, and a random
    # deep network amplifies the rounding differences
    assert (batched - single).abs().max() <= 1e-3, (batched - single).abs().max()


@pytest.mark.slow  # bf16 convolutions are slow on CPUs without native bf16
def test_bf16_close_to_fp32(small_network):
    x = face_like(seed=4)
    with torch.inference_mode():
        fp32 = small_network(x, fidelity=0.5)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            autocast = small_network(x, fidelity=0.5)
        bf16_weights = seeded_codeformer(seed=5, **SMALL).to(torch.bfloat16)
        bf16 = bf16_weights(x.to(torch.bfloat16), fidelity=0.5)
    assert autocast.dtype == bf16.dtype == torch.bfloat16
    measured = psnr(autocast.float(), fp32), psnr(bf16.float(), fp32)
    # measured 23.7 dB (autocast) and 23.6 dB (bf16 weights) on these seeded weights: random weights leave
    # small margins between the top codes, and a code that flips in bf16 changes its 32 x 32 px patch
    assert measured[0] > 21 and measured[1] > 21, measured


def test_colorization_runs_at_w_0(small_network):
    colorization = CodeFormerColorization(**{**OFFICIAL_CONFIG, **SMALL, "connect_list": ["32", "64", "128"]}).eval()
    state_dict = {k: v for k, v in small_network.state_dict().items() if not k.startswith("fuse_convs_dict.256.")}
    colorization.load_state_dict(state_dict, strict=True)
    x = face_like(seed=6)
    with torch.inference_mode():
        assert torch.equal(colorization(x), small_network(x, fidelity=0.0))


@pytest.mark.parametrize(
    "config,arch",
    [
        pytest.param(OFFICIAL_CONFIG, "CodeFormer", marks=pytest.mark.slow, id="official"),
        pytest.param(COLORIZATION, "CodeFormerColorization", marks=pytest.mark.slow, id="colorization"),
        pytest.param({**OFFICIAL_CONFIG, **SMALL}, "CodeFormer", id="small"),
        pytest.param({**OFFICIAL_CONFIG, **SMALL, "connect_list": ["16", "512"], "n_layers": 1}, "CodeFormer", id="small-16-512"),
        pytest.param({**OFFICIAL_CONFIG, **SMALL, "connect_list": [], "dim_embd": 128}, "CodeFormer", id="small-no-fusion"),
        pytest.param({**COLORIZATION, **SMALL, "n_layers": 3}, "CodeFormerColorization", id="small-colorization"),
    ],
)
def test_detected_config_round_trips(config, arch):
    network = CodeFormer(**config)
    spec = detect_architecture(state_dict_of(network), "weights.pth")
    assert spec == ArchSpec(arch, config, crop_size=512)
    restorer = restorer_from_state_dict(state_dict_of(network), "weights.pth")  # strict=True load
    assert restorer.arch == arch and restorer.has_fidelity == (arch == "CodeFormer")
    assert restorer.family.name == ("CodeFormer" if arch == "CodeFormer" else "CodeFormer colorization")


def test_inpainting_model_is_refused_with_a_reason():
    state_dict = state_dict_of(CodeFormer(**{**INPAINTING, **SMALL, "codebook_size": 512}))
    with pytest.raises(ModelLoadError, match=r"weights.pth: this is CodeFormer's inpainting model .* not a face restorer"):
        detect_family(state_dict, "weights.pth")


@pytest.fixture(scope="module")
def small_state_dict(small_network):
    return state_dict_of(small_network)


@pytest.mark.parametrize(
    "damage,message",
    [
        (lambda sd: sd.pop("quantize.embedding.weight"), r"a CodeFormer state dict with missing or odd tensors \(no 'quantize.embedding.weight'\)"),
        (lambda sd: sd.update(position_emb=torch.zeros(64, 64)), r"position_emb has 64 positions; CodeFormer's code grid is 16 x 16 = 256"),
        (lambda sd: sd.update({"ft_layers.0.linear1.weight": torch.zeros(7, 64)}),
         r"looks like CodeFormer CodeFormer .* does not fit it: 1 tensors of other shapes \(file vs network\) \(ft_layers\.0\.linear1\.weight \(7, 64\) vs \(128, 64\)"),
        (lambda sd: [sd.pop(k) for k in list(sd) if k.startswith("generator.blocks.2.")],
         r"does not fit it: 10 missing tensors \(generator\.blocks\.2\.norm\.weight"),
        (lambda sd: [sd.pop(k) for k in list(sd) if k != "position_emb"], r"no 'quantize.embedding.weight'"),
        (lambda sd: sd.update(position_emb=torch.zeros(1)), r"position_emb has shape \(1,\), not 2-D"),
    ],
    ids=["no-codebook", "odd-grid", "odd-mlp", "missing-block", "only-position-emb", "flat-position-emb"],
)
def test_damaged_state_dict_gives_a_one_line_error(small_state_dict, damage, message):
    state_dict = dict(small_state_dict)
    damage(state_dict)
    with pytest.raises(ModelLoadError, match=message) as error:
        restorer_from_state_dict(state_dict, "codeformer.pth")
    assert "\n" not in str(error.value) and str(error.value).startswith("codeformer.pth: ")


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_loads_from_the_official_layout(tmp_path, small_state_dict, suffix):
    path = tmp_path / f"codeformer{suffix}"
    if suffix == ".pth":
        torch.save({"params_ema": small_state_dict}, path)
    else:
        save_file(small_state_dict, str(path))
    restorer = load_face_restorer(path)
    assert (restorer.family.name, restorer.arch, restorer.crop_size) == ("CodeFormer", "CodeFormer", 512)
    assert restorer.family.default_fidelity == 0.5 and restorer.family.input_range == (-1.0, 1.0)
    assert "non-commercial" in restorer.family.licence and not restorer.family.noise
    loaded = restorer.network.state_dict()
    assert loaded.keys() == small_state_dict.keys()
    assert all(torch.equal(loaded[k], small_state_dict[k]) for k in loaded)


@pytest.mark.slow
def test_restores_a_photo_through_the_pipeline(astronaut_rgb, retinaface_weights, small_network):
    from comfyui_gfpgan.face_pipeline.detect import load_detector
    from comfyui_gfpgan.face_pipeline.pipeline import RestoreSettings, restore_faces_in_images
    from comfyui_gfpgan.face_restorers.families import CODEFORMER
    from comfyui_gfpgan.face_restorers.interface import TorchFaceRestorer

    spec = detect_architecture(state_dict_of(small_network))
    restorer = TorchFaceRestorer(small_network, CODEFORMER, spec)
    images = torch.from_numpy(astronaut_rgb).permute(2, 0, 1)[None].float() / 255
    result = restore_faces_in_images(images, restorer, load_detector(retinaface_weights),
                                     restore=RestoreSettings(fidelity=0.5), keep_crops=True)
    assert result.frames_with_faces == [0] and result.restored.shape == (1, 3, 512, 512)
    with torch.inference_mode():
        expected = (small_network(result.crops * 2 - 1, fidelity=0.5).clamp(-1, 1) + 1) / 2
    assert (result.restored - expected).abs().max() < 2e-3  # the pipeline's crop went through the network
    face, elsewhere = result.masks[0] > 0.99, result.masks[0] == 0
    changed = (result.images[0] - images[0]).abs().amax(dim=0)
    assert changed[face].mean() > 0.05 and changed[elsewhere].max() < 1e-6
