"""``python -m comfyui_gfpgan``: the command-line interface."""

from .jobs.cli import main

raise SystemExit(main())
