"""What an ONNX face-restoration graph takes and gives, read from its declared inputs and outputs.

ReActor and FaceFusion keep these files (``GFPGANv1.4.onnx``, ``GPEN-BFR-512.onnx``, ``codeformer.onnx``,
...) and feed them the same way: one ``[N,3,S,S]`` float RGB input in [-1, 1] (``(x - 0.5) / 0.5``), and,
where the graph has one, a ``weight`` input (a float64 ``[1]``: CodeFormer's w); the first output is the
restored ``[N,3,S,S]`` in [-1, 1]. This module checks that a graph has that form, without running it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..model_files import ModelLoadError

# Names a CodeFormer-style export gives its fidelity input (FaceFusion and ReActor look for "weight").
WEIGHT_INPUT_NAMES = ("weight", "w", "fidelity")
DEFAULT_CROP_SIZE = 512  # for a graph whose height and width are both dynamic
# The face crop sizes a graph may declare. Face restorers work on a few hundred px (GFP-GAN and CodeFormer 512,
# GPEN 256..2048): below 16 px no face is left to restore, and above 4096 px one face's input and activations
# run to tens of GB (a graph declaring 100000x100000 had onnxruntime allocate 120 GB): a broken or foreign export.
MIN_CROP_SIZE, MAX_CROP_SIZE = 16, 4096
_FLOAT_TYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}
_ONNX_ELEM_TYPES = {1: "tensor(float)", 10: "tensor(float16)", 11: "tensor(double)"}


@dataclass(frozen=True)
class GraphValue:
    """One declared input or output: name, shape (int, a symbolic name, or None per axis) and type string
    (onnxruntime's spelling, e.g. ``tensor(float)``)."""

    name: str
    shape: tuple
    type: str

    def describe(self) -> str:
        dims = ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name} [{dims}] {self.type}"


@dataclass(frozen=True)
class GraphSpec:
    """How to drive a face-restoration graph."""

    image_input: str
    image_dtype: type
    crop_size: int
    batch: int | None  # a static batch size, or None for a dynamic batch
    output: str
    weight_input: str | None = None  # CodeFormer's w, driven by our fidelity
    weight_dtype: type = np.float64
    weight_shape: tuple = (1,)


def is_onnx_file(path: str | Path) -> bool:
    """Whether ``path`` holds an ONNX ModelProto, told by content: it starts with field 1 (``ir_version``,
    a small varint), then another ModelProto field; pickles, zip archives and safetensors never start so."""
    with open(path, "rb") as handle:
        start = handle.read(9)
    if start[8:9] == b"{":
        return False  # a safetensors header whose length happens to start so
    # tags of ModelProto fields 2-8, 14, 20: producer name/version, domain, model version, doc, graph, opsets, ...
    return len(start) >= 3 and start[0] == 0x08 and 1 <= start[1] <= 30 and start[2] in (
        0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72, 0xA2)


def values_from_onnx(values) -> list[GraphValue]:
    """``GraphValue`` s from an ``onnx`` ValueInfoProto list (a graph's inputs or outputs)."""
    result = []
    for value in values:
        tensor = value.type.tensor_type
        shape = tuple(
            d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim
        ) if tensor.HasField("shape") else ()
        result.append(GraphValue(value.name, shape, _ONNX_ELEM_TYPES.get(tensor.elem_type, f"tensor(type {tensor.elem_type})")))
    return result


def values_from_session(args) -> list[GraphValue]:
    """``GraphValue`` s from onnxruntime's ``NodeArg`` s (``session.get_inputs()`` / ``get_outputs()``)."""
    return [GraphValue(arg.name, tuple(arg.shape), arg.type) for arg in args]


def _static(dim) -> int | None:
    """A declared size, 0 included (an empty axis, refused by the caller); None for a symbolic or -1 (dynamic) one."""
    return dim if isinstance(dim, int) and dim >= 0 else None


def read_graph(inputs: list[GraphValue], outputs: list[GraphValue], source: str) -> GraphSpec:
    """The ``GraphSpec`` of a graph with these inputs and outputs, or a one-line ``ModelLoadError`` saying
    why it is no face restorer we can drive."""
    def refuse(why: str) -> ModelLoadError:
        listed = "; ".join(value.describe() for value in inputs)
        return ModelLoadError(f"{source}: cannot drive this ONNX graph as a face restorer: {why} (inputs: {listed}).")

    def check_crop_size(what: str, size: int | None) -> None:
        if size is not None and not MIN_CROP_SIZE <= size <= MAX_CROP_SIZE:
            raise refuse(f"its {what} is {size} px across; a face crop is {MIN_CROP_SIZE}..{MAX_CROP_SIZE} px")

    weights = [v for v in inputs if v.name.lower() in WEIGHT_INPUT_NAMES and len(v.shape) <= 1]
    images = [v for v in inputs if v not in weights]
    if not images:
        raise refuse("it has no image input")
    if len(images) > 1:
        four_d = [v for v in images if len(v.shape) == 4]
        if len(four_d) > 1:
            raise refuse(f"it has {len(four_d)} image inputs, a face restorer takes one")
        extra = next(v for v in images if v not in four_d)
        raise refuse(f"unknown extra input {extra.name!r} (only a fidelity input named "
                     f"{' / '.join(WEIGHT_INPUT_NAMES)} is understood)")
    image = images[0]
    if len(image.shape) != 4:
        raise refuse(f"its input {image.name!r} has rank {len(image.shape)}, not 4 ([N,3,S,S])")
    if image.type not in _FLOAT_TYPES:
        raise refuse(f"its input {image.name!r} is {image.type}, not a float tensor")
    channels, height, width = (_static(d) for d in image.shape[1:])
    if channels is not None and channels != 3:
        raise refuse(f"its input {image.name!r} has {channels} channel(s), not 3 (RGB)")
    if height is not None and width is not None and height != width:
        raise refuse(f"its input {image.name!r} is {height}x{width}, not square")
    for size in (height, width):
        check_crop_size(f"input {image.name!r}", size)
    batch = _static(image.shape[0])
    if batch == 0:
        raise refuse(f"its input {image.name!r} declares a batch of 0")
    if len(weights) > 1:
        raise refuse("it has several fidelity-like inputs")
    if weights and weights[0].type not in _FLOAT_TYPES:
        raise refuse(f"its fidelity input {weights[0].name!r} is {weights[0].type}, not a float")
    if not outputs:
        raise refuse("it has no output")
    output = outputs[0]
    out_size = _static(output.shape[-1]) if len(output.shape) == 4 else None
    if output.shape and len(output.shape) != 4:
        raise ModelLoadError(f"{source}: cannot drive this ONNX graph as a face restorer: its first output "
                             f"{output.describe()} is not an image [N,3,S,S].")
    crop_size = next((size for size in (height, width) if size is not None), None)
    if crop_size is None and out_size is not None:  # a dynamic input: the output says what size it makes
        check_crop_size(f"output {output.name!r}", out_size)
        crop_size = out_size
    weight = weights[0] if weights else None
    return GraphSpec(
        image_input=image.name,
        image_dtype=_FLOAT_TYPES[image.type],
        crop_size=crop_size or DEFAULT_CROP_SIZE,
        batch=batch,
        output=output.name,
        weight_input=weight.name if weight else None,
        weight_dtype=_FLOAT_TYPES[weight.type] if weight else np.float64,
        weight_shape=tuple(1 for _ in weight.shape) if weight else (1,),
    )
