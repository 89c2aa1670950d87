"""Loading weight files: formats, wrappers, round trips, and every kind of bad file."""

import pickle

import pytest
import torch
from safetensors.torch import load_file, save_file

from comfyui_gfpgan.gfpgan_arch import (
    ModelLoadError,
    compute_dtype,
    convert_to_safetensors,
    describe_file,
    find_release,
    load_gfpgan,
    load_state_dict,
    pickle_loading_is_safe,
)

from factories import seeded_clean_network

SMALL = dict(out_size=64, num_style_feat=32, channel_multiplier=1, num_mlp=2, narrow=0.25)


@pytest.fixture(scope="module")
def small_state_dict():
    return {k: v.contiguous() for k, v in seeded_clean_network(seed=9, **SMALL).state_dict().items()}


def assert_same_tensors(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("wrapper", ["params_ema", "params", "state_dict", None])
def test_pth_wrappers_and_module_prefix(tmp_path, small_state_dict, wrapper):
    payload = {f"module.{k}": v for k, v in small_state_dict.items()} if wrapper == "state_dict" else small_state_dict
    if wrapper:
        payload = {wrapper: payload, "iter": torch.tensor(3)} if wrapper != "params" else {"params": payload}
    if wrapper == "params_ema":
        payload["params"] = {k: torch.zeros_like(v) for k, v in small_state_dict.items()}  # ema wins over params
    path = tmp_path / "model.pth"
    torch.save(payload, path)
    assert_same_tensors(load_state_dict(path), small_state_dict)


def test_official_files_load_to_the_same_network(official_weight_files, official_clean_network):
    expected = official_clean_network.state_dict()
    for path in official_weight_files.values():
        loaded = load_gfpgan(path)
        assert loaded.arch == "GFPGANv1Clean" and loaded.config["out_size"] == 512
        assert loaded.release is None  # random weights are no official release
        assert_same_tensors(loaded.network.state_dict(), expected)


def test_pth_safetensors_round_trip(tmp_path, small_state_dict):
    pth = tmp_path / "small.pth"
    torch.save({"params_ema": small_state_dict}, pth)
    converted = convert_to_safetensors(pth, tmp_path / "small.safetensors")
    assert_same_tensors(load_file(str(converted)), small_state_dict)
    from safetensors import safe_open

    with safe_open(str(converted), "pt") as handle:
        metadata = handle.metadata()
    assert metadata["arch"] == "GFPGANv1Clean" and '"out_size": 64' in metadata["config"]
    assert metadata["source_file"] == "small.pth" and len(metadata["source_sha256"]) == 64
    back = tmp_path / "back.pth"
    torch.save({"params_ema": load_state_dict(converted)}, back)
    assert_same_tensors(load_state_dict(back), small_state_dict)


def test_format_is_read_from_the_content_not_the_name(tmp_path, small_state_dict):
    safetensors_named_pth = tmp_path / "renamed.pth"
    save_file(small_state_dict, str(safetensors_named_pth))
    pth_named_safetensors = tmp_path / "renamed.safetensors"
    torch.save({"params_ema": small_state_dict}, pth_named_safetensors)
    for path in (safetensors_named_pth, pth_named_safetensors):
        assert_same_tensors(load_state_dict(path), small_state_dict)


def test_describe_file(tmp_path, small_state_dict):
    path = tmp_path / "small.safetensors"
    save_file(small_state_dict, str(path))
    text = describe_file(path)
    assert "GFPGANv1Clean" in text and "out_size=64" in text and "not a known official release" in text


def test_loaded_network_runs_in_bf16(tmp_path, small_state_dict):
    path = tmp_path / "small.safetensors"
    save_file(small_state_dict, str(path))
    network = load_gfpgan(path, dtype=torch.bfloat16).network
    with torch.inference_mode():
        out = network(torch.zeros(1, 3, 64, 64, dtype=torch.bfloat16))
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


def test_float16_is_refused_with_a_reason(tmp_path, small_state_dict):
    path = tmp_path / "small.safetensors"
    save_file(small_state_dict, str(path))
    with pytest.raises(ModelLoadError, match="bfloat16"):
        load_gfpgan(path, dtype=torch.float16)


def test_one_dtype_chooser():
    assert compute_dtype("auto", bf16_supported=True) == torch.bfloat16
    assert compute_dtype("auto", bf16_supported=False) == torch.float32
    assert compute_dtype("fp32", True) == torch.float32 and compute_dtype("bf16", False) == torch.bfloat16
    with pytest.raises(ModelLoadError, match="overflow half precision"):
        compute_dtype("fp16", True)
    with pytest.raises(ModelLoadError, match="unknown dtype 'int8'; use one of auto, fp32, bf16"):
        compute_dtype("int8", True)


def test_truncated_safetensors(tmp_path, small_state_dict):
    path = tmp_path / "cut.safetensors"
    save_file(small_state_dict, str(path))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ModelLoadError, match="truncated or corrupt"):
        load_state_dict(path)


def test_truncated_pth(tmp_path, small_state_dict):
    path = tmp_path / "cut.pth"
    torch.save({"params_ema": small_state_dict}, path)
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ModelLoadError, match="truncated or corrupt"):
        load_state_dict(path)


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(ModelLoadError, match="empty"):
        load_state_dict(empty)
    with pytest.raises(ModelLoadError, match="no such file"):
        load_state_dict(tmp_path / "absent.safetensors")


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _text_file(path, _state_dict):
    path.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 348632874\n")


