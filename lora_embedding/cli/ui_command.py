"""``lora-embedding ui``: serve the Gradio app in the browser."""

import logging

from .options import library_roots, run_guarded

logger = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"


def add_parser(subparsers):
    parser = subparsers.add_parser(
        "ui",
        help="open the library in a web UI (needs gradio)",
        description="Serve the LoRA Embedding web UI: index the library, browse similar and dissimilar LoRAs "
        "with their previews, get recommendations, find duplicates, see the cluster map and organize folders.",
    )
    parser.add_argument(
        "--library", action="append", default=[], metavar="DIR",
        help="a LoRA folder, searched recursively (repeat for several; default: the ComfyUI or WebUI LoRA folder found)",
    )
    parser.add_argument("--db", metavar="FILE", help="the index database (default: one per library in the user data folder)")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to listen on (default: {DEFAULT_HOST}, this machine only)")
    parser.add_argument("--port", type=int, default=None, help="TCP port (default: the first free port from 7860)")
    parser.add_argument("--workers", type=int, default=None,
                        help="indexing threads (default: one per CPU; 0 indexes in the request thread)")
    parser.set_defaults(func=lambda args: run_guarded(run, args))


def run(args):
    try:
        import gradio  # noqa: F401
    except ImportError:
        from .options import fail

        return fail("the web UI needs gradio; install it with `pip install gradio` (or `pip install lora-embedding[ui]`)")

    from ..ui import launch

    roots = library_roots(args)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("listening on %s: anyone who can reach this address can read and move your LoRA files", args.host)
    launch(roots, db_path=args.db, host=args.host, port=args.port, workers=args.workers)
    return 0
