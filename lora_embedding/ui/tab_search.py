"""The Similar tab: pick a LoRA, see the most similar and most dissimilar ones."""

import logging

from ..errors import LoraEmbeddingError
from .compat import component, copy_button_kwargs, gradio, update
from .gallery import RESULT_HEADERS, gallery_items, human_size, lora_tag, result_rows, table
from .images import entry_image

logger = logging.getLogger(__name__)

__all__ = ["build_search_tab", "describe_entry", "find_neighbours", "pick_tag", "result_gallery", "select_tag_handler", "tag_box"]

DEFAULT_RESULTS = 8


def describe_entry(controller, entry):
    """Return a Markdown summary of one LoRA: family, format, size, model and tags."""
    model = controller.library.embedder.model_for(entry.family)
    lines = [
        f"**{entry.stem}**  \n`{entry.name}`",
        f"family **{entry.family or 'unknown'}**, format {entry.format or 'unknown'}, {human_size(entry.size)}",
        f"embedded by `{model.model_id}` ({model.kind})",
    ]
    tags = entry.training_tags()
    if tags:
        lines.append("tags: " + ", ".join(tags))
    return "\n\n".join(lines)


def _empty_result(message):
    empty = table([], RESULT_HEADERS)
    return None, message, [], [], empty, empty, "", [], []


def find_neighbours(controller, name, k=DEFAULT_RESULTS, diversify=False):
    """Return everything the Similar tab shows for the LoRA ``name``.

    Returns
    -------
    tuple
        ``(preview image, description Markdown, similar gallery items,
        dissimilar gallery items, similar table, dissimilar table, prompt tag
        of the picked LoRA, similar tags, dissimilar tags)``. The two tag
        lists follow the gallery order, so a click on a gallery item can put
        its tag in the tag box.
    """
    if not name:
        return _empty_result("Pick a LoRA from the list (index the library first).")
    k = max(1, int(k or DEFAULT_RESULTS))
    library = controller.library
    try:
        entry, _ = library.resolve(name)
        similar = library.similar(name, k)
        dissimilar = library.dissimilar(name, k, diversify=bool(diversify))
    except LoraEmbeddingError as exc:
        logger.warning("similar search for %r failed: %s", name, exc)
        return _empty_result(f"Cannot search for `{name}`: {exc}")

    description = describe_entry(controller, entry)
    description += f"\n\nResults are {entry.family} LoRAs: other base models are not comparable."
    if not similar:
        description += f"\n\nNo other {entry.family} LoRA in the library to compare with."
    return (
        entry_image(entry),
        description,
        gallery_items(similar),
        gallery_items(dissimilar),
        table(result_rows(similar), RESULT_HEADERS),
        table(result_rows(dissimilar), RESULT_HEADERS),
        lora_tag(entry),
        [lora_tag(match.entry) for match in similar],
        [lora_tag(match.entry) for match in dissimilar],
    )


def pick_tag(tags, index):
    """Return the prompt tag of the gallery item at ``index``, or an empty text."""
    if isinstance(index, (list, tuple)):
        index = index[0]
    if tags and index is not None and 0 <= int(index) < len(tags):
        return tags[int(index)]
    return ""


def result_gallery(label, elem_id):
    """Return a read-only gallery of LoRA previews with captions."""
    gr = gradio()
    return component(
        gr.Gallery, label=label, show_label=True, elem_id=elem_id, columns=4,
        object_fit="contain", allow_preview=False, interactive=False,
    )


def tag_box(label, elem_id):
    """Return a one-line Textbox holding prompt tags, with a copy button where Gradio has one."""
    gr = gradio()
    return component(
        gr.Textbox, label=label, lines=1, interactive=True, elem_id=elem_id, **copy_button_kwargs(gr.Textbox)
    )


def select_tag_handler():
    """Return an event handler that maps a gallery click to the clicked LoRA's prompt tag."""
    gr = gradio()

    def handler(tags, evt: gr.SelectData):
        return pick_tag(tags, evt.index)

    return handler


def build_search_tab(controller):
    """Build the Similar tab and wire its events.

    Returns
    -------
    dict
        The components other tabs update, among them ``lora`` (the dropdown).
    """
    gr = gradio()
    similar_tags = gr.State([])
    dissimilar_tags = gr.State([])

    with gr.Row():
        with component(gr.Column, scale=1, min_width=260):
            lora = component(
                gr.Dropdown, choices=controller.names(), value=None, label="LoRA", filterable=True,
                interactive=True, elem_id="lora_embedding_pick",
            )
            reload = component(gr.Button, value="Reload list", variant="secondary", size="sm",
                               elem_id="lora_embedding_pick_refresh")
            preview = component(gr.Image, label="Preview", type="filepath", interactive=False, height=256)
            description = component(gr.Markdown, value="")
            tag = tag_box("Prompt tag (click a result to pick it)", "lora_embedding_tag")
        with component(gr.Column, scale=3):
            with gr.Row():
                count = component(gr.Slider, minimum=1, maximum=50, step=1, value=DEFAULT_RESULTS, label="Results")
                diversify = component(gr.Checkbox, value=True, label="Spread the dissimilar picks apart")
                find = component(gr.Button, value="Find", variant="primary", elem_id="lora_embedding_find")
            similar = result_gallery("Most similar", "lora_embedding_similar")
            dissimilar = result_gallery("Most dissimilar", "lora_embedding_dissimilar")
            with component(gr.Accordion, label="Scores as tables", open=False):
                similar_table = component(
                    gr.Dataframe, value=table([], RESULT_HEADERS), headers=RESULT_HEADERS, label="Most similar",
                    interactive=False, elem_id="lora_embedding_similar_table",
                )
                dissimilar_table = component(
                    gr.Dataframe, value=table([], RESULT_HEADERS), headers=RESULT_HEADERS, label="Most dissimilar",
                    interactive=False,
                )

    outputs = [preview, description, similar, dissimilar, similar_table, dissimilar_table, tag,
               similar_tags, dissimilar_tags]

    def run(name, k, spread):
        return find_neighbours(controller, name, k, spread)

    def reload_choices(current):
        names = controller.names()
        return update(choices=names, value=current if current in names else None)

    reload.click(reload_choices, inputs=[lora], outputs=[lora])
    find.click(run, inputs=[lora, count, diversify], outputs=outputs)
    lora.change(run, inputs=[lora, count, diversify], outputs=outputs)
    similar.select(select_tag_handler(), inputs=[similar_tags], outputs=[tag])
    dissimilar.select(select_tag_handler(), inputs=[dissimilar_tags], outputs=[tag])
    return {"lora": lora, "similar": similar, "dissimilar": dissimilar}
