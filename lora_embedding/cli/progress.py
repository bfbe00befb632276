"""A tqdm progress bar for indexing runs on the command line."""

import os


class IndexProgress:
    """Callable ``progress(done, total, path)`` that drives a tqdm bar on stderr.

    The bar is created on the first call, so a run with nothing to read shows nothing.
    """

    def __init__(self, disable=False):
        self.disable = disable
        self._bar = None

    def __call__(self, done, total, path):
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="file", desc="indexing", disable=self.disable)
        self._bar.set_postfix_str(os.path.basename(path)[-40:], refresh=False)
        self._bar.update(done - self._bar.n)

    def close(self):
        """Close the bar, if one was shown."""
        if self._bar is not None:
            self._bar.close()
