"""Read a node the way ComfyUI's frontend does: from its V1 node info (what /object_info sends)."""

from __future__ import annotations

WIDGET_TYPES = {"FLOAT", "INT", "COMBO", "BOOLEAN", "STRING"}


def node_inputs(node) -> list[tuple[str, str, dict, bool]]:
    """``(id, type, options, optional)`` of every input, in the order the frontend lays them out."""
    info = node.GET_NODE_INFO_V1()
    rows = []
    for group in ("required", "optional"):
        for name in info["input_order"].get(group, []):
            io_type, options = info["input"][group][name]
            rows.append((name, io_type, options, group == "optional"))
    return rows


def progress_recorder() -> list[tuple[int, int]]:
    """Route ComfyUI's progress bars into a list of ``(value, total)`` (reset with ``set_progress_bar_global_hook(None)``)."""
    import comfy.utils

    updates: list[tuple[int, int]] = []
    comfy.utils.set_progress_bar_global_hook(lambda value, total, preview, node_id=None: updates.append((value, total)))
    return updates
