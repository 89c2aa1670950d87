"""Test stand-in for ComfyUI's versioned V3 node API (the subset this pack uses)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any


class _Input:
    def __init__(self, id: str, display_name: str | None = None, optional: bool = False, tooltip: str | None = None,
                 default: Any = None, **options: Any):
        self.id, self.display_name, self.optional, self.tooltip = id, display_name, optional, tooltip
        self.default = default
        self.options = options


class _Output:
    def __init__(self, id: str | None = None, display_name: str | None = None, tooltip: str | None = None,
                 is_output_list: bool = False):
        self.id, self.display_name, self.tooltip, self.is_output_list = id, display_name, tooltip, is_output_list


def _comfy_type(io_type: str, widget: bool = False):
    input_class = type(f"{io_type}Input", (_Input,), {"io_type": io_type, "widget": widget})
    output_class = type(f"{io_type}Output", (_Output,), {"io_type": io_type})
    return type(io_type, (), {"io_type": io_type, "Input": input_class, "Output": output_class})


class _ComboInput(_Input):
    io_type, widget = "COMBO", True

    def __init__(self, id: str, options: list[str] | None = None, **kwargs: Any):
        super().__init__(id, **kwargs)
        self.choices = list(options or [])


Image = _comfy_type("IMAGE")
Mask = _comfy_type("MASK")
Float = _comfy_type("FLOAT", widget=True)
Int = _comfy_type("INT", widget=True)
Boolean = _comfy_type("BOOLEAN", widget=True)
String = _comfy_type("STRING", widget=True)
UpscaleModel = _comfy_type("UPSCALE_MODEL")
Combo = type("Combo", (), {"io_type": "COMBO", "Input": _ComboInput, "Output": _comfy_type("COMBO").Output})


def Custom(io_type: str):
    return _comfy_type(io_type)


@dataclass
class Schema:
    node_id: str
    display_name: str | None = None
    category: str = "sd"
    inputs: list = field(default_factory=list)
    outputs: list = field(default_factory=list)
    description: str = ""
    is_output_node: bool = False

    def validate(self) -> None:
        ids = [i.id for i in self.inputs]
        if len(ids) != len(set(ids)):
            raise ValueError(f"{self.node_id}: duplicate input ids")


class NodeOutput:
    def __init__(self, *args: Any, ui: Any = None):
        self.args, self.ui = args, ui

    @property
    def result(self) -> tuple:
        return self.args


class ComfyNode:
    @classmethod
    def define_schema(cls) -> Schema:
        raise NotImplementedError

    @classmethod
    def execute(cls, **kwargs: Any) -> NodeOutput:
        raise NotImplementedError


io = SimpleNamespace(
    Schema=Schema, ComfyNode=ComfyNode, NodeOutput=NodeOutput, Custom=Custom,
    Image=Image, Mask=Mask, UpscaleModel=UpscaleModel, Float=Float, Int=Int, Boolean=Boolean, String=String, Combo=Combo,
)


class ComfyExtension(ABC):
    async def on_load(self) -> None:
        pass

    @abstractmethod
    async def get_node_list(self) -> list[type[ComfyNode]]:
        ...
