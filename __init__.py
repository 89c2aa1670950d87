"""comfyui-gfpgan: GFP-GAN blind face restoration as a ComfyUI node pack and a Python package.

This file is both the ComfyUI custom-node entry point and the root of the
``comfyui_gfpgan`` package. It must import without ComfyUI: the nodes (which
need ComfyUI's ``comfy_api``) are imported only when ComfyUI asks for them.
"""

__version__ = "0.1.0"
WEB_DIRECTORY = "./web"  # ComfyUI serves it under /extensions/<folder>/: the node help pages in web/docs/<node_id>.md


async def comfy_entrypoint():
    """Called by ComfyUI at start-up; returns the pack's V3 extension."""
    from .nodes.extension import GFPGANExtension

    return GFPGANExtension()
