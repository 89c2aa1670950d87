"""ONNX face-restoration files (as ReActor and FaceFusion keep them) behind the ``FaceRestorer`` interface.

A GFP-GAN export whose weights map by name onto our network (``onnx_gfpgan``) and give the graph's output is
loaded into PyTorch, so fidelity, noise, bf16 and batching work as for a .pth; any other graph runs in
onnxruntime (an optional dependency: ``pip install onnxruntime``, or ``onnxruntime-gpu`` for CUDA).
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch

from ..model_files import ModelLoadError, file_sha256
from .families import GFPGAN
from .interface import FaceRestorer, ModelFamily, TorchFaceRestorer, check_dtype
from .onnx_graph import GraphSpec, read_graph, values_from_onnx, values_from_session
from .onnx_gfpgan import gfpgan_mapping, load_mapped_network

log = logging.getLogger(__name__)

PIP_HINT = "pip install onnxruntime (onnxruntime-gpu for CUDA)"
MAPPED_TOLERANCE = 1e-3  # max abs difference on [-1, 1] between the graph and the mapped network on a probe


def _no_state_dict(*_):
    raise ModelLoadError("ONNX graphs are read from their file, not from a state dict")


ONNX_GRAPH = ModelFamily(
    name="ONNX graph",
    recognises=lambda _: False,  # told by file content (onnx_graph.is_onnx_file), never from a state dict
    detect=_no_state_dict,
    build=_no_state_dict,
    licence="that of the network it was exported from (see the README's table)",
)
ONNX_WEIGHTED_GRAPH = dataclasses.replace(  # a CodeFormer export: its "weight" input is our fidelity
    ONNX_GRAPH, fidelity="the graph's weight input (CodeFormer's w: 0 = strongest restoration, 1 = closest to the input)",
    default_fidelity=0.5,  # CodeFormer's and FaceFusion's default w
)


def import_onnxruntime(source: str):
    try:
        import onnxruntime
    except ImportError as error:
        raise ModelLoadError(f"{source}: this is an ONNX file; running it needs onnxruntime: {PIP_HINT}") from error
    return onnxruntime


def choose_providers(device: str | torch.device, available: list[str]) -> tuple[list, torch.device]:
    """onnxruntime's execution providers for the requested ``device``, and where our tensors go: CUDA where the
    device is CUDA and onnxruntime offers CUDAExecutionProvider (onnxruntime-gpu), else the CPU."""
    device = torch.device(device)
    if device.type == "cuda":
        if "CUDAExecutionProvider" in available:
            index = device.index if device.index is not None else 0
            return [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"], torch.device("cuda", index)
        log.warning("[GFPGAN] onnxruntime offers no CUDAExecutionProvider (install onnxruntime-gpu for CUDA): "
                    "ONNX graphs run on the CPU")
    return ["CPUExecutionProvider"], torch.device("cpu")


class OnnxFaceRestorer(FaceRestorer):
    """An ONNX graph run by onnxruntime: float32 (or the graph's own input type), no noise knob; fidelity drives
    the graph's ``weight`` input where it has one. A dynamic batch runs all faces of a chunk at once, a static
    batch of 1 face by face."""

    arch = "ONNX"

    def __init__(self, session, graph: GraphSpec, device: torch.device, path: Path | None = None, sha256: str = ""):
        self.session, self.graph, self._device = session, graph, device
        self.family = ONNX_WEIGHTED_GRAPH if graph.weight_input else ONNX_GRAPH
        self.crop_size = graph.crop_size
        self.config = {"input": graph.image_input, "batch": graph.batch or "dynamic", "provider": self.provider}
        if graph.weight_input:
            self.config["weight_input"] = graph.weight_input
        self.path, self.sha256, self.release = path, sha256, None

    @property
    def provider(self) -> str:
        return self.session.get_providers()[0]

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32

    def to(self, device=None, dtype=None) -> "OnnxFaceRestorer":
        if dtype is not None:
            check_dtype(dtype)  # bf16 is accepted and runs fp32: the loader said so once
        if device is not None and torch.device(device).type != self._device.type:
            raise ModelLoadError(f"{self.path or 'ONNX graph'}: an onnxruntime session stays on the device it was "
                                 f"loaded for ({self._device}); load it again for {device}")
        return self

    def __call__(self, x, fidelity, noise, dtype=None):
        faces = x.detach().to("cpu", torch.float32).contiguous().numpy().astype(self.graph.image_dtype, copy=False)
        feeds = {}
        if self.graph.weight_input:
            feeds[self.graph.weight_input] = np.full(self.graph.weight_shape, fidelity, self.graph.weight_dtype)
        step = self.graph.batch or len(faces)
        outputs = []
        for start in range(0, len(faces), step):
            chunk = faces[start:start + step]
            missing = step - len(chunk)
            if missing:  # a static batch above 1: pad with copies of the last face
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], missing, axis=0)])
            feeds[self.graph.image_input] = chunk
            outputs.append(self.session.run([self.graph.output], feeds)[0][: step - missing])
        out = torch.from_numpy(np.concatenate(outputs).astype(np.float32, copy=False))
        if out.shape != x.shape:
            raise ModelLoadError(f"{self.path or 'ONNX graph'}: gave an output of shape {tuple(out.shape)} for faces "
                                 f"of shape {tuple(x.shape)}; a face restorer returns the same shape")
        return out.to(x.device)


def _session(onnxruntime, path: Path, providers: list):
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: onnxruntime's warnings about unused initializers are noise here
    try:
        return onnxruntime.InferenceSession(str(path), sess_options=options, providers=providers)
    except Exception as error:  # onnxruntime raises its own exception types (Fail, InvalidGraph, ...)
        first = str(error).strip().splitlines()[0][:300] if str(error).strip() else type(error).__name__
        raise ModelLoadError(f"{path}: onnxruntime cannot load this ONNX file: {first}") from error


def _read_initializers(path: Path):
    """The graph's ModelProto with its weights, or None where the ``onnx`` package is not installed."""
    try:
        import onnx
    except ImportError:
        return None
    return onnx.load(str(path))


def initializer_shapes(model) -> dict[str, tuple[int, ...]]:
    return {init.name: tuple(init.dims) for init in model.graph.initializer}


def _try_gfpgan(path: Path, session, graph: GraphSpec) -> TorchFaceRestorer | None:
    """Our GFP-GAN network holding the export's weights, if they map by name and it reproduces the graph."""
    if graph.weight_input:
        return None  # no GFP-GAN export has a fidelity input: mapping it would drop what the graph does with it
    model = _read_initializers(path)
    if model is None:
        log.info("[GFPGAN] %s: the onnx package is not installed; the graph runs in onnxruntime without trying to "
                 "map it onto our networks (pip install onnx)", path)
        return None
    found = _gfpgan_mapping(model, graph, str(path))
    if isinstance(found, str):
        log.debug("[GFPGAN] %s: not mapped onto GFP-GAN: %s", path, found)
        return None
    spec, mapping = found
    from onnx import numpy_helper

    wanted = set(mapping.values())
    arrays = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer if init.name in wanted}
    del model
    network = load_mapped_network(spec, mapping, arrays)
    difference = _probe_difference(network, session, graph)
    if not difference <= MAPPED_TOLERANCE:
        log.warning("[GFPGAN] %s: its weights are named as %s's but the graph computes something else (max difference "
                    "%.3g on a probe face); it runs in onnxruntime", path, spec.name, difference)
        return None

    log.warning("[GFPGAN] %s: the ONNX weights map onto our %s (max difference %.1g from the graph): running it in "
                "PyTorch, so fidelity, noise, bf16 and batching work", path, spec.name, difference)
    return TorchFaceRestorer(network, GFPGAN, spec, path)


