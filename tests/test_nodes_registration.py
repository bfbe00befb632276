"""Registering the pack with ComfyUI: V3 entry point, legacy fallback, schemas and import cost."""

import asyncio
import importlib.util
import sys

import pytest

import comfy_fakes

PACK_INIT = comfy_fakes.REPO / "__init__.py"
NODE_IDS = [
    "FindSimilarLoras_LoraEmbedding",
    "LoadSimilarLora_LoraEmbedding",
    "RecommendLoras_LoraEmbedding",
    "LoraLibraryMap_LoraEmbedding",
    "IndexLoraLibrary_LoraEmbedding",
]


def import_pack(monkeypatch, name="custom_nodes_lora_embedding"):
    """Import the repository root the way ComfyUI imports a custom node folder."""
    spec = importlib.util.spec_from_file_location(name, PACK_INIT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


def stop_pack_service(name="custom_nodes_lora_embedding"):
    """Stop the background refresh of the pack imported as ``name``."""
    service = sys.modules[f"{name}.nodes.library_service"].reset_service()
    if service is not None:
        service.stop()


@pytest.fixture
def comfy(tmp_path, monkeypatch):
    loras = tmp_path / "loras"
    fake = comfy_fakes.install(monkeypatch, [loras], tmp_path / "user")
    comfy_fakes.make_library(loras, styles=2, runs=2)
    return fake


def v3_nodes(module):
    extension = asyncio.run(module.comfy_entrypoint())
    return asyncio.run(extension.get_node_list())


def test_pack_exports_v3_entrypoint_only(comfy, monkeypatch):
    module = import_pack(monkeypatch)

    assert callable(module.comfy_entrypoint)
    assert not hasattr(module, "NODE_CLASS_MAPPINGS")
    assert [node.define_schema().node_id for node in v3_nodes(module)] == NODE_IDS


def test_import_scans_and_embeds_nothing(comfy, monkeypatch):
    for name in [name for name in sys.modules if name.startswith("lora_embedding")]:
        monkeypatch.delitem(sys.modules, name)

    import_pack(monkeypatch)

    loaded = [name for name in sys.modules if name.startswith("lora_embedding")]
    assert loaded == []


def test_every_input_has_tooltip(comfy, monkeypatch):
    for node in v3_nodes(import_pack(monkeypatch)):
        schema = node.define_schema()
        for socket in schema.inputs + schema.outputs:
            assert socket.options.get("tooltip"), f"{schema.node_id}: socket without tooltip"


def test_lora_name_input_lists_comfy_loras(comfy, monkeypatch):
    nodes = {node.define_schema().node_id: node for node in v3_nodes(import_pack(monkeypatch))}

    schema = nodes["FindSimilarLoras_LoraEmbedding"].define_schema()
    lora_input = schema.inputs[0]

    assert lora_input.io_type == "COMBO"
    assert lora_input.options["options"] == comfy.modules["folder_paths"].get_filename_list("loras")


def test_first_lora_output_matches_loader_list(comfy, monkeypatch, tmp_path):
    nodes = {node.define_schema().node_id: node for node in v3_nodes(import_pack(monkeypatch))}
    outputs = nodes["FindSimilarLoras_LoraEmbedding"].define_schema().outputs
    first_lora = outputs[2].options["options"]
    names = comfy.modules["folder_paths"].get_filename_list("loras")

    assert type(first_lora).__name__ == "LoraNameList"
    assert not first_lora != names
    comfy_fakes.make_library(tmp_path / "loras" / "new", styles=1, runs=1)
    assert not first_lora != comfy.modules["folder_paths"].get_filename_list("loras")
    assert first_lora != ["other.safetensors"]
    assert first_lora != "STRING"


def test_v3_execute_returns_ui_and_outputs(comfy, monkeypatch):
    nodes = {node.define_schema().node_id: node for node in v3_nodes(import_pack(monkeypatch))}

    output = nodes["FindSimilarLoras_LoraEmbedding"].execute(lora_name="style0/run0.safetensors", mode="similar",
                                                             top_k=2, diversify=False)

    assert output.args[2] == "style0/run1.safetensors"
    assert "style0/run1.safetensors" in output.ui["text"][0]
    assert output.ui["images"][0]["shape"][0] == 1
    fingerprint = nodes["FindSimilarLoras_LoraEmbedding"].fingerprint_inputs(lora_name="style0/run0.safetensors")
    assert isinstance(fingerprint, str)

    stop_pack_service()


def test_legacy_fallback_without_v3_api(tmp_path, monkeypatch):
    comfy_fakes.install(monkeypatch, [tmp_path / "loras"], tmp_path / "user", v3=False)
    comfy_fakes.make_library(tmp_path / "loras", styles=1, runs=2)

    module = import_pack(monkeypatch)

    assert not hasattr(module, "comfy_entrypoint")
    assert list(module.NODE_CLASS_MAPPINGS) == NODE_IDS
    assert module.NODE_DISPLAY_NAME_MAPPINGS["FindSimilarLoras_LoraEmbedding"] == "Find Similar LoRAs"
    node = module.NODE_CLASS_MAPPINGS["FindSimilarLoras_LoraEmbedding"]
    required = node.INPUT_TYPES()["required"]
    assert required["lora_name"][0] == ["style0/run0.safetensors", "style0/run1.safetensors"]
    assert all(options.get("tooltip") for _, options in required.values())
    assert node.OUTPUT_IS_LIST == (False, True, False, False, True, False)
    result = node().run(lora_name="style0/run0.safetensors", mode="similar", top_k=1)
    assert result["result"][2] == "style0/run1.safetensors"

    stop_pack_service()


def test_broken_pack_logs_and_registers_nothing(comfy, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "broken_pack.nodes", None)

    module = import_pack(monkeypatch, name="broken_pack")

    assert module.NODE_CLASS_MAPPINGS == {}
    assert "the node pack failed to load" in caplog.text