def _hello_text(path, _state_dict):
    path.write_text("hello world\n")  # the weights-only unpickler's KeyError


def _random_bytes(path, _state_dict):
    path.write_bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0), dtype=torch.uint8).numpy().tobytes())


def _truncated_zip(path, state_dict):
    torch.save({"params_ema": state_dict}, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size * 2 // 3])


def _html_page(path, _state_dict):
    path.write_text("<!DOCTYPE html><html><body>Not Found</body></html>")


@pytest.mark.parametrize("make", [_text_file, _hello_text, _random_bytes, _truncated_zip, _html_page])
def test_files_that_are_no_checkpoint_say_so(tmp_path, small_state_dict, make):
    path = tmp_path / "GFPGANv1.4.pth"
    make(path, small_state_dict)
    with pytest.raises(ModelLoadError, match=r"not a PyTorch checkpoint \(truncated or corrupt, or another kind") as error:
        load_state_dict(path)
    assert str(path) in str(error.value) and "unpickle" not in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("layout", ["zip", "legacy", "plain pickle"])
def test_checkpoints_that_need_code_say_so_and_never_run_it(tmp_path, layout):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    payload = {"params_ema": {"x": torch.zeros(1)}, "payload": _Payload(marker)}
    if layout == "plain pickle":
        path.write_bytes(pickle.dumps(_Payload(marker)))
    else:
        torch.save(payload, path, _use_new_zipfile_serialization=layout == "zip")
    with pytest.raises(ModelLoadError, match="needs more than plain tensors to unpickle") as error:
        load_state_dict(path)
    assert "never executed" in str(error.value) and "not a PyTorch checkpoint" not in str(error.value)
    assert not marker.exists()


@pytest.mark.parametrize("version,safe", [("2.14.1+cu130", True), ("2.6.0", True), ("2.6.0+cu124", True),
                                          ("2.7.0a0+git1234", True), ("10.0", True), ("2.5.1+cu121", False),
                                          ("2.6.0a0+ecf3bae", False), ("2.6.0.dev20241112", False), ("2.1.2", False),
                                          ("1.13.1", False), ("unknown", False)])
def test_pickle_safety_follows_the_torch_version(version, safe):
    assert pickle_loading_is_safe(version) is safe


def test_old_torch_refuses_pth_but_reads_safetensors(tmp_path, small_state_dict, monkeypatch):
    pth, safetensors = tmp_path / "model.pth", tmp_path / "model.safetensors"
    torch.save({"params_ema": small_state_dict}, pth)
    save_file(small_state_dict, str(safetensors))
    monkeypatch.setattr(torch, "__version__", "2.5.1+cu121")
    with pytest.raises(ModelLoadError, match=r"torch 2\.5\.1\+cu121 is older than 2\.6.*CVE-2025-32434.*\.safetensors"):
        load_state_dict(pth)
    assert_same_tensors(load_state_dict(safetensors), small_state_dict)
    monkeypatch.setattr(torch, "__version__", "2.6.0")
    assert_same_tensors(load_state_dict(pth), small_state_dict)


def test_foreign_files(tmp_path):
    codeformer = tmp_path / "codeformer.pth"
    torch.save({"params_ema": {k: torch.zeros(8, 4) for k in ["quantize.embedding.weight", "position_emb"]}}, codeformer)
    esrgan = tmp_path / "4x_esrgan.safetensors"
    save_file({k: torch.zeros(2, 2) for k in ["conv_first.weight", "body.0.rdb1.conv1.weight"]}, str(esrgan))
    for path, looks_like in [(codeformer, "CodeFormer"), (esrgan, "ESRGAN")]:
        with pytest.raises(ModelLoadError, match=looks_like) as error:
            load_gfpgan(path)
        assert str(path) in str(error.value) and "Supported: GFPGAN" in str(error.value)
    not_a_dict = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], not_a_dict)
    with pytest.raises(ModelLoadError, match="no state dict of tensors"):
        load_gfpgan(not_a_dict)


def test_wrong_shapes_for_detected_config(tmp_path, small_state_dict):
    broken = dict(small_state_dict)
    broken["conv_body_up.0.conv1.weight"] = torch.zeros(3, 3, 3, 3)
    path = tmp_path / "broken.safetensors"
    save_file(broken, str(path))
    with pytest.raises(ModelLoadError, match=r"broken.safetensors: looks like GFPGANv1Clean .* does not fit it: 1 tensors "
                       r"of other shapes \(file vs network\) \(conv_body_up\.0\.conv1\.weight \(3, 3, 3, 3\) vs"):
        load_gfpgan(path)
    for key in list(broken)[:40]:
        broken[f"extra.{key}"] = broken.pop(key)
    save_file(broken, str(path))
    with pytest.raises(ModelLoadError, match=r"40 missing tensors \(.* and 35 more\); 40 unexpected tensors") as error:
        load_gfpgan(path)
    assert len(str(error.value)) < 1200


def test_release_table_names_official_files():
    release = find_release(sha256="E2CD4703AB14F4D01FD1383A8A8B266F9A5833DACEE8E6A79D3BF21A1B6BE5AD")
    assert release.file_name == "GFPGANv1.4.pth" and release.url.endswith("/GFPGANv1.4.pth")
    assert find_release(file_name="GFPGANv1.3.pth").version == "1.3"
    assert find_release(sha256="29e25ee90c170f4231163f4c83df6b59c968b73f3ce00cb884015ae005db083c").version == "1.2"
    assert find_release(sha256="0" * 64) is None
