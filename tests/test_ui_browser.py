"""End to end: the standalone app over real LoRA files, driven in headless Chromium.

Needs the shared corpus of real LoRAs, Chromium at ``/usr/bin/chromium`` (or
``CHROMIUM_PATH``) and the ``playwright`` Python package, which drives that
browser; it never downloads one. Screenshots go to ``tmp_path``, or to the
folder in ``LORA_EMBEDDING_SCREENSHOTS`` (``docs`` refreshes the ones in
the documentation).
"""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
QUERY = "pokemon_wellchan"

# Library name -> corpus file. Four LoRAs trained on the same Pokémon captions
# in four repositories, and four unrelated ones.
LIBRARY = {
    "pokemon_wellchan.safetensors": "wellCh4n__pokemon-diffusers/pytorch_lora_weights.safetensors",
    "pokemon/pokemon_ginger.safetensors":
        "Ginger123319__CV/diffusers__examples__text_to_image__sd-pokemon-model-lora__pytorch_lora_weights.safetensors",
    "pokemon/pokemon_moh.safetensors":
        "MohTaher108__EducationDiffusion/examples__text_to_image__sd-pokemon-model-lora__pytorch_lora_weights.safetensors",
    "pokemon_jordan.safetensors":
        "jordanhilado__diffusers/examples__text_to_image__sd-pokemon-model-lora__pytorch_lora_weights.safetensors",
    "styles/disney.safetensors": "cloneofsimo__lora/example_loras__lora_disney.safetensors",
    "styles/rick_and_morty.safetensors": "qwerty-aditya__rick_and_morty_LoRA/pytorch_lora_weights.safetensors",
    "flowers.safetensors": "Hirvita6__LoRA-flower-diffusion/pytorch_lora_weights.safetensors",
    "miyazaki.safetensors": "TedLee109__ML-final/final_lora.safetensors",
}
POKEMON = {"pokemon_ginger", "pokemon_moh", "pokemon_jordan"}
# Preview sidecars: stem -> (background, shape colour). The others get the placeholder.
PREVIEWS = {
    "pokemon_wellchan": ((250, 214, 70), (220, 40, 40)),
    "pokemon_ginger": ((245, 200, 60), (40, 40, 40)),
    "pokemon_moh": ((255, 225, 90), (230, 120, 30)),
    "disney": ((90, 140, 230), (250, 250, 250)),
    "flowers": ((120, 190, 110), (230, 90, 160)),
}

pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason=f"corpus of real LoRAs not found at {CORPUS}")


def _write_preview(path, background, shape):
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (384, 512), background)
    draw = ImageDraw.Draw(image)
    draw.ellipse((72, 136, 312, 376), fill=shape)
    draw.rectangle((0, 448, 384, 512), fill=tuple(max(0, c - 60) for c in background))
    image.save(path)


@pytest.fixture
def library(tmp_path):
    root = tmp_path / "loras"
    for name, source in LIBRARY.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(CORPUS / source, target)
        stem = target.name[: -len(".safetensors")]
        if stem in PREVIEWS:
            _write_preview(target.with_suffix(".png"), *PREVIEWS[stem])
    (root / "truncated.safetensors").write_bytes((CORPUS / LIBRARY["flowers.safetensors"]).read_bytes()[:4096])
    return root


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_port(port, process, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.2)
    return False


@pytest.fixture
def server(library, tmp_path):
    pytest.importorskip("gradio")
    port = _free_port()
    log = open(tmp_path / "server.log", "w")
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "lora_embedding", "ui", "--library", str(library), "--db",
         str(tmp_path / "index.sqlite"), "--port", str(port)],
        cwd=str(tmp_path), stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    try:
        if not _wait_for_port(port, process, 60):
            pytest.fail(f"the UI server did not start: {(tmp_path / 'server.log').read_text()[-2000:]}")
        yield f"http://127.0.0.1:{port}/"
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}; install it (apt-get install chromium) or set CHROMIUM_PATH")
    with sync_api.sync_playwright() as playwright:
        try:
            instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        except sync_api.Error as exc:
            pytest.skip(f"Chromium at {CHROMIUM} did not start: {exc}")
        yield instance
        instance.close()


def _screenshot_dir(tmp_path):
    folder = os.environ.get("LORA_EMBEDDING_SCREENSHOTS")
    if not folder:
        return tmp_path
    folder = Path(folder)
    return folder if folder.is_absolute() else REPO / folder


def _captions(page, gallery_id):
    return page.locator(f"#{gallery_id} .caption-label").all_inner_texts()


def _pick_lora(page, stem):
    field = page.locator("#lora_embedding_pick input")
    field.click()
    field.fill(stem)
    page.get_by_role("option", name=f"{stem}.safetensors").first.click()


def test_browse_similar_and_map(server, browser, tmp_path):
    shots = _screenshot_dir(tmp_path)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(30_000)
    page.goto(server)

    page.click("#lora_embedding_index")
    status = page.locator("#lora_embedding_index_status")
    status.filter(has_text="LoRAs indexed").wait_for(timeout=90_000)
    assert "8 LoRAs indexed" in status.inner_text()
    assert "1 failed" in status.inner_text()
    page.locator("#lora_embedding_failures").get_by_text("truncated.safetensors").first.wait_for(state="attached")
    assert "truncated" in page.locator("#lora_embedding_failures").inner_text()

    page.get_by_role("tab", name="Similar").click()
    _pick_lora(page, QUERY)
    page.locator("#lora_embedding_similar .caption-label").first.wait_for()
    captions = _captions(page, "lora_embedding_similar")
    ranked = [caption.split(" · ", 1)[1] for caption in captions]
    assert set(ranked[:3]) == POKEMON, captions
    scores = [float(caption.split(" · ", 1)[0]) for caption in captions]
    assert scores == sorted(scores, reverse=True)
    assert page.locator("#lora_embedding_tag textarea, #lora_embedding_tag input").first.input_value() == \
        f"<lora:{QUERY}:1>"

    page.locator("#lora_embedding_similar .thumbnail-item").nth(1).click()
    tag = page.locator("#lora_embedding_tag textarea, #lora_embedding_tag input").first
    page.wait_for_function(
        "([selector, expected]) => document.querySelector(selector).value === expected",
        arg=["#lora_embedding_tag textarea, #lora_embedding_tag input", f"<lora:{ranked[1]}:1>"],
    )
    assert tag.input_value() == f"<lora:{ranked[1]}:1>"
    page.screenshot(path=str(shots / "ui-similar.png"), full_page=True)

    page.get_by_role("tab", name="Clusters").click()
    page.click("#lora_embedding_cluster_run")
    page.locator("#lora_embedding_map img").first.wait_for(timeout=60_000)
    page.locator("#lora_embedding_cluster_gallery .thumbnail-item").first.wait_for()
    natural_width = page.locator("#lora_embedding_map img").first.evaluate("image => image.naturalWidth")
    assert natural_width == 1200
    page.screenshot(path=str(shots / "ui-map.png"), full_page=True)
