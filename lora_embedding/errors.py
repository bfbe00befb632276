"""Exceptions raised by lora_embedding.

Read errors name the file they concern, so a caller that processes a whole
library can report them and carry on with the next file.
"""


class LoraEmbeddingError(Exception):
    """Base class of every error this package raises on purpose."""


class LoraReadError(LoraEmbeddingError):
    """Raised when a file cannot be read as a LoRA at all.

    Parameters
    ----------
    path : str
        The file that failed.
    reason : str
        What is wrong with it, in one sentence.
    """

    def __init__(self, path, reason):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class UnsafeFileError(LoraReadError):
    """Raised when a pickled file needs more than plain tensors to load."""


class NotALoraError(LoraReadError):
    """Raised when a readable file is a checkpoint, embedding or VAE, not a LoRA."""


class ModelError(LoraEmbeddingError):
    """Raised when an embedding model is missing, corrupt or does not fit the input."""


class LibraryIndexError(LoraEmbeddingError):
    """Raised when the library index cannot be opened or updated."""


class QueryNotFoundError(LoraEmbeddingError):
    """Raised when a search query names no LoRA in the library and no file on disk."""


class OrganizeError(LoraEmbeddingError):
    """Raised when a folder plan cannot be applied or undone safely."""
