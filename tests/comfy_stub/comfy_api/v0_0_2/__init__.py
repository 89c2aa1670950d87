"""Test stand-in for ComfyUI's versioned V3 node API (the subset this pack uses).

Inputs keep their widget options as attributes of the same names as ComfyUI's, and
``ComfyNode.GET_NODE_INFO_V1()`` returns the node definition in the form ComfyUI's
``/object_info`` sends to the frontend, so tests read nodes the same way with either.
"""

from __future__ import annotations

import os
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np


def _pruned(values: dict) -> dict:
    return {key: value for key, value in values.items() if value is not None}


class _Input:
    def __init__(self, id: str, display_name: str | None = None, optional: bool = False, tooltip: str | None = None,
                 default: Any = None, **widget_options: Any):
        self.id, self.display_name, self.optional, self.tooltip = id, display_name, optional, tooltip
        self.default = default
        self.widget_options = widget_options  # min, max, step, ... (attributes of these names in ComfyUI)
        for name, value in widget_options.items():
            setattr(self, name, value)

    def as_dict(self) -> dict:
        return _pruned({"display_name": self.display_name, "tooltip": self.tooltip, "default": self.default,
                        **self.widget_options})


class _Output:
    def __init__(self, id: str | None = None, display_name: str | None = None, tooltip: str | None = None,
                 is_output_list: bool = False):
        self.id, self.display_name, self.tooltip, self.is_output_list = id, display_name, tooltip, is_output_list


def _comfy_type(io_type: str):
    input_class = type(f"{io_type}Input", (_Input,), {"io_type": io_type})
    output_class = type(f"{io_type}Output", (_Output,), {"io_type": io_type})
    return type(io_type, (), {"io_type": io_type, "Input": input_class, "Output": output_class})


class _ComboInput(_Input):
    io_type = "COMBO"

    def __init__(self, id: str, options: list[str] | None = None, **kwargs: Any):
        super().__init__(id, **kwargs)
        self.options = list(options or [])

    def as_dict(self) -> dict:
        return super().as_dict() | {"options": self.options}


Image = _comfy_type("IMAGE")
Mask = _comfy_type("MASK")
Float = _comfy_type("FLOAT")
Int = _comfy_type("INT")
Boolean = _comfy_type("BOOLEAN")
String = _comfy_type("STRING")
UpscaleModel = _comfy_type("UPSCALE_MODEL")
SEGS = _comfy_type("SEGS")
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
    search_aliases: list = field(default_factory=list)  # ComfyUI 0.38
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

    @classmethod
    def GET_NODE_INFO_V1(cls) -> dict[str, Any]:
        """The node as ``/object_info`` describes it: inputs by group in order, outputs as parallel lists."""
        schema = cls.define_schema()
        schema.validate()
        inputs: dict[str, dict] = {"required": {}}
        for item in schema.inputs:
            group = "optional" if item.optional else "required"
            inputs.setdefault(group, {})[item.id] = (item.io_type, item.as_dict())
        return {
            "input": inputs,
            "input_order": {group: list(items) for group, items in inputs.items()},
            "output": [o.io_type for o in schema.outputs],
            "output_is_list": [o.is_output_list for o in schema.outputs],
            "output_name": [o.display_name or o.io_type for o in schema.outputs],
            "output_tooltips": [o.tooltip for o in schema.outputs],
            "name": schema.node_id,
            "display_name": schema.display_name,
            "description": schema.description,
            "category": schema.category,
            "output_node": schema.is_output_node,
            "search_aliases": schema.search_aliases,
        }


class NodeReplace:
    """ComfyUI 0.19's ``io.NodeReplace``: which node stands in for a missing one, and how its inputs map."""

    def __init__(self, new_node_id, old_node_id, old_widget_ids=None, input_mapping=None, output_mapping=None):
        self.new_node_id, self.old_node_id, self.old_widget_ids = new_node_id, old_node_id, old_widget_ids
        self.input_mapping, self.output_mapping = input_mapping, output_mapping


class ComfyAPI:
    """``ComfyAPI().node_replacement.register`` (async), recording into ``registered`` (the server's manager)."""

    registered: list[NodeReplace] = []

    def __init__(self):
        async def register(node_replace: NodeReplace) -> None:
            ComfyAPI.registered.append(node_replace)

        self.node_replacement = SimpleNamespace(register=register)


io = SimpleNamespace(
    Schema=Schema, ComfyNode=ComfyNode, NodeOutput=NodeOutput, Custom=Custom, NodeReplace=NodeReplace,
    Image=Image, Mask=Mask, UpscaleModel=UpscaleModel, SEGS=SEGS, Float=Float, Int=Int, Boolean=Boolean, String=String, Combo=Combo,
)


class PreviewImage:
    """Saves the images as temp PNGs (8 bits, as ComfyUI does) and lists them for the node's UI."""

    def __init__(self, image, animated: bool = False, cls=None, **kwargs):
        import folder_paths
        from PIL import Image as PILImage

        self.values, self.animated = [], animated
        for index, frame in enumerate(image):
            name = f"ComfyUI_temp_{uuid.uuid4().hex[:8]}_{index:05}_.png"
            pixels = np.clip(255.0 * frame.cpu().numpy(), 0, 255).astype(np.uint8)
            PILImage.fromarray(pixels).save(os.path.join(folder_paths.get_temp_directory(), name), compress_level=1)
            self.values.append({"filename": name, "subfolder": "", "type": "temp"})

    def as_dict(self) -> dict:
        return {"images": self.values, "animated": (self.animated,)}


ui = SimpleNamespace(PreviewImage=PreviewImage)


class ComfyExtension(ABC):
    async def on_load(self) -> None:
        pass

    @abstractmethod
    async def get_node_list(self) -> list[type[ComfyNode]]:
        ...
