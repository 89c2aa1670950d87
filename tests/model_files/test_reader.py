"""The one safe reader of weight files: formats, wrappers, and every kind of bad file."""

import pickle

import pytest
import torch
from safetensors.torch import save_file

from comfyui_gfpgan.model_files import ModelLoadError, load_state_dict, pickle_loading_is_safe

from factories import assert_same_tensors


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


def test_format_is_read_from_the_content_not_the_name(tmp_path, small_state_dict):
    safetensors_named_pth = tmp_path / "renamed.pth"
    save_file(small_state_dict, str(safetensors_named_pth))
    pth_named_safetensors = tmp_path / "renamed.safetensors"
    torch.save({"params_ema": small_state_dict}, pth_named_safetensors)
    for path in (safetensors_named_pth, pth_named_safetensors):
        assert_same_tensors(load_state_dict(path), small_state_dict)


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
    folder = tmp_path / "GFPGANv1.4.pth"  # e.g. a model folder picked in place of the file in it
    folder.mkdir()
    with pytest.raises(ModelLoadError, match=r"GFPGANv1.4.pth: is a folder, not a model file"):
        load_state_dict(folder)


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


@pytest.mark.parametrize("make", [_hello_text, _html_page])
def test_an_onnx_file_that_is_no_graph_says_so(tmp_path, small_state_dict, make):
    from comfyui_gfpgan.face_restorers import describe_file, load_face_restorer

    path = tmp_path / "GFPGANv1.4.onnx"
    make(path, small_state_dict)
    for read in (load_state_dict, load_face_restorer, describe_file):
        with pytest.raises(ModelLoadError, match=r"GFPGANv1.4.onnx: not an ONNX graph \(nor a .pth or .safetensors") as error:
            read(path)
        assert "checkpoint" not in str(error.value) and "\n" not in str(error.value)
    folder = tmp_path / "models.onnx"
    folder.mkdir()
    with pytest.raises(ModelLoadError, match="is a folder, not a model file"):
        load_face_restorer(folder)
    renamed = tmp_path / "renamed.onnx"  # told by content: a checkpoint named .onnx still loads
    torch.save(small_state_dict, renamed)
    assert load_state_dict(renamed).keys() == small_state_dict.keys()


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
