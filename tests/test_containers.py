"""Safe container reading: malformed safetensors, restricted pickles, dtype conversion, weights hash."""

import pickle
import struct
import time

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

import lora_fixtures as fixtures
from lora_embedding.containers import (
    iter_tensors,
    load_tensor,
    open_tensors,
    read_safetensors_header,
    weights_hash,
)
from lora_embedding.errors import LoraReadError, UnsafeFileError
from lora_embedding.reader import read_lora


def small_file(tmp_path, name="small.safetensors", metadata=None):
    tensors = {"b": np.arange(6, dtype=np.float32).reshape(2, 3), "a": np.ones(4, dtype=np.float16)}
    save_file(tensors, str(tmp_path / name), metadata=metadata)
    return tmp_path / name


def test_header_reads_dtypes_shapes_metadata(tmp_path):
    header, metadata, offset = read_safetensors_header(small_file(tmp_path, metadata={"ss_output_name": "x"}))
    assert header["b"].dtype == "F32"
    assert header["b"].shape == (2, 3)
    assert metadata == {"ss_output_name": "x"}
    assert offset > 8


def test_lazy_load_matches_saved(tmp_path):
    path = small_file(tmp_path)
    assert np.array_equal(load_tensor(path, "b"), np.arange(6, dtype=np.float32).reshape(2, 3))
    assert dict(iter_tensors(path))["a"].dtype == np.float16


def test_bf16_widened_to_float32(tmp_path):
    values = np.array([1.5, -2.0, 0.0078125], dtype=np.float32)
    path = fixtures.write_raw_safetensors(tmp_path / "bf16.safetensors", {"x": ("BF16", (3,), fixtures.bf16_bytes(values))})
    loaded = load_tensor(path, "x")
    assert loaded.dtype == np.float32
    assert np.array_equal(loaded, values)


@pytest.mark.parametrize("dtype,torch_dtype", [("F8_E4M3", torch.float8_e4m3fn), ("F8_E5M2", torch.float8_e5m2)])
def test_fp8_decoded_like_torch(tmp_path, dtype, torch_dtype):
    values = torch.tensor([0.5, -1.75, 3.0, 0.015625, 448.0 if dtype == "F8_E4M3" else 57344.0])
    raw = values.to(torch_dtype).view(torch.uint8).numpy().tobytes()
    path = fixtures.write_raw_safetensors(tmp_path / "fp8.safetensors", {"x": (dtype, (5,), raw)})
    expected = values.to(torch_dtype).float().numpy()
    assert np.array_equal(load_tensor(path, "x"), expected)


def test_empty_file_rejected(tmp_path):
    path = tmp_path / "empty.safetensors"
    path.write_bytes(b"")
    with pytest.raises(LoraReadError, match="empty"):
        read_lora(path)


def test_truncated_file_rejected(tmp_path):
    path = small_file(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[:-8])
    with pytest.raises(LoraReadError, match="outside"):
        read_safetensors_header(path)


def test_header_length_past_end_rejected(tmp_path):
    path = tmp_path / "short.safetensors"
    path.write_bytes(struct.pack("<Q", 5000) + b'{"a": 1}')
    with pytest.raises(LoraReadError, match="truncated"):
        read_safetensors_header(path)


def test_one_gigabyte_header_fails_fast(tmp_path):
    path = tmp_path / "huge.safetensors"
    path.write_bytes(struct.pack("<Q", 1 << 30) + b"{}")
    start = time.perf_counter()
    with pytest.raises(LoraReadError, match="limit"):
        read_safetensors_header(path)
    assert time.perf_counter() - start < 1.0


def test_overlapping_offsets_rejected(tmp_path):
    raw = np.zeros(4, np.float32).tobytes()
    entries = {"a": ("F32", (4,), raw, [0, 16]), "b": ("F32", (2,), b"", [8, 16])}
    path = fixtures.write_raw_safetensors(tmp_path / "overlap.safetensors", entries)
    with pytest.raises(LoraReadError, match="overlapping"):
        read_safetensors_header(path)


def test_offsets_out_of_bounds_rejected(tmp_path):
    raw = np.zeros(4, np.float32).tobytes()
    path = fixtures.write_raw_safetensors(tmp_path / "oob.safetensors", {"a": ("F32", (4,), raw, [64, 80])})
    with pytest.raises(LoraReadError, match="outside"):
        read_safetensors_header(path)


def test_size_not_matching_shape_rejected(tmp_path):
    raw = np.zeros(4, np.float32).tobytes()
    path = fixtures.write_raw_safetensors(tmp_path / "size.safetensors", {"a": ("F32", (5,), raw)})
    with pytest.raises(LoraReadError, match="need"):
        read_safetensors_header(path)


def test_unknown_dtype_rejected(tmp_path):
    path = fixtures.write_raw_safetensors(tmp_path / "dtype.safetensors", {"a": ("C64", (1,), b"\0" * 8)})
    with pytest.raises(LoraReadError, match="unknown dtype"):
        read_safetensors_header(path)


def test_invalid_json_header_rejected(tmp_path):
    path = tmp_path / "json.safetensors"
    path.write_bytes(struct.pack("<Q", 5) + b"{nope")
    with pytest.raises(LoraReadError, match="JSON"):
        read_safetensors_header(path)


def test_missing_file_rejected(tmp_path):
    with pytest.raises(LoraReadError, match="not found"):
        read_lora(tmp_path / "absent.safetensors")


class Payload:
    """A class instance that a weights-only unpickler must not construct."""

    def __init__(self):
        self.value = 1


def test_plain_pickle_with_object_rejected(tmp_path):
    path = tmp_path / "object.pt"
    with open(path, "wb") as handle:
        pickle.dump({"x": Payload()}, handle)
    with pytest.raises(UnsafeFileError):
        read_lora(path)


def test_torch_pickle_with_object_rejected(tmp_path):
    path = tmp_path / "object.ckpt"
    torch.save({"weight": torch.zeros(2), "extra": Payload()}, path)
    with pytest.raises(UnsafeFileError, match="weights_only"):
        open_tensors(path)


def test_state_dict_wrapper_unwrapped(tmp_path):
    path = tmp_path / "wrapped.ckpt"
    torch.save({"state_dict": {"x.lora_down.weight": torch.ones(1, 2)}, "epoch": 3}, path)
    assert open_tensors(path).keys() == ["x.lora_down.weight"]


def test_weights_hash_ignores_metadata(tmp_path):
    first = small_file(tmp_path, "first.safetensors", metadata={"ss_output_name": "one"})
    second = small_file(tmp_path, "second.safetensors", metadata={"ss_output_name": "two"})
    assert weights_hash(first) == weights_hash(second)
    assert len(weights_hash(first)) == 64


def test_weights_hash_changes_with_values(tmp_path):
    first = small_file(tmp_path, "first.safetensors")
    save_file({"b": np.zeros((2, 3), np.float32), "a": np.ones(4, np.float16)}, str(tmp_path / "other.safetensors"))
    assert weights_hash(first) != weights_hash(tmp_path / "other.safetensors")
