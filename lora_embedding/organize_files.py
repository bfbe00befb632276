"""File moves that never overwrite, for folder organizing.

Within one filesystem a file is moved by hard-linking it to its destination
and then unlinking the source, because ``link`` fails when the destination
exists and so cannot overwrite. Where hard links are not supported (FAT,
exFAT, some network shares) the move falls back to ``os.rename`` after an
existence check. Across filesystems the file is copied to a temporary name in
the destination folder, fsync'd and verified by size and SHA-256, then put in
place the same way, and only then is the source deleted.
"""

import errno
import hashlib
import logging
import os

from .errors import OrganizeError

logger = logging.getLogger(__name__)

__all__ = ["files_identical", "move_file", "partial_path", "sha256_of"]

CHUNK_BYTES = 1024 * 1024

_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK, errno.ENOSYS, errno.EXDEV}


def partial_path(destination):
    """Return the temporary name a cross-filesystem copy to ``destination`` is written under."""
    folder, name = os.path.split(destination)
    return os.path.join(folder, f".{name}.lora-embedding-partial")


def sha256_of(path):
    """Return the hex SHA-256 of the file at ``path``."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def files_identical(first, second):
    """Return True when two paths are the same file or have the same size and SHA-256."""
    if os.path.samefile(first, second):
        return True
    if os.path.getsize(first) != os.path.getsize(second):
        return False
    return sha256_of(first) == sha256_of(second)


def fsync_folder(folder):
    """Flush a folder's entries to disk where the platform allows opening folders."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def same_filesystem(source, destination_folder):
    """Return True when ``source`` and ``destination_folder`` are on one filesystem."""
    return os.stat(source).st_dev == os.stat(destination_folder).st_dev


def _place_without_overwrite(source, destination):
    """Give ``source`` the name ``destination`` on the same filesystem, failing if it exists."""
    try:
        os.link(source, destination)
    except FileExistsError:
        raise
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        # NOTE: without hard links, a file created at the destination between
        # this check and the rename would be replaced on POSIX systems.
        if os.path.lexists(destination):
            raise FileExistsError(errno.EEXIST, "destination exists", destination) from exc
        os.rename(source, destination)
        return
    os.unlink(source)


def _copy_verified(source, destination):
    temporary = partial_path(destination)
    digest = hashlib.sha256()
    with open(source, "rb") as reader, open(temporary, "xb") as writer:
        for chunk in iter(lambda: reader.read(CHUNK_BYTES), b""):
            digest.update(chunk)
            writer.write(chunk)
        writer.flush()
        os.fsync(writer.fileno())

    expected_size = os.path.getsize(source)
    if os.path.getsize(temporary) != expected_size or sha256_of(temporary) != digest.hexdigest():
        os.unlink(temporary)
        raise OrganizeError(f"copy of {source} to {destination} does not match the original; nothing was moved")

    try:
        _place_without_overwrite(temporary, destination)
    except FileExistsError:
        os.unlink(temporary)
        raise
    fsync_folder(os.path.dirname(destination))
    os.unlink(source)


def move_file(source, destination):
    """Move one file without ever overwriting an existing destination.

    The destination folder must exist.

    Raises
    ------
    FileExistsError
        When ``destination`` exists; nothing is changed.
    OSError
        When the move fails; the source is still in place.
    """
    if os.path.lexists(destination):
        raise FileExistsError(errno.EEXIST, "destination exists", destination)

    folder = os.path.dirname(destination)
    if same_filesystem(source, folder):
        _place_without_overwrite(source, destination)
    else:
        _copy_verified(source, destination)
    fsync_folder(folder)
    fsync_folder(os.path.dirname(source))
