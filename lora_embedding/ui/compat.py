"""Feature detection across the Gradio lines the UI runs on.

AUTOMATIC1111 WebUI ships Gradio 3.41.2, WebUI Forge ships Gradio 4.40.0 and
the standalone app uses current Gradio (6.x). Component arguments differ
between them, so every component is built through :func:`component`, which
drops the arguments the installed Gradio does not accept.
"""

import functools
import inspect
import logging

logger = logging.getLogger(__name__)

__all__ = ["component", "copy_button_kwargs", "gradio", "gradio_major", "update"]


def gradio():
    """Import and return the ``gradio`` module."""
    import gradio as gr

    return gr


def gradio_major():
    """Return the major version of the installed Gradio, e.g. 3, 4 or 6."""
    version = getattr(gradio(), "__version__", "0")
    return int(version.split(".")[0] or 0)


@functools.lru_cache(maxsize=None)
def _accepted_arguments(cls):
    parameters = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        # A component that takes **kwargs (Gradio 3) may still reject unknown
        # names later, so only the named parameters count as accepted.
        return frozenset(name for name, p in parameters.items() if p.kind is not inspect.Parameter.VAR_KEYWORD)
    return frozenset(parameters)


def component(cls, *args, **kwargs):
    """Build a Gradio component, dropping keyword arguments ``cls`` does not take.

    Parameters
    ----------
    cls : type
        A Gradio component or layout class.
    *args, **kwargs
        Constructor arguments. A keyword the installed Gradio does not know is
        left out and logged at debug level.

    Returns
    -------
    The component, marked so that WebUI does not save or restore its value.
    """
    accepted = _accepted_arguments(cls)
    dropped = sorted(name for name in kwargs if name not in accepted)
    if dropped:
        logger.debug("%s: Gradio %s ignores %s", cls.__name__, gradio().__version__, ", ".join(dropped))
    built = cls(*args, **{name: value for name, value in kwargs.items() if name in accepted})
    # WebUI stores input values in its ui-config.json and restores them at
    # the next start. This attribute opts out, so that the library folders,
    # the picked LoRA and the organize confirmation start from the app's state.
    built.do_not_save_to_config = True
    return built


def copy_button_kwargs(cls):
    """Return the keyword that gives a Textbox its copy button, or ``{}``.

    Gradio 6 takes ``buttons=["copy"]``; Gradio 3.41 to 5 take
    ``show_copy_button=True``.
    """
    accepted = _accepted_arguments(cls)
    if "buttons" in accepted:
        return {"buttons": ["copy"]}
    if "show_copy_button" in accepted:
        return {"show_copy_button": True}
    return {}


def update(**changes):
    """Return a property update for an output component (``gr.update``)."""
    return gradio().update(**changes)
