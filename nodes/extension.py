"""The extension ComfyUI loads: the nodes, their model folders, the HTTP routes and the node replacements."""

from __future__ import annotations

from comfy_api.v0_0_2 import ComfyExtension, io

from .common import register_model_folders
from .compat import register_node_replacements
from .faces import DetectFaces, PasteFaces, RestoreFaces
from .loaders import GFPGANFromUpscaleModel, LoadFaceDetector, LoadFaceParser, LoadGFPGANModel
from .peer_workflows import PEER_NODES
from .peers import PEER_NODE_CLASSES
from .restore import GFPGANFaceRestore
from .routes import register_routes
from .segs import FacesToSEGS, FilterFacesBySEGS

NODES: list[type[io.ComfyNode]] = [
    LoadGFPGANModel,
    LoadFaceDetector,
    LoadFaceParser,
    DetectFaces,
    RestoreFaces,
    PasteFaces,
    GFPGANFaceRestore,
    GFPGANFromUpscaleModel,
    FacesToSEGS,
    FilterFacesBySEGS,
    *PEER_NODE_CLASSES,  # other packs' nodes, under our ids, for their workflows
]


class GFPGANExtension(ComfyExtension):
    async def on_load(self) -> None:
        register_model_folders()
        await register_node_replacements(PEER_NODES)

    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return NODES


register_model_folders()  # before any schema lists the folders' files
register_routes()  # before ComfyUI's server adds its routes to the app, which it does after loading the packs
