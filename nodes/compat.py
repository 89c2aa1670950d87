"""Every ComfyUI API newer than the oldest supported release (0.3.64) that the nodes use, probed here.

Each probe names the release that has it, and falls back to what 0.3.64 offers, so one pack
loads from 0.3.64 (tested) through 0.8.0 (tested) to 0.38.x (read from its source). Probes run
at call time, not import time, so tests can take a feature away.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from comfy_api.v0_0_2 import io

import comfy.model_management as model_management


def schema_extras(search_aliases: list[str]) -> dict[str, Any]:
    """Schema keywords this ComfyUI accepts; ``search_aliases`` arrived after 0.8.0 (0.38.x has it)."""
    fields = {f.name for f in dataclasses.fields(io.Schema)} if dataclasses.is_dataclass(io.Schema) else set()
    return {"search_aliases": search_aliases} if "search_aliases" in fields else {}


def segs_type() -> Any:
    """Core's ``io.SEGS`` (io_type "SEGS", the name Impact Pack uses; 0.3.64 has it already), else our own."""
    return getattr(io, "SEGS", None) or io.Custom("SEGS")


def seed_control() -> Any:
    """The seed's control widget starting at "fixed" where ComfyUI takes a mode (``io.ControlAfterGenerate``,
    0.38.x): with ``noise`` fixed a changing seed would only re-run the node. Before that, ``True``
    (the frontend then starts it at "randomize"; the shipped workflows store "fixed")."""
    modes = getattr(io, "ControlAfterGenerate", None)
    return modes.fixed if modes is not None else True


def is_out_of_memory(error: BaseException) -> bool:
    """ComfyUI's own test where it has one (``is_oom``, after 0.8.0: also accelerator errors that
    say out of memory); before that, core caught ``torch.cuda.OutOfMemoryError`` only."""
    is_oom = getattr(model_management, "is_oom", None)
    if is_oom is not None:
        return bool(is_oom(error))
    return isinstance(error, torch.cuda.OutOfMemoryError)


def free_memory(patcher: Any, device: torch.device) -> int:
    """Bytes free for work on ``device``: the ModelPatcher's count where it offers one (after 0.8.0;
    with dynamic VRAM it adds what ComfyUI can reclaim), else ``get_free_memory``."""
    own = getattr(patcher, "get_free_memory", None)
    if own is not None:
        return int(own(device))
    return int(model_management.get_free_memory(device))


async def register_node_replacements(peers) -> bool:
    """Register ``peers`` (``peer_workflows.PeerNode``) with ComfyUI's node replacement where it has one (0.19 on:
    ``io.NodeReplace``, ``ComfyAPI().node_replacement``): ``/prompt`` then rewrites a prompt naming a peer node
    that is not installed, and the frontend offers the swap. False, and nothing done, where it is missing."""
    node_replace = getattr(io, "NodeReplace", None)
    try:
        from comfy_api.v0_0_2 import ComfyAPI

        registry = getattr(ComfyAPI(), "node_replacement", None)
    except (ImportError, TypeError, RuntimeError):
        registry = None
    if node_replace is None or registry is None:
        return False
    try:
        for peer in peers:
            # every input by its own id: the twin's inputs are the peer's (an input the prompt lacks fails there)
            await registry.register(node_replace(
                new_node_id=peer.our_type, old_node_id=peer.peer_type, old_widget_ids=list(peer.widgets),
                input_mapping=[{"new_id": name, "old_id": name} for name in peer.inputs],
                # without it the frontend's swap leaves the twin's outputs unlinked
                output_mapping=[{"old_idx": index, "new_idx": index} for index in range(peer.outputs)],
            ))
    except AttributeError:  # ComfyUI imported without its server (tests, scripts): nothing to register with
        return False
    return True
