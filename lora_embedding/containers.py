"""Read tensors from safetensors files and from pickled torch files, safely.

safetensors files are parsed here without the ``safetensors`` package: the
8-byte little-endian header length and the JSON header are validated before
anything else is read, and tensors are mapped lazily with ``numpy.memmap``.
bf16 and fp8 tensors are converted to float32 in numpy, so torch is not needed.

Pickled ``.pt``/``.ckpt``/``.bin`` files are loaded only through
``torch.load(..., weights_only=True)``; a file that needs more than tensors and
plain containers raises :class:`~lora_embedding.errors.UnsafeFileError`.
"""

import hashlib
import json
import logging
import os
import pickle

import numpy as np

from .errors import LoraReadError, UnsafeFileError

__all__ = [
    "MAX_HEADER_BYTES",
    "PickleTensors",
    "SafetensorsFile",
    "TensorInfo",
    "iter_tensors",
    "load_tensor",
    "open_tensors",
    "read_safetensors_header",
    "weights_hash",
]

logger = logging.getLogger(__name__)

# A real LoRA header is a few hundred kilobytes at most (kohya metadata with a
# large tag list). The bound keeps a corrupt length field from allocating gigabytes.
MAX_HEADER_BYTES = 100 * 1024 * 1024


def _fp8_table(exponent_bits, mantissa_bits, bias, has_infinity):
    """Build the 256-entry float32 decode table of an 8-bit float format."""
    codes = np.arange(256, dtype=np.uint32)
    sign = np.where(codes >> 7, -1.0, 1.0)
    exponent = (codes >> mantissa_bits) & ((1 << exponent_bits) - 1)
    mantissa = codes & ((1 << mantissa_bits) - 1)
    fraction = mantissa / float(1 << mantissa_bits)
    normal = (1.0 + fraction) * np.exp2(exponent.astype(np.float64) - bias)
    subnormal = fraction * np.exp2(1.0 - bias)
    values = sign * np.where(exponent == 0, subnormal, normal)
    max_exponent = (1 << exponent_bits) - 1
    if has_infinity:
        # E5M2 follows IEEE: an all-ones exponent is infinity (mantissa 0) or NaN.
        special = exponent == max_exponent
        values = np.where(special & (mantissa == 0), sign * np.inf, values)
        values = np.where(special & (mantissa != 0), np.nan, values)
    else:
        # E4M3FN has no infinity: only S.1111.111 is NaN.
        values = np.where((exponent == max_exponent) & (mantissa == 7), np.nan, values)
    return values.astype(np.float32)


_FP8_E4M3_TABLE = _fp8_table(4, 3, 7, has_infinity=False)
_FP8_E5M2_TABLE = _fp8_table(5, 2, 15, has_infinity=True)


def _bf16_to_float32(raw):
    """Widen raw bf16 bits (uint16) to float32."""
    return (raw.astype(np.uint32) << 16).view(np.float32)


# safetensors dtype name -> (numpy storage dtype, converter to the returned array or None)
DTYPES = {
    "F64": (np.dtype("<f8"), None),
    "F32": (np.dtype("<f4"), None),
    "F16": (np.dtype("<f2"), None),
    "BF16": (np.dtype("<u2"), _bf16_to_float32),
    "F8_E4M3": (np.dtype("u1"), _FP8_E4M3_TABLE.__getitem__),
    "F8_E5M2": (np.dtype("u1"), _FP8_E5M2_TABLE.__getitem__),
    "I64": (np.dtype("<i8"), None),
    "I32": (np.dtype("<i4"), None),
    "I16": (np.dtype("<i2"), None),
    "I8": (np.dtype("i1"), None),
    "U8": (np.dtype("u1"), None),
    "BOOL": (np.dtype("?"), None),
}

# Storage dtypes whose values are widened on load, reported as a finding.
LOW_PRECISION_DTYPES = ("BF16", "F8_E4M3", "F8_E5M2")


class TensorInfo:
    """The dtype, shape and byte range of one stored tensor.

    Attributes
    ----------
    dtype : str
        The safetensors dtype name (``F16``, ``BF16``, ...).
    shape : tuple of int
    start, end : int
        Byte offsets relative to the data area (safetensors only).
    """

    __slots__ = ("dtype", "shape", "start", "end")

    def __init__(self, dtype, shape, start=0, end=0):
        self.dtype = dtype
        self.shape = tuple(shape)
        self.start = start
        self.end = end