def _probe_difference(network: torch.nn.Module, session, graph: GraphSpec) -> float:
    generator = torch.Generator().manual_seed(0)
    probe = torch.rand(1, 3, graph.crop_size, graph.crop_size, generator=generator) * 2 - 1
    with torch.inference_mode():
        ours = network(probe)
    theirs = session.run([graph.output], {graph.image_input: probe.numpy().astype(graph.image_dtype)})[0]
    return float((ours - torch.from_numpy(np.asarray(theirs, dtype=np.float32))).abs().max())


def load_onnx_restorer(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                       prefer_torch: bool = True) -> FaceRestorer:
    """Load an ONNX face-restoration file: into our GFP-GAN network where its weights map onto it (unless
    ``prefer_torch`` is False), else as an onnxruntime session on ``device`` (CUDA where onnxruntime-gpu
    offers it)."""
    check_dtype(dtype)
    path = Path(path)
    onnxruntime = import_onnxruntime(str(path))
    providers, target = choose_providers(device, onnxruntime.get_available_providers())
    session = _session(onnxruntime, path, providers)
    graph = read_graph(values_from_session(session.get_inputs()), values_from_session(session.get_outputs()), str(path))
    sha256 = file_sha256(path)
    mapped = _try_gfpgan(path, session, graph) if prefer_torch else None
    if mapped is not None:
        mapped.sha256 = sha256
        return mapped.to(device, dtype)
    if "CUDAExecutionProvider" not in session.get_providers():
        target = torch.device("cpu")  # onnxruntime fell back to the CPU: our tensors go there too
    restorer = OnnxFaceRestorer(session, graph, target, path, sha256)
    log.warning("[GFPGAN] %s: running the ONNX graph in onnxruntime on %s%s", path, restorer.provider,
                f"; fidelity drives its {graph.weight_input!r} input" if graph.weight_input else "")
    if dtype == torch.bfloat16:
        log.warning("[GFPGAN] %s: bf16 compute (asked for, or dtype auto on a bf16 device) is not available for ONNX "
                    "graphs; it runs in fp32", path)
    return restorer


