"""``lora-embedding inspect``: JSON output, exit status, folders with bad files."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

import lora_fixtures as fixtures
from lora_embedding.cli import main

REPOSITORY = Path(__file__).resolve().parents[1]


def write_good(folder):
    truth = fixtures.make_truth(fixtures.SD15_MODULES)
    metadata = {"ss_output_name": "tiny", "ss_tag_frequency": json.dumps({"1_a": {"red": 2, "blue": 5}, "2_b": {"red": 4}})}
    return fixtures.write_kohya(folder / "good.safetensors", truth, fixtures.SD15_MODULES, "SD1.x", alpha=1.0,
                                metadata=metadata)


def test_inspect_json_fields(tmp_path, capsys):
    path = write_good(tmp_path)
    assert main(["inspect", str(path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["family"] == "SD1.x"
    assert result["format"] == "kohya"
    assert result["container"] == "safetensors"
    assert result["modules"] == 12
    assert result["ranks"] == {"1": 12}
    assert result["algorithms"] == {"lora": 12}
    assert result["metadata"]["output_name"] == "tiny"
    assert result["metadata"]["tags"] == [["red", 6], ["blue", 5]]
    assert result["unmapped_keys"] == []
    assert result["error"] is None


def test_inspect_folder_continues_past_bad_files(tmp_path, capsys):
    write_good(tmp_path)
    nested = tmp_path / "nested"
    nested.mkdir()
    (nested / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{")
    (nested / "notes.txt").write_text("not a LoRA")
    assert main(["inspect", str(tmp_path), "--json"]) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 2
    errors = {Path(line["path"]).name: line["error"] for line in lines}
    assert errors["good.safetensors"] is None
    assert "truncated" in errors["broken.safetensors"]


def test_inspect_all_zero_exits_one(tmp_path, capsys):
    name = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k"
    from safetensors.numpy import save_file
    save_file({f"{name}.lora_down.weight": np.ones((1, 768), np.float32),
               f"{name}.lora_up.weight": np.zeros((320, 1), np.float32)}, str(tmp_path / "zero.safetensors"))
    assert main(["inspect", str(tmp_path / "zero.safetensors"), "--json"]) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["family"] == "SD1.x"
    assert "zero" in result["error"]


def test_inspect_human_readable(tmp_path, capsys):
    path = write_good(tmp_path)
    assert main(["inspect", str(path)]) == 0
    output = capsys.readouterr().out
    assert "family: SD1.x" in output
    assert "tags: red, blue" in output


def test_python_module_entry_point(tmp_path):
    path = write_good(tmp_path)
    environment = dict(os.environ, PYTHONPATH=str(REPOSITORY))
    completed = subprocess.run([sys.executable, "-m", "lora_embedding", "inspect", str(path), "--json"],
                               capture_output=True, text=True, env=environment, cwd=tmp_path, timeout=120)
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["family"] == "SD1.x"
