"""ONNX face-restoration files (ReActor / FaceFusion layout): onnxruntime sessions, GFP-GAN weights mapped back
into our network, the CodeFormer-style weight input, refusals, and the pipeline and nodes running one."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import warnings

import cv2
import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from comfyui_gfpgan.face_restorers import TorchFaceRestorer, describe_file, load_face_restorer  # noqa: E402
from comfyui_gfpgan.face_restorers.onnx_gfpgan import network_key  # noqa: E402
from comfyui_gfpgan.face_restorers.onnx_graph import GraphValue, is_onnx_file, read_graph  # noqa: E402
from comfyui_gfpgan.face_restorers.onnx_restorer import (  # noqa: E402
    ONNX_GRAPH,
    ONNX_WEIGHTED_GRAPH,
    OnnxFaceRestorer,
    choose_providers,
    load_onnx_restorer,
)
from comfyui_gfpgan.model_files import ModelLoadError  # noqa: E402

from factories import WeightedStandIn, seeded_clean_network  # noqa: E402
from factories import export_onnx as export  # noqa: E402

SMALL = dict(out_size=64, num_style_feat=32, channel_multiplier=1, num_mlp=2, narrow=0.25)


class PlainStandIn(nn.Module):
    """A graph with one image input and no weight (as GPEN-BFR / RestoreFormer exports)."""

    def __init__(self, seed: int = 1):
        super().__init__()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.conv = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.conv(x))


def faces(count: int, size: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(count, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture(scope="module")
def small_gfpgan():
    return seeded_clean_network(seed=9, **SMALL)


@pytest.fixture(scope="module")
def gfpgan_exports(onnx_dir, small_gfpgan):
    """The small GFP-GAN exported once by the dynamo exporter (the TorchScript one mistranslates its in-place
    updates of channel slices), saved twice: unoptimised, every weight under its state-dict name; and optimised
    (the exporter's default), the modulated weights folded into new constants, so their names are lost."""
    pytest.importorskip("onnxscript")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(small_gfpgan.eval(), (faces(1, 64),), input_names=["input"],
                                    output_names=["output"], dynamo=True, optimize=False)
        program.save(str(onnx_dir / "GFPGANv1.4-named.onnx"), external_data=False)
        program.optimize()
        program.save(str(onnx_dir / "GFPGANv1.4-folded.onnx"), external_data=False)
    return onnx_dir / "GFPGANv1.4-named.onnx", onnx_dir / "GFPGANv1.4-folded.onnx"


@pytest.fixture(scope="module")
def named_gfpgan_onnx(gfpgan_exports):
    return gfpgan_exports[0]


@pytest.fixture(scope="module")
def folded_gfpgan_onnx(gfpgan_exports):
    return gfpgan_exports[1]


@pytest.fixture(scope="module", params=["dynamic", "static"])
def weighted_onnx(request, onnx_dir):
    """The CodeFormer-like stand-in at 64 px, inputs named as codeformer.onnx's ("input", "weight" float64)."""
    dynamic = request.param == "dynamic"
    path = onnx_dir / f"codeformer-{request.param}.onnx"
    weight = torch.tensor([0.5], dtype=torch.float64)
    return export(WeightedStandIn(), (faces(1, 64), weight), path, ["input", "weight"], dynamic_batch=dynamic), dynamic


def run_torch(module, x, **kwargs):
    with torch.inference_mode():
        return module(x, **kwargs)


def test_onnx_files_are_told_by_content(onnx_dir, folded_gfpgan_onnx, tmp_path):
    assert is_onnx_file(folded_gfpgan_onnx)
    renamed = shutil.copy(folded_gfpgan_onnx, tmp_path / "GFPGANv1.4.pth")  # a misnamed file still is ONNX
    assert is_onnx_file(renamed) and isinstance(load_face_restorer(renamed), OnnxFaceRestorer)
    torch.save({"params_ema": {"a": torch.zeros(2)}}, tmp_path / "fake.onnx")
    from safetensors.torch import save_file

    save_file({"a": torch.zeros(2)}, str(tmp_path / "fake2.onnx"))
    assert not is_onnx_file(tmp_path / "fake.onnx") and not is_onnx_file(tmp_path / "fake2.onnx")
    (tmp_path / "odd.safetensors").write_bytes((0x3A0708).to_bytes(8, "little") + b"{")  # starts 08 07 3A too
    assert not is_onnx_file(tmp_path / "odd.safetensors")
    with pytest.raises(ModelLoadError, match="not a supported face restoration model"):
        load_face_restorer(tmp_path / "fake2.onnx")  # named .onnx, but a state dict: the state-dict path


def test_onnxruntime_matches_pytorch_for_a_folded_gfpgan_export(folded_gfpgan_onnx, small_gfpgan):
    restorer = load_face_restorer(folded_gfpgan_onnx)
    assert isinstance(restorer, OnnxFaceRestorer) and restorer.module is None
    assert restorer.crop_size == 64 and restorer.device == torch.device("cpu") and restorer.graph.batch == 1
    assert restorer.family.fidelity is None and restorer.provider == "CPUExecutionProvider"
    x = faces(3, 64)  # a static batch of 1: run face by face
    out = restorer(x, 1.0, None)
    expected = run_torch(small_gfpgan, x)
    difference = (out - expected).abs().max().item()
    assert out.shape == x.shape and difference <= 1e-4, difference  # measured 1.7e-6 (64 px)


def test_gfpgan_export_with_named_weights_loads_into_our_network(named_gfpgan_onnx, small_gfpgan, caplog):
    with caplog.at_level(logging.INFO):
        restorer = load_face_restorer(named_gfpgan_onnx)
    assert isinstance(restorer, TorchFaceRestorer) and restorer.family.name == "GFP-GAN"
    assert restorer.arch == "GFPGANv1Clean" and restorer.config["out_size"] == 64 and restorer.crop_size == 64
    assert sum("map onto our GFPGANv1Clean" in r.message for r in caplog.records) == 1  # said once
    session = load_onnx_restorer(named_gfpgan_onnx, prefer_torch=False)
    assert isinstance(session, OnnxFaceRestorer)
    x = faces(2, 64, seed=3)
    ours, graph = run_torch(restorer.network, x), session(x, 1.0, None)
    assert (ours - graph).abs().max().item() <= 1e-4  # measured 1.8e-6 (64 px)
    expected = small_gfpgan.state_dict()
    for key, tensor in restorer.network.state_dict().items():
        if not key.startswith("toRGB") and "style_mlp" not in key:
            assert torch.equal(tensor, expected[key]), key
    # Now the GFP-GAN knobs work (the family's own tests cover them; bf16 is slow on this CPU)
    assert restorer.family.noise and restorer.has_fidelity
    assert (restorer(x, 0.3, None) - ours).abs().mean() > 1e-3
    seeded = restorer(x, 1.0, [torch.Generator().manual_seed(s) for s in (0, 1)])
    assert (seeded - ours).abs().mean() > 1e-4


def test_mapping_is_refused_where_the_graph_computes_something_else(named_gfpgan_onnx, small_gfpgan, tmp_path, caplog):
    """Weights named as GFP-GAN's, but the graph negates the result (as an export with other pre- or
    post-processing would differ): it must not be mapped, and it runs as the graph says."""
    import onnx

    model = onnx.load(str(named_gfpgan_onnx))
    last = next(node for node in model.graph.node if "output" in node.output)
    last.output[list(last.output).index("output")] = "restored"
    model.graph.node.append(onnx.helper.make_node("Neg", ["restored"], ["output"]))
    path = tmp_path / "negated.onnx"
    onnx.save(model, str(path))
    with caplog.at_level(logging.WARNING):
        restorer = load_face_restorer(path)
    assert isinstance(restorer, OnnxFaceRestorer)
    assert sum("computes something else" in r.message for r in caplog.records) == 1
    x = faces(1, 64)
    assert (restorer(x, 1.0, None) + run_torch(small_gfpgan, x)).abs().max() <= 1e-4


def test_exporter_renamings_are_undone():
    assert network_key("stylegan_decoderdotto_rgbsdot1dotmodulated_convdotbias") == "stylegan_decoder.to_rgbs.1.modulated_conv.bias"
    assert network_key("net.final_linear.weight") == "final_linear.weight"
    assert network_key("onnx::Conv_123") == "onnx::Conv_123"


def test_mapping_needs_every_used_tensor_by_name_and_shape(small_gfpgan):
    from comfyui_gfpgan.face_restorers.onnx_gfpgan import gfpgan_mapping

    shapes = {k: tuple(v.shape) for k, v in small_gfpgan.state_dict().items()
              if not k.startswith("toRGB") and "style_mlp" not in k}  # as an inference graph holds them
    spec, mapping = gfpgan_mapping(shapes, 64, "f.onnx")
    assert spec.name == "GFPGANv1Clean" and spec.config == {**SMALL, "num_mlp": 8, "input_is_latent": True,
                                                            "different_w": True, "sft_half": True}
    assert mapping == {k: k for k in shapes}
    dotted = {k.replace(".", "dot") if k.startswith("stylegan_decoder") else k: v for k, v in shapes.items()}
    assert set(gfpgan_mapping(dotted, 64, "f.onnx")[1].values()) == set(dotted)
    key = "stylegan_decoder.style_convs.1.modulated_conv.weight"
    assert "not named in it (e.g. " + key in gfpgan_mapping({k: v for k, v in shapes.items() if k != key}, 64, "f")
    assert "other shapes (e.g. " + key in gfpgan_mapping({**shapes, key: (1, 8, 8, 3, 3)}, 64, "f")
    assert "several initializers map onto " + key in gfpgan_mapping({**shapes, "net." + key: shapes[key]}, 64, "f")
    assert gfpgan_mapping({"onnx::Conv_1": (3, 3, 1, 1)}, 64, "f") == "its weights are not named as GFP-GAN's"


def test_weight_input_follows_fidelity(weighted_onnx):
    path, dynamic = weighted_onnx
    restorer = load_face_restorer(path)
    assert isinstance(restorer, OnnxFaceRestorer) and restorer.graph.weight_input == "weight"
    assert restorer.family is ONNX_WEIGHTED_GRAPH and restorer.family.default_fidelity == 0.5
    assert restorer.graph.batch == (None if dynamic else 1) and restorer.graph.weight_dtype == np.float64
    x = faces(3, 64, seed=1)
    reference = WeightedStandIn()
    distances = []
    for fidelity in (0.0, 0.25, 0.5, 0.75, 1.0):
        out = restorer(x, fidelity, None)
        expected = run_torch(reference, x, weight=torch.tensor([fidelity], dtype=torch.float64))
        assert (out - expected).abs().max().item() <= 1e-4  # measured 1e-7
        distances.append((out - x).abs().mean().item())
    assert all(a > b for a, b in zip(distances, distances[1:])) and distances[-1] < 1e-6


def test_a_dynamic_batch_runs_at_once_and_a_static_one_face_by_face(weighted_onnx, monkeypatch):
    path, dynamic = weighted_onnx
    restorer = load_face_restorer(path)
    calls = []
    run = restorer.session.run
    monkeypatch.setattr(restorer.session, "run", lambda out, feeds: calls.append(len(feeds["input"])) or run(out, feeds),
                        raising=False)
    restorer(faces(3, 64), 0.5, None)
    assert calls == ([3] if dynamic else [1, 1, 1])


def value(name, *shape, type="tensor(float)"):
    return GraphValue(name, shape, type)


@pytest.mark.parametrize(
    "inputs,message",
    [
        ([value("input", 1, 3, 64)], "rank 3, not 4"),
        ([value("input", 1, 3, 64, 32)], "64x32, not square"),
        ([value("input", 1, 1, 64, 64)], "1 channel"),
        ([value("a", 1, 3, 64, 64), value("b", 1, 3, 64, 64)], "2 image inputs"),
        ([value("input", 1, 3, 64, 64), value("scale", 1)], "unknown extra input 'scale'"),
        ([value("input", 1, 3, 64, 64, type="tensor(int64)")], "not a float tensor"),
        ([value("weight", 1)], "no image input"),
        ([value("input", 1, 3, 100000, 100000)], "100000 px across; a face crop is 16..4096 px"),
        ([value("input", 1, 3, 0, 0)], "0 px across; a face crop is 16..4096 px"),
        ([value("input", 1, 3, 8, "w")], "8 px across"),
        ([value("input", 0, 3, 64, 64)], "a batch of 0"),
    ],
    ids=["rank", "not-square", "gray", "two-images", "extra", "int", "no-image", "huge", "empty", "tiny", "batch-0"],
)
def test_graphs_we_cannot_drive_get_one_line(inputs, message):
    with pytest.raises(ModelLoadError, match=message) as error:
        read_graph(inputs, [value("output", 1, 3, 64, 64)], "model.onnx")
    assert "model.onnx: cannot drive this ONNX graph" in str(error.value) and "\n" not in str(error.value)


def test_a_dynamic_graph_whose_output_is_no_face_crop_is_refused():
    with pytest.raises(ModelLoadError, match="its output 'output' is 0 px across"):
        read_graph([value("input", "N", 3, "h", "w")], [value("output", "N", 3, 0, 0)], "f")
    assert read_graph([value("input", "N", 3, -1, -1)], [value("output", "N", 3, -1, -1)], "f").crop_size == 512


@pytest.mark.parametrize("size", [100000, 0])
def test_graphs_of_impossible_sizes_are_refused_at_load_and_by_inspect(size, tmp_path):
    """They once asked onnxruntime for 120 GB, or failed in it with INVALID_ARGUMENT; describe_file passed both."""
    from onnx import TensorProto, helper, save

    dims = [1, 3, size, size]
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["output"])], "identity",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, dims)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = tmp_path / f"size{size}.onnx"
    save(model, str(path))
    for read in (load_face_restorer, describe_file):
        with pytest.raises(ModelLoadError, match=rf"cannot drive this ONNX graph .* {size} px across") as error:
            read(path)
        assert "\n" not in str(error.value)


