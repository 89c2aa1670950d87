"""Test stand-in for ComfyUI's folder_paths: model folders under a temporary models_dir."""

import os
import tempfile

models_dir = os.environ.get("GFPGAN_TEST_MODELS_DIR") or tempfile.mkdtemp(prefix="comfy_models_")
temp_directory = tempfile.mkdtemp(prefix="comfy_temp_")
folder_names_and_paths: dict[str, tuple[list[str], set[str]]] = {}


def add_model_folder_path(folder_name: str, full_folder_path: str, is_default: bool = False) -> None:
    paths, _ = folder_names_and_paths.setdefault(folder_name, ([], set()))
    if full_folder_path not in paths:
        paths.insert(0, full_folder_path) if is_default else paths.append(full_folder_path)


def get_folder_paths(folder_name: str) -> list[str]:
    return list(folder_names_and_paths[folder_name][0])


def get_filename_list(folder_name: str) -> list[str]:
    names = []
    for folder in folder_names_and_paths.get(folder_name, ([], set()))[0]:
        if os.path.isdir(folder):
            for root, _, files in os.walk(folder, followlinks=True):
                names += [os.path.relpath(os.path.join(root, f), folder) for f in files]
    return sorted(set(names))


def get_full_path(folder_name: str, filename: str) -> str | None:
    for folder in folder_names_and_paths.get(folder_name, ([], set()))[0]:
        path = os.path.join(folder, filename)
        if os.path.isfile(path):
            return path
    return None


def set_temp_directory(temp_dir: str) -> None:
    global temp_directory
    temp_directory = temp_dir


def get_temp_directory() -> str:
    return temp_directory
