"""Evaluation metrics on hand-made rankings, the retrieval protocol, folds, and the real corpus."""

from pathlib import Path

import numpy as np
import pytest

from lora_embedding.evaluation import (
    average_precision,
    heldout_folds,
    recall_at_k,
    retrieval_metrics,
    retrieval_queries,
    spearman_fidelity,
    triplet_accuracy,
)
from lora_embedding.training import CorpusEntry

CORPUS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus"


def test_average_precision_hand_ranking():
    # Ranking: relevant, not, relevant, not → (1/1 + 2/3) / 2.
    scores = [0.9, 0.8, 0.7, 0.6]
    relevant = [True, False, True, False]
    assert average_precision(scores, relevant) == pytest.approx((1 + 2 / 3) / 2)


def test_average_precision_edges():
    assert average_precision([0.5, 0.4], [True, True]) == pytest.approx(1.0)
    assert average_precision([0.5, 0.4], [False, False]) == 0.0
    assert average_precision([0.1, 0.9], [True, False]) == pytest.approx(0.5)


def test_recall_at_k_hand_ranking():
    scores = [0.1, 0.9, 0.8, 0.7, 0.3]
    relevant = [True, False, True, False, True]
    assert recall_at_k(scores, relevant, 1) == 0.0
    assert recall_at_k(scores, relevant, 2) == pytest.approx(1 / 3)
    assert recall_at_k(scores, relevant, 5) == pytest.approx(1.0)


def test_triplet_accuracy_counts_pairs():
    scores = [0.9, 0.5, 0.7, 0.5]
    relevant = [True, True, False, False]
    # pairs (0.9>0.7), (0.9>0.5), (0.5<0.7), (0.5=0.5 counts half)
    assert triplet_accuracy(scores, relevant) == pytest.approx(2.5 / 4)
    assert triplet_accuracy([0.3], [True]) is None


def _entry(name, repo, group=None, intermediate=False, usable=True):
    return CorpusEntry(name=name, path=name, repo=repo, run_id=f"{repo}:run", group=group,
                       usable=usable, intermediate=intermediate)


def test_queries_exclude_own_repository():
    entries = [
        _entry("a1", "a", "pokemon"),
        _entry("a2", "a", "pokemon", intermediate=True),
        _entry("b1", "b", "pokemon"),
        _entry("c1", "c", None),
        _entry("d1", "d", "flowers"),
    ]
    queries = retrieval_queries(entries)
    assert [query.index for query in queries] == [0, 2]

    first = queries[0]
    assert list(first.candidates) == [False, False, True, True, True]
    assert list(first.relevant) == [False, False, True, False, False]
    second = queries[1]
    assert list(second.relevant) == [True, True, False, False, False]


def test_retrieval_metrics_perfect_and_reversed():
    entries = [_entry("a", "a", "g"), _entry("b", "b", "g"), _entry("c", "c"), _entry("d", "d")]
    queries = retrieval_queries(entries)
    good = np.array([[1, .9, .1, .2], [.9, 1, .3, .1], [.1, .3, 1, .5], [.2, .1, .5, 1]])
    metrics = retrieval_metrics(good, queries)
    assert metrics["map"] == 1.0
    assert metrics["triplet_accuracy"] == 1.0
    assert metrics["queries"] == 2

    bad = 1.0 - good
    assert retrieval_metrics(bad, queries)["map"] == pytest.approx(1 / 3, abs=1e-4)


def test_spearman_of_monotone_map():
    rng = np.random.default_rng(0)
    reference = rng.random((6, 6))
    reference = (reference + reference.T) / 2
    assert spearman_fidelity(reference ** 3, reference) == pytest.approx(1.0)


def test_folds_keep_labels_together():
    labels = ["a", "a", "b", "c", "c", "c", "d", "e"]
    folds = heldout_folds(labels, 3, seed=0)
    assert sorted(i for fold in folds for i in fold) == list(range(len(labels)))
    for fold in folds:
        for label in set(labels[i] for i in fold):
            assert all(labels[i] != label for other in folds if other is not fold for i in other)


@pytest.mark.skipif(not (CORPUS / "catalog.json").exists(), reason="the real LoRA corpus (../shared/corpus) is absent")
def test_corpus_learned_map_near_gram():
    """Reads the real corpus: the bundled model's cross-run mAP is within 0.02 of the exact Gram reference."""
    pytest.importorskip("torch")
    from lora_embedding.evaluation import evaluate_corpus

    report = evaluate_corpus(str(CORPUS), str(CORPUS / "catalog.json"), family="SD1.x", retrieval_only=True)
    methods = report["methods"]
    assert report["model_id"] is not None, "the bundled SD1.x model did not load"
    assert methods["learned"]["retrieval"]["queries"] >= 3
    reference = methods["exact-gram"]["retrieval"]["map"]
    learned = methods["learned"]["retrieval"]["map"]
    assert learned >= reference - 0.02, f"learned mAP {learned} vs exact Gram {reference}"