def read_safetensors_header(path):
    """Read and validate the header of a safetensors file.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    header : dict of str to TensorInfo
        Every tensor's dtype, shape and data offsets, in file order.
    metadata : dict of str to str
        The ``__metadata__`` object (empty when absent).
    data_offset : int
        The file offset where the tensor data area starts.

    Raises
    ------
    LoraReadError
        When the file is empty, truncated, or its header is not valid JSON or
        describes tensors that do not fit the file.
    """
    path = os.fspath(path)
    file_size = os.path.getsize(path)
    if file_size < 8:
        raise LoraReadError(path, f"the file is {file_size} bytes long, too short for a safetensors header")

    with open(path, "rb") as handle:
        header_length = int.from_bytes(handle.read(8), "little")
        if header_length > MAX_HEADER_BYTES:
            raise LoraReadError(
                path,
                f"the safetensors header declares {header_length} bytes, more than the "
                f"{MAX_HEADER_BYTES}-byte limit; the file is corrupt or not a safetensors file",
            )
        if 8 + header_length > file_size:
            raise LoraReadError(
                path,
                f"the safetensors header declares {header_length} bytes but the file has only "
                f"{file_size - 8} after the length field; the file is truncated",
            )
        raw_header = handle.read(header_length)

    try:
        document = json.loads(raw_header.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LoraReadError(path, f"the safetensors header is not valid JSON ({exc})") from None
    if not isinstance(document, dict):
        raise LoraReadError(path, "the safetensors header is not a JSON object")

    metadata = _validate_metadata(path, document.pop("__metadata__", None))
    data_offset = 8 + header_length
    header = _validate_entries(path, document, file_size - data_offset)
    return header, metadata, data_offset


def _validate_metadata(path, metadata):
    if metadata is None:
        return {}
    if not isinstance(metadata, dict):
        raise LoraReadError(path, "the safetensors __metadata__ entry is not a JSON object")
    return {str(key): value if isinstance(value, str) else json.dumps(value) for key, value in metadata.items()}


def _validate_entries(path, document, data_size):
    """Check dtypes, shapes and offsets of every header entry; return TensorInfo objects."""
    header = {}
    for name, entry in document.items():
        if not isinstance(entry, dict):
            raise LoraReadError(path, f"tensor {name!r}: the header entry is not a JSON object")
        dtype = entry.get("dtype")
        shape = entry.get("shape")
        offsets = entry.get("data_offsets")
        if dtype not in DTYPES:
            raise LoraReadError(path, f"tensor {name!r} has unknown dtype {dtype!r}")
        if not isinstance(shape, list) or not all(isinstance(dim, int) and dim >= 0 for dim in shape):
            raise LoraReadError(path, f"tensor {name!r} has an invalid shape {shape!r}")
        if (
            not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(isinstance(offset, int) for offset in offsets)
        ):
            raise LoraReadError(path, f"tensor {name!r} has invalid data_offsets {offsets!r}")
        start, end = offsets
        if not 0 <= start <= end <= data_size:
            raise LoraReadError(
                path,
                f"tensor {name!r} has data_offsets [{start}, {end}] outside the "
                f"{data_size}-byte data area; the file is truncated or corrupt",
            )
        expected = int(np.prod(shape, dtype=np.int64)) * DTYPES[dtype][0].itemsize
        if end - start != expected:
            raise LoraReadError(
                path,
                f"tensor {name!r} occupies {end - start} bytes but dtype {dtype} and shape "
                f"{shape} need {expected}",
            )
        header[name] = TensorInfo(dtype, shape, start, end)

    _check_overlaps(path, header)
    return header


def _check_overlaps(path, header):
    ranges = sorted((info.start, info.end, name) for name, info in header.items() if info.end > info.start)
    for (_, previous_end, previous_name), (start, _, name) in zip(ranges, ranges[1:]):
        if start < previous_end:
            raise LoraReadError(path, f"tensors {previous_name!r} and {name!r} have overlapping data_offsets")


class SafetensorsFile:
    """A safetensors file whose tensors are mapped on demand.

    Parameters
    ----------
    path : str or os.PathLike
    """

    container = "safetensors"

    def __init__(self, path):
        self.path = os.fspath(path)
        self.header, self.metadata, self.data_offset = read_safetensors_header(self.path)
        self._memmap = None

    def keys(self):
        """Return the tensor names in file order."""
        return list(self.header)

    def info(self, name):
        """Return the :class:`TensorInfo` of one tensor."""
        return self.header[name]

    def raw(self, name):
        """Return the stored bytes of one tensor as a read-only numpy view of its storage dtype."""
        info = self.header[name]
        storage = DTYPES[info.dtype][0]
        if info.end == info.start:
            return np.zeros(info.shape, dtype=storage)
        if self._memmap is None:
            self._memmap = np.memmap(self.path, dtype=np.uint8, mode="r", offset=self.data_offset)
        view = self._memmap[info.start:info.end].view(storage)
        return view.reshape(info.shape)

    def load(self, name):
        """Return one tensor as numpy (bf16/fp8 widened to float32; others unconverted)."""
        info = self.header[name]
        converter = DTYPES[info.dtype][1]
        array = self.raw(name)
        return converter(array) if converter is not None else array


class PickleTensors:
    """The tensors of a pickled torch file, loaded with ``weights_only=True``.

    A ``{"state_dict": {...}}`` wrapper is unwrapped, and a flat list or tuple
    of tensors (cloneofsimo's ``.pt`` files) is named ``[0]``, ``[1]``, ...

    Parameters
    ----------
    path : str or os.PathLike
    """

    container = "pickle"

    def __init__(self, path):
        self.path = os.fspath(path)
        self.metadata = {}
        self.is_list = False
        self._arrays = {}
        self.header = {}
        self._load()

    def _load(self):
        state = _torch_load(self.path)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]
        if isinstance(state, (list, tuple)):
            self.is_list = True
            state = {f"[{index}]": tensor for index, tensor in enumerate(state)}
        if not isinstance(state, dict):
            raise LoraReadError(self.path, f"the pickle contains a {type(state).__name__}, not a dict or list of tensors")

        for name, value in state.items():
            array = _tensor_to_numpy(value)
            if array is None:
                # Nested dicts and non-tensor values (epoch counters, strings) are skipped.
                logger.debug("%s: skipping non-tensor entry %r", self.path, name)
                continue
            self._arrays[str(name)] = array
            self.header[str(name)] = TensorInfo(_numpy_dtype_name(value), array.shape)

    def keys(self):
        """Return the tensor names in file order."""
        return list(self._arrays)

    def info(self, name):
        """Return the :class:`TensorInfo` of one tensor."""
        return self.header[name]

    def raw(self, name):
        """Return one tensor (already converted to numpy)."""
        return self._arrays[name]

    def load(self, name):
        """Return one tensor as numpy."""
        return self._arrays[name]


