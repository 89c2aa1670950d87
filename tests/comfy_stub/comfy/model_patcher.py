"""Test stand-in for comfy.model_patcher.ModelPatcher: holds a module and its load/offload devices."""

import comfy.model_management


class ModelPatcher:
    def __init__(self, model, load_device, offload_device, size=0, weight_inplace_update=False):
        self.model, self.load_device, self.offload_device, self.size = model, load_device, offload_device, size

    def get_free_memory(self, device):  # ComfyUI 0.38: adds what dynamic VRAM could reclaim
        return comfy.model_management.get_free_memory(device)
