"""The batch front end: the ``comfyui-gfpgan`` command (``cli.py``), the folder job it runs (``folder_job.py``),
video files (``video_file.py``) and the same job on Ray (``ray_job.py``). Nothing is imported here, so
``import comfyui_gfpgan.jobs`` stays cheap; each module imports what it needs when it runs."""
