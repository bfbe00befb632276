"""ComfyUI's progress bar and cancel flag, imported only while a node runs."""

import logging

logger = logging.getLogger(__name__)

__all__ = ["ProgressReporter", "raise_if_interrupted", "interrupt_requested"]


def interrupt_requested():
    """Return True when the user pressed Cancel, without clearing the flag."""
    import comfy.model_management

    return comfy.model_management.processing_interrupted()


def raise_if_interrupted():
    """Raise ComfyUI's ``InterruptProcessingException`` (and clear the flag) when the user pressed Cancel."""
    import comfy.model_management

    comfy.model_management.throw_exception_if_processing_interrupted()


class ProgressReporter:
    """Show ``(done, total)`` on the running node's ComfyUI progress bar.

    The bar is created on the first update, once the total is known. ComfyUI
    0.3.64's progress hook raises ``InterruptProcessingException`` when the
    user cancelled, so an update can end the node.
    """

    def __init__(self):
        self._bar = None

    def __call__(self, done, total, path=None):
        """Update the bar; ``path`` is the file just finished (unused, kept for the scan callback)."""
        if total <= 0:
            raise_if_interrupted()
            return
        if self._bar is None:
            import comfy.utils

            self._bar = comfy.utils.ProgressBar(total)
        self._bar.update_absolute(done, total)
