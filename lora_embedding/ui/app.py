"""Build the LoRA Embedding Gradio app, for WebUI's tab and for the standalone server."""

import logging

from .compat import component, gradio, update
from .state import LibraryController

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_HOST", "TITLE", "build_ui", "launch"]

TITLE = "LoRA Embedding"
DEFAULT_HOST = "127.0.0.1"


def _choices_update(names, current):
    return update(choices=names, value=current if current in names else None)


def _wire_index_events(demo, controller, parts):
    """Connect indexing and page load to the components of every tab that lists LoRAs."""
    from .tab_index import failure_table, index_library, library_summary
    from .tab_settings import model_table

    gr = gradio()
    index_tab, search_tab, clusters_tab, settings_tab = parts
    lora, family = search_tab["lora"], clusters_tab["family"]
    refresh_outputs = [index_tab["summary"], index_tab["failures"], lora, family, settings_tab["models"],
                       settings_tab["folders"]]

    def refresh_views(current):
        # The folders box is set here too: WebUI restores remembered values
        # from its ui-config.json, which can name an earlier --lora-dir.
        names = controller.names()
        return (library_summary(controller), failure_table(controller), _choices_update(names, current),
                update(choices=clusters_tab["family_choices"](), value=None), model_table(controller),
                "\n".join(controller.roots))

    def run_index(current, progress=gr.Progress()):
        status, _, _ = index_library(controller, progress)
        return (status, *refresh_views(current))

    index_tab["index_button"].click(run_index, inputs=[lora], outputs=[index_tab["status"], *refresh_outputs])
    demo.load(refresh_views, inputs=[lora], outputs=refresh_outputs)


def build_ui(roots=None, *, db_path=None, library_factory=None, controller=None, executor="thread", workers=None,
             folders_editable=True):
    """Build the app as one ``gr.Blocks``; the caller launches it or hands it to WebUI.

    Building reads at most the index database, when one exists, to list
    the indexed LoRAs; no LoRA file is read before the user starts indexing.

    Parameters
    ----------
    roots : list of str
        Library folders.
    db_path : str, optional
        The index database; by default one per set of folders in the user data folder.
    library_factory : callable, optional
        ``library_factory(roots, db_path)`` returns the :class:`LoraLibrary` to use.
    controller : LibraryController, optional
        Use this controller instead of creating one from the arguments above.
    executor : {"thread", "process"}
        Indexing worker kind; WebUI and other hosts use threads.
    workers : int, optional
        Indexing workers; defaults to the number of CPUs.
    folders_editable : bool
        Whether the Settings tab lets the user change the folders.

    Returns
    -------
    gradio.Blocks
    """
    from .tab_clusters import build_clusters_tab
    from .tab_duplicates import build_duplicates_tab
    from .tab_index import build_index_tab
    from .tab_organize import build_organize_tab
    from .tab_recommend import build_recommend_tab
    from .tab_search import build_search_tab
    from .tab_settings import build_settings_tab

    if controller is None:
        if not roots:
            raise ValueError("build_ui needs at least one library folder in roots")
        controller = LibraryController(roots, db_path, library_factory, executor=executor, workers=workers)

    gr = gradio()
    with component(gr.Blocks, analytics_enabled=False, title=TITLE) as demo:
        with gr.Tabs():
            with component(gr.Tab, label="Index", id="index"):
                index_tab = build_index_tab(controller)
            with component(gr.Tab, label="Similar", id="similar"):
                search_tab = build_search_tab(controller)
            with component(gr.Tab, label="Recommend", id="recommend"):
                build_recommend_tab(controller)
            with component(gr.Tab, label="Duplicates", id="duplicates"):
                build_duplicates_tab(controller)
            with component(gr.Tab, label="Clusters", id="clusters"):
                clusters_tab = build_clusters_tab(controller)
            with component(gr.Tab, label="Organize", id="organize"):
                build_organize_tab(controller)
            with component(gr.Tab, label="Settings", id="settings"):
                settings_tab = build_settings_tab(controller, folders_editable)
        _wire_index_events(demo, controller, (index_tab, search_tab, clusters_tab, settings_tab))
    demo.lora_embedding_controller = controller
    return demo


def _launch_kwargs(demo, **kwargs):
    import inspect

    accepted = inspect.signature(demo.launch).parameters
    return {name: value for name, value in kwargs.items() if name in accepted}


def launch(roots, *, db_path=None, host=DEFAULT_HOST, port=None, block=True, executor="thread", workers=None):
    """Build the app and serve it; return the Blocks (after the server stops when ``block``).

    Parameters
    ----------
    host : str
        Address to bind; 127.0.0.1 keeps the app on this machine.
    port : int, optional
        TCP port; Gradio picks a free one from 7860 when None.
    block : bool
        Serve until interrupted; False returns while the server keeps running.
    """
    from .images import cache_folder

    demo = build_ui(roots, db_path=db_path, executor=executor, workers=workers)
    demo.queue()
    options = _launch_kwargs(
        demo, server_name=host, server_port=port, inbrowser=False, share=False, show_error=True,
        prevent_thread_lock=not block, allowed_paths=[cache_folder()], quiet=False,
    )
    logger.info("serving %s on http://%s:%s", TITLE, host, port or "(first free port from 7860)")
    demo.launch(**options)
    return demo
