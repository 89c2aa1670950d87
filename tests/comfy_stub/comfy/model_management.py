"""Test stand-in for comfy.model_management: CPU only, records what was loaded, honours Cancel as ComfyUI does."""

import torch

loaded_models: list = []
interrupt_processing = False


class InterruptProcessingException(Exception):
    pass


def get_torch_device() -> torch.device:
    return torch.device("cpu")


def unet_offload_device() -> torch.device:
    return torch.device("cpu")


def intermediate_device() -> torch.device:
    return torch.device("cpu")


def should_use_bf16(device=None, **_) -> bool:
    return False


def get_free_memory(dev=None, torch_free_too=False) -> int:
    return 8 << 30


def load_models_gpu(models, **_) -> None:
    for patcher in models:
        patcher.model.to(patcher.load_device)
        loaded_models.append(patcher)


def interrupt_current_processing(value: bool = True) -> None:
    global interrupt_processing
    interrupt_processing = value


def throw_exception_if_processing_interrupted() -> None:
    global interrupt_processing
    if interrupt_processing:
        interrupt_processing = False
        raise InterruptProcessingException()
