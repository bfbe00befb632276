"""The Settings tab: library folders and the embedding model used for each family."""

import logging

from .compat import component, gradio
from .gallery import table

logger = logging.getLogger(__name__)

__all__ = ["MODEL_HEADERS", "apply_folders", "build_settings_tab", "model_table"]

MODEL_HEADERS = ["family", "LoRAs", "model", "kind"]


def model_table(controller):
    """Return one row per indexed family: LoRA count, model id and kind (learned or training-free)."""
    if not controller.has_index():
        return table([], MODEL_HEADERS)
    library = controller.library
    rows = []
    for family, count in sorted(library.families().items(), key=lambda item: (-item[1], item[0] or "")):
        model = library.embedder.model_for(family)
        rows.append([family or "unknown", count, model.model_id, model.kind])
    return table(rows, MODEL_HEADERS)


def apply_folders(controller, text):
    """Switch the library to the folders in ``text`` (one per line); return ``(status, folders text)``."""
    folders = [line.strip() for line in (text or "").splitlines() if line.strip()]
    try:
        missing = controller.set_roots(folders)
    except ValueError as exc:
        return str(exc), "\n".join(controller.roots)
    status = f"Library folders: {', '.join(f'`{root}`' for root in controller.roots)}. Index the library to use them."
    if missing:
        status += f" Not found: {', '.join(missing)}; create them or fix the path."
    return status, "\n".join(controller.roots)


def build_settings_tab(controller, folders_editable=True):
    """Build the Settings tab and wire its events.

    Parameters
    ----------
    folders_editable : bool
        False inside WebUI, where the LoRA folder comes from ``--lora-dir``.
    """
    gr = gradio()
    folders = component(
        gr.Textbox, value=lambda: "\n".join(controller.roots), lines=3, label="Library folders (one per line)",
        interactive=folders_editable, elem_id="lora_embedding_folders",
    )
    with gr.Row():
        apply = component(gr.Button, value="Use these folders", visible=folders_editable)
        show_models = component(gr.Button, value="Show models")
    status = component(gr.Markdown, value="")
    models = component(gr.Dataframe, value=table([], MODEL_HEADERS), headers=MODEL_HEADERS, interactive=False,
                       label="Embedding model per family")
    component(gr.Markdown, value=(
        "A family with a bundled learned model is embedded by it (`learned`); every other family uses the "
        "training-free sketch pooling (`training-free`). Changing models re-embeds the affected files at the "
        "next indexing run."
    ))

    apply.click(lambda text: apply_folders(controller, text), inputs=[folders], outputs=[status, folders])
    show_models.click(lambda: model_table(controller), inputs=None, outputs=[models])
    return {"folders": folders, "models": models}
