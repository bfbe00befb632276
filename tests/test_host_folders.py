"""Finding the LoRA folders of a ComfyUI or WebUI installation."""

import shutil

from lora_embedding.host_folders import comfyui_lora_folders, find_host_lora_folders, webui_lora_folders


def test_comfyui_extra_model_paths(tmp_path):
    comfy = tmp_path / "ComfyUI"
    (comfy / "models" / "loras").mkdir(parents=True)
    shared = tmp_path / "shared_models"
    (shared / "loras").mkdir(parents=True)
    (shared / "lycoris").mkdir()
    (comfy / "extra_model_paths.yaml").write_text(
        "a111:\n"
        f"    base_path: {shared}\n"
        "    loras: |\n"
        "        loras\n"
        "        lycoris\n"
        "    checkpoints: models/Stable-diffusion\n"
        "other:\n"
        f"    base_path: {tmp_path / 'missing'}\n"
        "    loras: loras\n"
    )
    assert comfyui_lora_folders(str(comfy)) == [
        str(comfy / "models" / "loras"), str(shared / "loras"), str(shared / "lycoris")]


def test_broken_extra_model_paths_is_ignored(tmp_path):
    comfy = tmp_path / "ComfyUI"
    (comfy / "models" / "loras").mkdir(parents=True)
    (comfy / "extra_model_paths.yaml").write_text("a111: [unclosed\n")
    assert comfyui_lora_folders(str(comfy)) == [str(comfy / "models" / "loras")]


def test_webui_folder(tmp_path, monkeypatch):
    (tmp_path / "webui" / "models" / "Lora").mkdir(parents=True)
    assert webui_lora_folders(str(tmp_path / "webui")) == [str(tmp_path / "webui" / "models" / "Lora")]
    monkeypatch.delenv("COMFYUI_PATH", raising=False)
    monkeypatch.setenv("WEBUI_PATH", str(tmp_path / "webui"))
    monkeypatch.chdir(tmp_path)
    assert find_host_lora_folders() == [str(tmp_path / "webui" / "models" / "Lora")]


def test_nothing_found(tmp_path, monkeypatch):
    monkeypatch.delenv("COMFYUI_PATH", raising=False)
    monkeypatch.delenv("WEBUI_PATH", raising=False)
    monkeypatch.chdir(tmp_path)
    assert find_host_lora_folders() == []