def _torch_load(path):
    import torch  # imported lazily: only pickled files need torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeFileError(
            path,
            "the pickle needs more than tensors and plain containers to load, and it is only "
            f"loaded with torch.load(weights_only=True); convert it to safetensors ({exc})",
        ) from None
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        raise LoraReadError(path, f"torch.load failed: {exc}") from None


_TORCH_DTYPE_NAMES = {
    "torch.float64": "F64",
    "torch.float32": "F32",
    "torch.float16": "F16",
    "torch.bfloat16": "BF16",
    "torch.float8_e4m3fn": "F8_E4M3",
    "torch.float8_e5m2": "F8_E5M2",
    "torch.int64": "I64",
    "torch.int32": "I32",
    "torch.int16": "I16",
    "torch.int8": "I8",
    "torch.uint8": "U8",
    "torch.bool": "BOOL",
}


def _numpy_dtype_name(tensor):
    return _TORCH_DTYPE_NAMES.get(str(tensor.dtype), str(tensor.dtype))


def _tensor_to_numpy(value):
    """Convert a torch tensor to numpy (bf16/fp8 widened to float32), else return None."""
    import torch

    if not isinstance(value, torch.Tensor):
        return None
    tensor = value.detach().cpu()
    if tensor.dtype in (torch.bfloat16, torch.float8_e4m3fn, torch.float8_e5m2):
        tensor = tensor.float()
    return tensor.contiguous().numpy()


def _looks_like_pickle(path):
    with open(path, "rb") as handle:
        start = handle.read(4)
    # torch.save writes a zip archive; legacy torch files start with a pickle protocol opcode.
    return start.startswith(b"PK\x03\x04") or start[:1] == b"\x80"


def open_tensors(path):
    """Open a LoRA container and return its tensor source.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    SafetensorsFile or PickleTensors
        Both have ``keys()``, ``info(name)``, ``load(name)``, ``metadata`` and
        ``container``.

    Raises
    ------
    LoraReadError
        When the file is missing, empty or malformed.
    UnsafeFileError
        When a pickle needs more than tensors to load.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise LoraReadError(path, "file not found")
    if os.path.getsize(path) == 0:
        raise LoraReadError(path, "the file is empty")
    if _looks_like_pickle(path):
        return PickleTensors(path)
    return SafetensorsFile(path)


def load_tensor(path, name):
    """Load one tensor of a file as numpy.

    Parameters
    ----------
    path : str or os.PathLike
    name : str

    Returns
    -------
    numpy.ndarray
    """
    return open_tensors(path).load(name)


def iter_tensors(path):
    """Yield ``(name, array)`` for every tensor of a file, in file order, loading lazily."""
    source = open_tensors(path)
    for name in source.keys():
        yield name, source.load(name)


def weights_hash(path):
    """Compute the weights hash of a LoRA file.

    The hash is sha256 over, for every tensor in sorted name order, the name,
    the dtype name, the shape and the raw stored bytes. Metadata does not
    enter it, so the same weights saved with different metadata hash alike.
    Pickled files hash their tensors after loading (bf16 widened to float32),
    so a pickle and a safetensors copy of the same bf16 weights differ.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    str
        64 hexadecimal digits.
    """
    source = open_tensors(path)
    digest = hashlib.sha256()
    for name in sorted(source.keys()):
        info = source.info(name)
        digest.update(name.encode("utf-8") + b"\0")
        digest.update(info.dtype.encode("ascii") + b"\0")
        digest.update(json.dumps(list(info.shape)).encode("ascii") + b"\0")
        digest.update(memoryview(np.ascontiguousarray(source.raw(name))).cast("B"))
    return digest.hexdigest()
