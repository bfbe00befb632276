"""Find the LoRA folders of a ComfyUI or Stable Diffusion WebUI installation.

Used when the command line names no library: the product then works on the
folder the user's host application already uses.
"""

import logging
import os

logger = logging.getLogger(__name__)

__all__ = ["find_host_lora_folders", "comfyui_lora_folders", "webui_lora_folders"]


def _repo_root():
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def comfyui_lora_folders(comfy_root):
    """Return ``models/loras`` of a ComfyUI folder plus the ``loras`` entries of its ``extra_model_paths.yaml``."""
    folders = [os.path.join(comfy_root, "models", "loras")]
    config = os.path.join(comfy_root, "extra_model_paths.yaml")
    if os.path.isfile(config):
        folders += _extra_model_paths(config)
    return [folder for folder in dict.fromkeys(folders) if os.path.isdir(folder)]


def _extra_model_paths(config_path):
    try:
        import yaml
    except ImportError:
        logger.warning("%s: PyYAML is not installed, extra model paths ignored", config_path)
        return []
    try:
        with open(config_path, encoding="utf-8") as handle:
            config = yaml.safe_load(handle) or {}
    except (OSError, yaml.YAMLError) as exc:
        logger.warning("%s: unreadable, extra model paths ignored: %s", config_path, exc)
        return []

    folders = []
    for section in config.values():
        if not isinstance(section, dict) or "loras" not in section:
            continue
        base = os.path.expanduser(str(section.get("base_path", "")))
        for line in str(section["loras"]).splitlines():
            if line.strip():
                folders.append(os.path.join(base, os.path.expanduser(line.strip())))
    return folders


def webui_lora_folders(webui_root):
    """Return ``models/Lora`` of a Stable Diffusion WebUI folder, when it exists."""
    folder = os.path.join(webui_root, "models", "Lora")
    return [folder] if os.path.isdir(folder) else []


def find_host_lora_folders():
    """Return the LoRA folders of the host application this package is installed in, or [].

    Looks at ``COMFYUI_PATH`` and ``WEBUI_PATH``, then at the folders this
    repository sits in (``ComfyUI/custom_nodes/<repo>`` or
    ``<webui>/extensions/<repo>``), then at ``./ComfyUI`` and the current folder.
    """
    candidates = []
    if os.environ.get("COMFYUI_PATH"):
        candidates.append(("comfyui", os.environ["COMFYUI_PATH"]))
    if os.environ.get("WEBUI_PATH"):
        candidates.append(("webui", os.environ["WEBUI_PATH"]))

    parent = os.path.dirname(_repo_root())
    if os.path.basename(parent) == "custom_nodes":
        candidates.append(("comfyui", os.path.dirname(parent)))
    if os.path.basename(parent) == "extensions":
        candidates.append(("webui", os.path.dirname(parent)))
    candidates += [("comfyui", os.path.join(os.getcwd(), "ComfyUI")), ("comfyui", os.getcwd()), ("webui", os.getcwd())]

    for kind, root in candidates:
        folders = comfyui_lora_folders(root) if kind == "comfyui" else webui_lora_folders(root)
        if folders:
            logger.info("using the %s LoRA folders %s", kind, folders)
            return folders
    return []
