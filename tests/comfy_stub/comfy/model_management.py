"""Test stand-in for comfy.model_management (as of ComfyUI 0.38): CPU only, records what was loaded
and how, tells out-of-memory errors as ComfyUI does, honours Cancel as ComfyUI does."""

import torch

loaded_models: list = []
load_calls: list[dict] = []  # one entry per load_models_gpu call: its patchers and keywords
interrupt_processing = False


class InterruptProcessingException(BaseException):  # a BaseException since 0.38, so `except Exception` passes it
    pass


def get_torch_device() -> torch.device:
    return torch.device("cpu")


def unet_offload_device() -> torch.device:
    return torch.device("cpu")


def intermediate_device() -> torch.device:
    return torch.device("cpu")


def should_use_bf16(device=None, model_params=0, prioritize_performance=True, manual_cast=False) -> bool:
    return False


def get_free_memory(dev=None, torch_free_too=False) -> int:
    return 8 << 30


def soft_empty_cache(force=False) -> None:
    pass


def is_oom(e) -> bool:
    return isinstance(e, torch.cuda.OutOfMemoryError) or (
        isinstance(e, getattr(torch, "AcceleratorError", RuntimeError)) and "out of memory" in str(e).lower()
    )


def load_models_gpu(models, memory_required=0, force_patch_weights=False, minimum_memory_required=None,
                    force_full_load=False) -> None:
    load_calls.append({"models": list(models), "force_full_load": force_full_load})
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
