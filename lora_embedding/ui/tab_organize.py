"""The Organize tab: plan moving LoRAs into cluster folders, apply after confirmation, undo."""

import logging
import os

from ..errors import LoraEmbeddingError
from .compat import component, gradio, update
from .gallery import table

logger = logging.getLogger(__name__)

__all__ = ["MODES", "PLAN_HEADERS", "apply_organize", "build_organize_tab", "plan_organize", "undo_organize"]

PLAN_HEADERS = ["LoRA", "folder", "files", "from", "to"]
MODES = {"move": "Move the files into cluster folders", "link": "Build a view of links (files stay in place)"}
REINDEX_HINT = "Press **Index library** in the Index tab so that the index lists the files where they are now."


def _organize_module():
    try:
        from .. import organize
    except ImportError as exc:
        logger.warning("organizing unavailable: %s", exc)
        return None
    return organize


def _unavailable():
    return "Organizing is not available in this installation: the `lora_embedding.organize` module is missing."


def _mode_key(mode):
    return mode if mode in MODES else next((key for key, text in MODES.items() if text == mode), "move")


def journal_folder(controller):
    """Return the folder that keeps this library's undo journals."""
    from ..organize_journal import default_journal_dir

    return default_journal_dir(controller.roots)


def _plan_rows(plan):
    rows = []
    for group in plan.groups:
        lora_move = group.moves[0]
        rows.append([group.name, group.folder, len(group.moves), lora_move.source, lora_move.destination])
    return rows


def plan_organize(controller, mode="move", folder="", n_clusters=0):
    """Plan sorting the library into cluster folders, without touching any file.

    Parameters
    ----------
    mode : {"move", "link"}
    folder : str
        For ``link``, the folder that receives the links (required); for
        ``move``, an optional folder for the cluster folders instead of
        each library folder.
    n_clusters : int
        Clusters per family; 0 picks the number automatically.

    Returns
    -------
    tuple
        ``(summary Markdown, plan table, plan as JSON data or None, confirmation checkbox update)``.
    """
    unchecked = update(value=False)
    organize = _organize_module()
    if organize is None:
        return _unavailable(), table([], PLAN_HEADERS), None, unchecked
    if not controller.has_index() or not controller.library.families():
        return "Not indexed yet: index the library first.", table([], PLAN_HEADERS), None, unchecked

    mode = _mode_key(mode)
    folder = (folder or "").strip()
    if mode == "link" and not folder:
        return "Enter the folder that receives the links.", table([], PLAN_HEADERS), None, unchecked
    target = os.path.abspath(os.path.expanduser(folder)) if folder else None
    try:
        plan = organize.make_plan(controller.library, target_root=target, mode=mode,
                                  n_clusters=int(n_clusters or 0) or None)
    except (LoraEmbeddingError, OSError, ValueError) as exc:
        logger.warning("organize plan for %s failed: %s", controller.roots, exc)
        return f"Cannot plan: {exc}", table([], PLAN_HEADERS), None, unchecked

    verb = "link" if mode == "link" else "move"
    summary = (f"Plan: {verb} {len(plan.groups)} LoRAs ({len(plan.moves)} files with sidecars) into "
               f"{len(plan.folders())} folders; {len(plan.unchanged)} LoRAs are already in place. "
               "Nothing has changed yet: tick the confirmation box and press **Apply**.")
    if mode == "move":
        summary += ("\n\nMoving files breaks saved ComfyUI workflows, which name LoRAs by their path; "
                    "WebUI prompts name LoRAs by file name and keep working.")
    return summary, table(_plan_rows(plan), PLAN_HEADERS), plan.to_json(), unchecked


def apply_organize(controller, plan_data, confirmed):
    """Carry out a plan from :func:`plan_organize` once ``confirmed`` is True.

    Returns
    -------
    tuple
        ``(status Markdown, remaining plan data, confirmation checkbox update)``.
    """
    unchecked = update(value=False)
    organize = _organize_module()
    if organize is None:
        return _unavailable(), None, unchecked
    if not plan_data:
        return "No plan yet: press **Plan** first.", None, unchecked
    if not confirmed:
        return "Nothing changed: tick the confirmation box first.", plan_data, unchecked

    try:
        plan = organize.Plan.from_json(plan_data)
        if sorted(plan.roots) != sorted(controller.roots):
            return "The plan is for other library folders: press **Plan** again.", None, unchecked
        if not plan.moves:
            return "The plan changes nothing: every LoRA is already in its folder.", None, unchecked
        journal_dir = journal_folder(controller)
        if plan.mode == "link":
            report = organize.make_link_view(plan, plan.target_root, journal_dir)
        else:
            report = organize.apply_plan(plan, journal_dir)
    except (LoraEmbeddingError, OSError) as exc:
        logger.error("organize apply for %s failed: %s", controller.roots, exc)
        return f"Apply failed: {exc}", None, unchecked

    verb = "Linked" if plan.mode == "link" else "Moved"
    status = f"{verb} {report.files} files into {len(plan.folders())} folders. **Undo** restores them."
    if plan.mode == "move":
        status += " " + REINDEX_HINT
    return status, None, unchecked


def undo_organize(controller):
    """Undo the newest applied organize run of this library; return a status Markdown."""
    organize = _organize_module()
    if organize is None:
        return _unavailable()
    try:
        report = organize.undo_last(journal_folder(controller))
    except (LoraEmbeddingError, OSError) as exc:
        logger.warning("organize undo for %s failed: %s", controller.roots, exc)
        return f"Undo failed: {exc}"
    action = "Removed links" if report.mode == "link" else "Moved back"
    status = (f"{action}: {report.restored} files; {report.already_in_place} were already in place; "
              f"removed {len(report.folders_removed)} empty folders.")
    if report.mode == "move":
        status += " " + REINDEX_HINT
    return status


def build_organize_tab(controller):
    """Build the Organize tab and wire its events."""
    gr = gradio()
    plan_state = gr.State(None)
    with gr.Row():
        mode = component(gr.Radio, choices=list(MODES.values()), value=MODES["move"], label="What to do")
        folder = component(gr.Textbox, label="Folder (links: required; move: optional, default each library folder)",
                           lines=1)
        count = component(gr.Number, value=0, precision=0, label="Clusters per family (0: automatic)")
    plan_button = component(gr.Button, value="Plan", variant="primary", elem_id="lora_embedding_organize_plan")
    summary = component(gr.Markdown, value="")
    plan_table = component(gr.Dataframe, value=table([], PLAN_HEADERS), headers=PLAN_HEADERS, interactive=False,
                           wrap=True, label="Planned moves")
    with gr.Row():
        confirm = component(gr.Checkbox, value=False, label="I have checked the plan: carry it out",
                            elem_id="lora_embedding_organize_confirm")
        apply_button = component(gr.Button, value="Apply", variant="stop")
        undo_button = component(gr.Button, value="Undo last run")
    status = component(gr.Markdown, value="")

    plan_button.click(lambda m, f, n: plan_organize(controller, m, f, n), inputs=[mode, folder, count],
                      outputs=[summary, plan_table, plan_state, confirm])
    apply_button.click(lambda data, ok: apply_organize(controller, data, ok), inputs=[plan_state, confirm],
                       outputs=[status, plan_state, confirm])
    undo_button.click(lambda: undo_organize(controller), inputs=None, outputs=[status])
    return {"plan": plan_button, "confirm": confirm}
