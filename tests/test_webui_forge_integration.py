"""The extension inside a real Stable Diffusion WebUI Forge (Gradio 4.40).

Runs only when ``FORGE_PATH`` names a Forge folder that can start (see
docs/webui.md for building one); ``FORGE_PYTHON`` is its Python (default:
``FORGE_PATH/venv/bin/python``). With ``FORGE_REQS_FILE`` Forge prepares its
environment from that requirements file and runs the extension's
``install.py`` itself. Without it, the test runs ``install.py`` first and
starts Forge with ``--skip-prepare-environment``. When Chromium
and playwright are available, the test also indexes and searches inside
the tab. Forge takes about a minute to start on a CPU-only machine.
"""

import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from library_files import write_lora

REPO = Path(__file__).resolve().parents[1]
FORGE = os.environ.get("FORGE_PATH")
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
START_TIMEOUT = 300

pytestmark = pytest.mark.skipif(not FORGE, reason="set FORGE_PATH to a WebUI Forge folder to run this test")


def _forge_python():
    return os.environ.get("FORGE_PYTHON") or str(Path(FORGE) / "venv" / "bin" / "python")


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _get_json(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


@pytest.fixture
def extension_link():
    """Link this repository into Forge's extensions folder unless a link to it is there already."""
    extensions = Path(FORGE) / "extensions"
    for existing in extensions.iterdir():
        if existing.resolve() == REPO:
            yield existing
            return
    link = extensions / "lora-embedding-under-test"
    link.symlink_to(REPO, target_is_directory=True)
    try:
        yield link
    finally:
        link.unlink()


@pytest.fixture
def lora_dir(tmp_path):
    folder = tmp_path / "Lora"
    (folder / "ink").mkdir(parents=True)
    write_lora(folder / "ink" / "ink_run1.safetensors", style_seed=1, run_seed=11)
    write_lora(folder / "ink" / "ink_run2.safetensors", style_seed=1, run_seed=12)
    write_lora(folder / "oil_run1.safetensors", style_seed=2, run_seed=21)
    write_lora(folder / "neon_run1.safetensors", style_seed=3, run_seed=31)
    return folder


@pytest.fixture
def forge(extension_link, lora_dir, tmp_path):
    python = _forge_python()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    extra = []
    if os.environ.get("FORGE_REQS_FILE"):
        env["REQS_FILE"] = os.environ["FORGE_REQS_FILE"]
    else:
        subprocess.run([python, str(extension_link / "install.py")], cwd=FORGE, check=True, timeout=600)
        extra = ["--skip-prepare-environment"]

    port = _free_port()
    log_path = tmp_path / "forge.log"
    log = open(log_path, "w")
    command = [python, "launch.py", "--skip-torch-cuda-test", "--skip-python-version-check", "--always-cpu",
               "--server-name", "127.0.0.1", "--port", str(port), "--api", "--lora-dir", str(lora_dir), *extra]
    process = subprocess.Popen(command, cwd=FORGE, stdout=log, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if process.poll() is not None:
                pytest.fail(f"Forge exited with {process.returncode}: {log_path.read_text()[-3000:]}")
            try:
                _get_json(base + "/sdapi/v1/loras")
                break
            except (urllib.error.URLError, OSError, ValueError):
                if time.monotonic() > deadline:
                    pytest.fail(f"Forge start timed out after {START_TIMEOUT} s: {log_path.read_text()[-3000:]}")
                time.sleep(2)
        yield base, log_path
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _labels(config):
    return [component.get("props", {}).get("label") for component in config["components"]]


def test_tab_appears_in_forge(forge, lora_dir, tmp_path):
    base, log_path = forge
    config = _get_json(base + "/config")
    assert config["version"].startswith("4.")
    labels = _labels(config)
    assert "LoRA Embedding" in labels
    for tab in ("Index", "Similar", "Recommend", "Duplicates", "Clusters", "Organize", "Settings"):
        assert tab in labels
    assert any(c.get("props", {}).get("elem_id") == "lora_embedding_folders" for c in config["components"])
    assert "Traceback" not in log_path.read_text().split("Running on local URL")[-1]

    names = {item["name"] for item in _get_json(base + "/sdapi/v1/loras")}
    assert {"ink_run1", "oil_run1"} <= names

    _drive_tab_in_browser(base, lora_dir, tmp_path)


def _drive_tab_in_browser(base, lora_dir, tmp_path):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return
    if not os.path.exists(CHROMIUM):
        return

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.set_default_timeout(60_000)
        page.goto(base + "/")
        page.get_by_role("tab", name="LoRA Embedding").click()
        tab = page.locator("#tab_lora_embedding")
        tab.get_by_role("tab", name="Settings", exact=True).click()
        folders = page.locator("#lora_embedding_folders textarea")
        assert folders.input_value() == str(lora_dir)
        tab.get_by_role("tab", name="Index", exact=True).click()
        page.click("#lora_embedding_index")
        status = page.locator("#lora_embedding_index_status")
        status.filter(has_text="LoRAs indexed").wait_for(timeout=120_000)
        assert "4 LoRAs indexed" in status.inner_text()

        tab.get_by_role("tab", name="Similar", exact=True).click()
        field = page.locator("#lora_embedding_pick input")
        field.click()
        field.fill("ink_run1")
        page.get_by_role("option", name="ink/ink_run1.safetensors").first.click()
        page.locator("#lora_embedding_similar .caption-label").first.wait_for()
        captions = page.locator("#lora_embedding_similar .caption-label").all_inner_texts()
        assert captions[0].split(" · ", 1)[1] == "ink_run2"
        target = tmp_path
        shots = os.environ.get("LORA_EMBEDDING_SCREENSHOTS")
        if shots:
            target = Path(shots) if os.path.isabs(shots) else REPO / shots
        page.screenshot(path=str(target / "ui-forge.png"), full_page=False)
        browser.close()