def test_graph_reading_takes_names_and_sizes_from_the_graph():
    graph = read_graph([value("x", "N", 3, 512, 512), value("w", type="tensor(double)")], [value("y", "N", 3, 512, 512)], "f")
    assert (graph.image_input, graph.crop_size, graph.batch, graph.weight_input, graph.weight_shape) == ("x", 512, None, "w", ())
    graph = read_graph([value("input", 1, 3, "h", "w")], [value("output", 1, 3, 1024, 1024)], "f")
    assert graph.crop_size == 1024 and graph.batch == 1 and graph.weight_input is None


def test_an_unsupported_exported_graph_fails_at_load_in_one_line(onnx_dir):
    class Gray(nn.Module):
        def forward(self, x):
            return x * 2

    path = export(Gray(), (torch.zeros(1, 1, 32, 32),), onnx_dir / "gray.onnx", ["input"])
    with pytest.raises(ModelLoadError, match=r"gray.onnx: cannot drive .* 1 channel\(s\), not 3") as error:
        load_face_restorer(path)
    assert "\n" not in str(error.value)
    broken = onnx_dir / "truncated.onnx"
    broken.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ModelLoadError, match="onnxruntime cannot load this ONNX file") as error:
        load_face_restorer(broken)
    assert "\n" not in str(error.value)


