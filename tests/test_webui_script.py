"""The WebUI entry script, loaded with minimal stand-ins for WebUI's ``modules`` package."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "lora_embedding_tab.py"

# Builds fake modules.script_callbacks / modules.shared / modules.scripts in a
# fresh interpreter, imports the entry script the way WebUI does, and prints
# what it registered and which heavy modules the import pulled in.
DRIVER = textwrap.dedent(
    """
    import importlib.util, json, sys, types

    repo, script, lora_dir, build = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4] == "build"
    sys.path = [p for p in sys.path if p not in ("", repo)]

    registered = []
    callbacks = types.ModuleType("modules.script_callbacks")
    callbacks.on_ui_tabs = registered.append
    shared = types.ModuleType("modules.shared")
    shared.cmd_opts = types.SimpleNamespace(lora_dir=lora_dir or None)
    shared.models_path = "/nonexistent/models"
    scripts = types.ModuleType("modules.scripts")
    scripts.basedir = lambda: repo
    modules = types.ModuleType("modules")
    modules.script_callbacks, modules.shared, modules.scripts = callbacks, shared, scripts
    sys.modules.update({"modules": modules, "modules.script_callbacks": callbacks,
                        "modules.shared": shared, "modules.scripts": scripts})

    spec = importlib.util.spec_from_file_location("lora_embedding_tab", script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    heavy = sorted(name for name in ("gradio", "numpy", "torch", "sklearn", "lora_embedding") if name in sys.modules)
    result = {"registered": len(registered), "heavy_after_import": heavy, "lora_folder": module._lora_folder()}
    if build:
        tabs = registered[0]()
        blocks, title, tab_id = tabs[0]
        controller = blocks.lora_embedding_controller
        result.update(title=title, tab_id=tab_id, blocks=type(blocks).__name__, roots=controller.roots,
                      executor=controller.executor)
    print(json.dumps(result))
    """
)


def _run_driver(lora_dir, build):
    completed = subprocess.run(
        [sys.executable, "-c", DRIVER, str(REPO), str(SCRIPT), str(lora_dir or ""), "build" if build else "import"],
        capture_output=True, text=True, timeout=120, cwd=str(REPO.parent),
    )
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout.strip().splitlines()[-1])


def test_import_registers_tab_only(tmp_path):
    result = _run_driver(tmp_path, build=False)
    assert result["registered"] == 1
    assert result["heavy_after_import"] == []


def test_lora_dir_option_used(tmp_path):
    result = _run_driver(tmp_path / "my loras", build=False)
    assert result["lora_folder"] == str(tmp_path / "my loras")


def test_default_lora_folder():
    result = _run_driver(None, build=False)
    assert result["lora_folder"] == "/nonexistent/models/Lora"


def test_tab_builds_on_callback(tmp_path):
    pytest.importorskip("gradio")
    result = _run_driver(tmp_path, build=True)
    assert result["title"] == "LoRA Embedding"
    assert result["tab_id"] == "lora_embedding"
    assert result["blocks"] == "Blocks"
    assert result["roots"] == [str(tmp_path)]
    assert result["executor"] == "thread"


def test_install_script_uses_run_pip(tmp_path):
    (tmp_path / "install.py").write_text((REPO / "install.py").read_text())
    (tmp_path / "requirements.txt").write_text(
        "# comment\ntorch\nnumpy>=1.24\nlora-embedding-absent-package>=1.0  # not on any index\n"
    )
    host = tmp_path / "host"
    host.mkdir()
    (host / "launch.py").write_text(textwrap.dedent(
        """
        import json, os
        def is_installed(name):
            return False
        def run_pip(command, desc=None):
            with open(os.environ["RUN_PIP_LOG"], "a") as log:
                log.write(json.dumps([command, desc]) + "\\n")
        """
    ))
    log = tmp_path / "run_pip.jsonl"
    completed = subprocess.run(
        [sys.executable, str(tmp_path / "install.py")], capture_output=True, text=True, timeout=60,
        env={"PYTHONPATH": str(host), "RUN_PIP_LOG": str(log), "PATH": "/usr/bin:/bin"},
    )
    assert completed.returncode == 0, completed.stderr
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(calls) == 1
    assert calls[0][0].startswith('install "lora-embedding-absent-package>=1.0" -c ')
    assert "torch" not in calls[0][0].split(" -c ")[0]
