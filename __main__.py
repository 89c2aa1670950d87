"""``python -m comfyui_gfpgan``: the command-line interface."""

from .cli import main

raise SystemExit(main())