def test_missing_onnxruntime_names_the_pip_package(folded_gfpgan_onnx, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    with pytest.raises(ModelLoadError, match=r"needs onnxruntime: pip install onnxruntime") as error:
        load_face_restorer(folded_gfpgan_onnx)
    assert str(folded_gfpgan_onnx) in str(error.value) and "\n" not in str(error.value)
    monkeypatch.setitem(sys.modules, "onnx", None)
    from safetensors.torch import save_file

    weights = tmp_path / "small.safetensors"
    save_file({k: v.contiguous() for k, v in seeded_clean_network(seed=9, **SMALL).state_dict().items()}, str(weights))
    assert load_face_restorer(weights).arch == "GFPGANv1Clean"  # the rest works without them
    with pytest.raises(ModelLoadError, match="pip install onnx"):
        describe_file(folded_gfpgan_onnx)


def test_the_pack_imports_without_onnxruntime():
    code = ("import sys; sys.modules['onnxruntime'] = sys.modules['onnx'] = None\n"
            "import comfyui_gfpgan.face_restorers, comfyui_gfpgan.face_pipeline, comfyui_gfpgan.jobs.cli\n"
            "from comfyui_gfpgan.face_restorers import onnx_restorer\n")
    subprocess.run([sys.executable, "-c", code], check=True, env={**__import__("os").environ})


@pytest.mark.parametrize(
    "device,available,providers,target",
    [
        ("cuda", ["CUDAExecutionProvider", "CPUExecutionProvider"],
         [("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"], "cuda:0"),
        ("cuda:1", ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
         [("CUDAExecutionProvider", {"device_id": 1}), "CPUExecutionProvider"], "cuda:1"),
        ("cuda", ["CPUExecutionProvider"], ["CPUExecutionProvider"], "cpu"),
        ("cpu", ["CUDAExecutionProvider", "CPUExecutionProvider"], ["CPUExecutionProvider"], "cpu"),
    ],
)
def test_provider_choice(device, available, providers, target):
    assert choose_providers(device, available) == (providers, torch.device(target))


def test_cuda_request_is_passed_to_onnxruntime_and_a_fallback_keeps_tensors_on_the_cpu(weighted_onnx, monkeypatch, caplog):
    path, _ = weighted_onnx
    asked = []
    session_class = ort.InferenceSession

    def recording_session(*args, providers=None, **kwargs):
        asked.append(providers)
        return session_class(*args, providers=["CPUExecutionProvider"], **kwargs)  # this build has no CUDA

    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", recording_session)
    with caplog.at_level(logging.WARNING):
        restorer = load_face_restorer(path, device="cuda", dtype=torch.bfloat16)
    assert asked == [[("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"]]
    assert restorer.device == torch.device("cpu") and restorer.dtype == torch.float32
    messages = [r.message for r in caplog.records]
    assert sum("on CPUExecutionProvider" in m for m in messages) == 1
    assert sum("is not available for ONNX graphs" in m for m in messages) == 1


def test_describe_file_reads_the_graph_without_running_it(named_gfpgan_onnx, folded_gfpgan_onnx, weighted_onnx, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # describing needs only the onnx package
    named = describe_file(named_gfpgan_onnx)
    assert "inputs:       input [1, 3, 64, 64] tensor(float)" in named and "crop size:    64 px" in named
    assert "our network:  yes: GFPGANv1Clean (out_size=64" in named and "outputs:      output [1, 3, 64, 64]" in named
    assert "our network:  no (" in describe_file(folded_gfpgan_onnx)
    path, dynamic = weighted_onnx
    weighted = describe_file(path)
    assert "fidelity:     drives its 'weight' input (default 0.5)" in weighted and "weight [1] tensor(double)" in weighted
    assert ("dynamic (faces batched)" if dynamic else "1 (static: face by face)") in weighted
    from comfyui_gfpgan.face_restorers import convert_to_safetensors

    with pytest.raises(ModelLoadError, match="an ONNX graph, not a state dict: nothing to convert"):
        convert_to_safetensors(path, path.with_suffix(".safetensors"))


def test_an_onnx_files_family_is_read_from_its_graph(named_gfpgan_onnx, folded_gfpgan_onnx, weighted_onnx, monkeypatch):
    from comfyui_gfpgan.face_restorers import identify_file
    from comfyui_gfpgan.face_restorers.families import GFPGAN

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # nothing is run
    assert identify_file(named_gfpgan_onnx) is GFPGAN  # its weights map onto our network
    assert identify_file(folded_gfpgan_onnx) is ONNX_GRAPH
    assert identify_file(weighted_onnx[0]) is ONNX_WEIGHTED_GRAPH and ONNX_WEIGHTED_GRAPH.default_fidelity == 0.5


@pytest.fixture(scope="module")
def face_onnx(onnx_dir):
    """A 512 px CodeFormer-like graph with a static batch of 1, for the pipeline and the nodes."""
    return export(WeightedStandIn(seed=5), (faces(1, 512), torch.tensor([0.5], dtype=torch.float64)),
                  onnx_dir / "codeformer.onnx", ["input", "weight"])


@pytest.mark.slow
def test_pipeline_runs_an_onnx_restorer(face_onnx, astronaut_rgb, retinaface_weights):
    from comfyui_gfpgan.face_pipeline.detect import load_detector
    from comfyui_gfpgan.face_pipeline.pipeline import RestoreSettings, restore_faces_in_images
    from comfyui_gfpgan.model_files import ArchSpec

    detector = load_detector(retinaface_weights)
    image = torch.from_numpy(astronaut_rgb).permute(2, 0, 1)[None].float() / 255
    restorer = load_face_restorer(face_onnx)
    settings = RestoreSettings(fidelity=0.2)
    result = restore_faces_in_images(image, restorer, detector, restore=settings)
    assert len(result.faces) == 1
    same_in_torch = TorchFaceRestorer(_WithFidelity(WeightedStandIn(seed=5)), ONNX_WEIGHTED_GRAPH, ArchSpec("stand-in", {}, 512))
    expected = restore_faces_in_images(image, same_in_torch, detector, restore=settings)
    assert (result.images - expected.images).abs().max() <= 1e-4
    assert (result.images - image).abs().mean() > 5e-3  # the face was changed


class _WithFidelity(nn.Module):
    def __init__(self, module):
        super().__init__()
        self.module = module

    def forward(self, x, fidelity):
        return self.module(x, torch.tensor([fidelity], dtype=torch.float64))


@pytest.mark.slow
def test_nodes_run_an_onnx_model(comfy_nodes, face_onnx, astronaut_rgb):
    import folder_paths

    folder = folder_paths.get_folder_paths("facerestore_models")[0]
    target = shutil.copy(face_onnx, f"{folder}/codeformer.onnx")
    try:
        model = comfy_nodes.LoadGFPGANModel.execute("codeformer.onnx", "auto").result[0]
        detector = comfy_nodes.LoadFaceDetector.execute("retinaface_mobilenet0.25.safetensors").result[0]
    finally:
        __import__("os").remove(target)  # other node tests list the folder
    assert model.patcher is None and isinstance(model.info, OnnxFaceRestorer)
    image = torch.from_numpy(astronaut_rgb)[None].float() / 255
    faces_, crops, _ = comfy_nodes.DetectFaces.execute(image, detector, 0.97, "all", 1, 0, 0, 640).result
    restored = comfy_nodes.RestoreFaces.execute(model, crops, 0.3, "fixed", 0).result[0]
    expected = run_torch(WeightedStandIn(seed=5), crops.movedim(-1, 1) * 2 - 1, weight=torch.tensor([0.3], dtype=torch.float64))
    assert (restored - ((expected + 1) / 2).clamp(0, 1).movedim(1, -1)).abs().max() <= 1e-4
    out, mask = comfy_nodes.GFPGANFaceRestore.execute(
        image, model, detector, 0.3, 1.0, "feathered", 1.0, False, 0.97, "all", 1, 0, 0, 640, "fixed", 0
    ).result
    assert out.shape == image.shape and mask.max() > 0.99 and (out - image).abs().mean() > 5e-3


@pytest.mark.slow
def test_official_size_gfpgan_onnx_maps_back_and_matches(official_clean_network, tmp_path_factory):
    path = export(official_clean_network, (faces(1, 512),), tmp_path_factory.mktemp("onnx512") / "GFPGANv1.4.onnx",
                  ["input"], dynamo=True, optimize=False)
    restorer = load_face_restorer(path)
    assert isinstance(restorer, TorchFaceRestorer) and restorer.config == {**restorer.config, "out_size": 512,
                                                                             "channel_multiplier": 2, "different_w": True}
    session = load_onnx_restorer(path, prefer_torch=False)
    x = faces(1, 512, seed=4)
    graph, ours = session(x, 1.0, None), run_torch(restorer.network, x)
    official = run_torch(official_clean_network, x)
    assert (graph - official).abs().max() <= 1e-4 and (ours - graph).abs().max() <= 1e-4  # measured 4.8e-6 and 4e-6


def test_the_loader_makes_onnx_sessions_for_the_compute_device(comfy_nodes, face_onnx, monkeypatch):
    """Nothing moves an onnxruntime session after loading (no ModelPatcher): it is made for the compute device,
    while a torch network is loaded on the offload device for ComfyUI's model management to move."""
    import comfy.model_management as model_management
    import folder_paths

    from comfyui_gfpgan.nodes import loaders

    asked = []
    real_load = loaders.load_face_restorer

    def load(path, device, dtype):
        asked.append(torch.device(device))
        return real_load(path, device="cpu", dtype=dtype)

    monkeypatch.setattr(loaders, "load_face_restorer", load)
    monkeypatch.setattr(model_management, "get_torch_device", lambda: torch.device("cuda", 0))
    monkeypatch.setattr(model_management, "should_use_bf16", lambda *args, **kwargs: False)
    folder = folder_paths.get_folder_paths("facerestore_models")[0]
    target = shutil.copy(face_onnx, f"{folder}/codeformer.onnx")
    try:
        comfy_nodes.LoadGFPGANModel.execute("codeformer.onnx", "auto")
        comfy_nodes.LoadGFPGANModel.execute("GFPGANv1.4-seeded.safetensors", "auto")
    finally:
        __import__("os").remove(target)  # other node tests list the folder
    assert asked == [torch.device("cuda", 0), model_management.unet_offload_device()]


def test_onnx_restorer_cannot_be_compiled(face_onnx, tmp_path, capsys):
    from comfyui_gfpgan.jobs.cli import main

    with pytest.raises(ModelLoadError, match="does not run in PyTorch .*torch.compile cannot speed it up"):
        load_face_restorer(face_onnx).compiled()
    crop = tmp_path / "face.png"
    cv2.imwrite(str(crop), np.zeros((512, 512, 3), np.uint8))
    code = main(["restore", str(crop), "-o", str(tmp_path / "out"), "--model", str(face_onnx), "--aligned", "--compile"])
    err = capsys.readouterr().err
    assert code == 2 and "does not run in PyTorch" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "face.png").exists()
