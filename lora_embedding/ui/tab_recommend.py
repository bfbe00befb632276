"""The Recommend tab: suggest LoRAs for a prompt from the LoRAs it already uses."""

import logging

from ..errors import LoraEmbeddingError
from ..library import parse_lora_tags
from .compat import component, gradio
from .gallery import RESULT_HEADERS, gallery_items, lora_tag, result_rows, table, tags_text
from .tab_search import result_gallery, select_tag_handler, tag_box

logger = logging.getLogger(__name__)

__all__ = ["MODES", "build_recommend_tab", "recommend_for_prompt"]

MODES = {"similar": "Similar to the LoRAs in the prompt", "complementary": "Complementary (different styles)"}


def _empty(message):
    return message, [], table([], RESULT_HEADERS), "", []


def recommend_for_prompt(controller, prompt, mode="similar", k=8):
    """Return what the Recommend tab shows for ``prompt``.

    Returns
    -------
    tuple
        ``(status Markdown, gallery items, table, suggested tags, tags in gallery order)``.
    """
    mode = mode if mode in MODES else next((key for key, text in MODES.items() if text == mode), "similar")
    tags = parse_lora_tags(prompt)
    if not tags:
        return _empty("No `<lora:name:weight>` tag found in the prompt.")
    library = controller.library
    known = [name for name, _ in tags if library.find(name) is not None]
    unknown = [name for name, _ in tags if library.find(name) is None]

    if not known:
        return _empty(f"None of the LoRAs in the prompt is in the indexed library: {', '.join(unknown)}.")
    try:
        matches = library.recommend(known, max(1, int(k or 8)), mode)
    except LoraEmbeddingError as exc:
        logger.warning("recommend for %s failed: %s", known, exc)
        return _empty(f"Cannot recommend: {exc}")

    status = f"Using {', '.join(f'`{name}`' for name in known)} ({mode})."
    if unknown:
        status += f" Not in the library, ignored: {', '.join(f'`{name}`' for name in unknown)}."
    if not matches:
        status += " No other LoRA of the same family to suggest."
    entries = [match.entry for match in matches]
    return (status, gallery_items(matches), table(result_rows(matches), RESULT_HEADERS), tags_text(entries),
            [lora_tag(entry) for entry in entries])


def build_recommend_tab(controller):
    """Build the Recommend tab and wire its events."""
    gr = gradio()
    gallery_tags = gr.State([])
    prompt = component(
        gr.Textbox, label="Prompt", lines=3, elem_id="lora_embedding_prompt",
        placeholder="a castle at dusk, <lora:my_style:0.8>",
    )
    with gr.Row():
        mode = component(gr.Radio, choices=list(MODES.values()), value=MODES["similar"], label="Suggest")
        count = component(gr.Slider, minimum=1, maximum=50, step=1, value=8, label="Results")
        run = component(gr.Button, value="Recommend", variant="primary")
    status = component(gr.Markdown, value="")
    gallery = result_gallery("Suggestions", "lora_embedding_recommendations")
    tags = tag_box("Suggested tags (click a suggestion for one tag)", "lora_embedding_recommend_tags")
    with component(gr.Accordion, label="Scores as a table", open=False):
        rows = component(gr.Dataframe, value=table([], RESULT_HEADERS), headers=RESULT_HEADERS, interactive=False)

    def recommend(text, choice, k):
        return recommend_for_prompt(controller, text, choice, k)

    run.click(recommend, inputs=[prompt, mode, count], outputs=[status, gallery, rows, tags, gallery_tags])
    gallery.select(select_tag_handler(), inputs=[gallery_tags], outputs=[tags])
    return {"prompt": prompt, "gallery": gallery}