def _read_graph_file(path: Path):
    """The file's ModelProto (weights not loaded) and its ``GraphSpec``, read with the ``onnx`` package."""
    try:
        import onnx
    except ImportError as error:
        raise ModelLoadError(f"{path}: this is an ONNX file; reading it needs the onnx package: pip install onnx") from error
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # protobuf's DecodeError and friends
        raise ModelLoadError(f"{path}: not a readable ONNX file (truncated or corrupt?): {error}") from error
    initializers = {i.name for i in model.graph.initializer}
    inputs = [v for v in values_from_onnx(model.graph.input) if v.name not in initializers]
    return model, inputs, read_graph(inputs, values_from_onnx(model.graph.output), str(path))


def _gfpgan_mapping(model, graph: GraphSpec, source: str):
    if graph.weight_input:
        return "it has a fidelity input"
    return gfpgan_mapping(initializer_shapes(model), graph.crop_size, source)


def onnx_family(path: str | Path) -> ModelFamily:
    """The family an ONNX file loads as, read from its graph (nothing is run): GFP-GAN where its weights map
    onto our network (checked against the graph only when loaded), else the graph's own."""
    path = Path(path)
    model, _, graph = _read_graph_file(path)
    if graph.weight_input:
        return ONNX_WEIGHTED_GRAPH
    if isinstance(_gfpgan_mapping(model, graph, str(path)), str):
        return ONNX_GRAPH

    return GFPGAN


def describe_onnx(path: str | Path) -> list[tuple[str, str]]:
    """(label, text) rows about an ONNX file, read with the ``onnx`` package (the graph is not run)."""
    path = Path(path)
    model, inputs, graph = _read_graph_file(path)
    outputs = values_from_onnx(model.graph.output)
    found = _gfpgan_mapping(model, graph, str(path))
    maps = (f"yes: {found[0].name} ({', '.join(f'{k}={v}' for k, v in found[0].config.items())}); checked against "
            "the graph when loaded" if not isinstance(found, str) else f"no ({found}): runs in onnxruntime")
    opsets = ", ".join(f"{o.domain or 'ai.onnx'} {o.version}" for o in model.opset_import)
    params = sum(int(np.prod(init.dims)) for init in model.graph.initializer)
    return [
        ("family", f"ONNX graph (producer {model.producer_name or '?'} {model.producer_version}, opsets {opsets})"),
        ("inputs", "; ".join(v.describe() for v in inputs)),
        ("outputs", "; ".join(v.describe() for v in outputs)),
        ("crop size", f"{graph.crop_size} px"),
        ("batch", f"{graph.batch} (static: face by face)" if graph.batch else "dynamic (faces batched)"),
        ("fidelity", f"drives its {graph.weight_input!r} input (default 0.5)" if graph.weight_input
         else "none (the graph has no weight input)"),
        ("our network", maps),
        ("initializers", f"{len(model.graph.initializer)} ({params / 1e6:.1f} M values)"),
    ]
