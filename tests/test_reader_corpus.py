"""Every file of the shared real-LoRA corpus reads with the catalog's family and module count."""

import json
from pathlib import Path

import pytest

from lora_embedding.errors import LoraReadError
from lora_embedding.reader import read_lora

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"
CATALOG = CORPUS / "catalog.json"

pytestmark = pytest.mark.skipif(not CATALOG.is_file(), reason=f"corpus not found at {CORPUS}")


def catalog_entries():
    if not CATALOG.is_file():
        return []
    return json.loads(CATALOG.read_text())


def expected_family(entry):
    guess = entry["base_model_guess"]
    # Text-encoder-only CLIP-L files are reported as SD1.x.
    return "SD1.x" if guess.startswith("CLIP-L text-encoder only") else guess


@pytest.mark.parametrize("entry", catalog_entries(), ids=lambda entry: entry["saved_as"])
def test_corpus_file_reads(entry):
    path = CORPUS / entry["saved_as"]
    if not entry["usable"]:
        with pytest.raises(LoraReadError) as caught:
            read_lora(path)
        assert caught.value.reason
        return

    lora = read_lora(path)
    assert lora.family == expected_family(entry)
    assert lora.stored_modules == entry["n_modules"]
    assert lora.unmapped_keys == []
    assert len(lora.modules) == entry["n_modules"]
