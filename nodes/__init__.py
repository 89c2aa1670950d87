"""ComfyUI nodes (V3 schema): thin adapters over the face pipeline.

``extension`` is what ComfyUI loads (it needs ComfyUI's ``comfy_api``); ``peer_workflows`` is framework-free,
so the CLI can move other packs' workflows to these nodes without ComfyUI.
"""
