"""The HTTP routes behind the pack's frontend extensions (``web/fidelity_defaults.js``, ``web/peer_workflows.js``).

``GET /gfpgan/peer_nodes`` is ``peer_workflows.replacement_table()``: which other packs' node types this pack has
twins of, so the frontend can move a loaded workflow onto them where ComfyUI has no node replacement.

``GET /gfpgan/model_info?model_name=NAME`` says which family a file listed in ``facerestore_models`` is, so
that a restore node's fidelity widget can start at that family's default (CodeFormer's w is 0.5 upstream,
GFP-GAN's weight 1.0) when the user picks or connects a model. The file's keys and shapes are read; no
network is built.
"""

from __future__ import annotations

import asyncio
import functools
import logging

from ..face_restorers import identify_file
from ..model_files import ModelLoadError
from .common import GFPGAN_FOLDER, RESTORER_SUFFIXES, file_fingerprint, weight_files
from .peer_workflows import replacement_table

MODEL_INFO_ROUTE = "/gfpgan/model_info"
PEER_NODES_ROUTE = "/gfpgan/peer_nodes"
_registered = False


@functools.lru_cache(maxsize=64)
def _family_of(path: str, size: int, mtime_ns: int):  # keyed by the file's fingerprint: a replaced file is read again
    return identify_file(path)


def model_info(name: str) -> tuple[dict, int]:
    """The JSON answer for a listed model file and its HTTP status: family, whether it has a fidelity knob, its
    default, and what fidelity drives (or that it has none); 404 with an ``error`` for anything else."""
    if name not in weight_files(GFPGAN_FOLDER, RESTORER_SUFFIXES):
        return {"error": f"{name!r} is not a file listed in {GFPGAN_FOLDER}"}, 404
    fingerprint = file_fingerprint(GFPGAN_FOLDER, name)
    if fingerprint is None:
        return {"error": f"{name}: no such file"}, 404
    try:
        family = _family_of(*fingerprint)
    except (ModelLoadError, OSError, ValueError) as error:
        return {"error": str(error)}, 404
    knob = family.fidelity is not None
    return {
        "family": family.name,
        "fidelity": knob,
        "default_fidelity": family.default_fidelity if knob else None,
        "note": family.fidelity if knob else family.no_fidelity_note,
    }, 200


def register_routes() -> bool:
    """Add the route to ComfyUI's server; False (and nothing done) outside a running ComfyUI server."""
    global _registered
    if _registered:
        return True
    try:
        from aiohttp import web
        from server import PromptServer

        routes = PromptServer.instance.routes
    except (ImportError, AttributeError):  # imported by tests or scripts, with no server
        return False

    @routes.get(MODEL_INFO_ROUTE)
    async def _model_info(request: web.Request) -> web.Response:
        # reading a .pth's keys takes a moment: off the event loop
        body, status = await asyncio.to_thread(model_info, request.query.get("model_name", ""))
        return web.json_response(body, status=status)

    @routes.get(PEER_NODES_ROUTE)
    async def _peer_nodes(request: web.Request) -> web.Response:
        return web.json_response(replacement_table())

    _registered = True
    logging.debug("[GFPGAN] routes %s, %s registered", MODEL_INFO_ROUTE, PEER_NODES_ROUTE)
    return True
