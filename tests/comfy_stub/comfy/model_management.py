"""Test stand-in for comfy.model_management: CPU only, records what was loaded and honours a cancel flag."""

import torch

loaded_models: list = []
interrupt_requested = False


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


def throw_exception_if_processing_interrupted() -> None:
    global interrupt_requested
    if interrupt_requested:
        interrupt_requested = False
        raise InterruptProcessingException()
