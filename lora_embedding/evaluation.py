"""Measure embeddings and baselines on a catalogued corpus of real LoRAs, in one run.

Three measurements per method:

- **invariance**: the minimum cosine between a LoRA and its copies under the
  weight-preserving transforms of :mod:`lora_embedding.augment`, over a few files;
- **fidelity**: the Spearman correlation between the method's similarity and
  the exact output-side Gram cosine over all pairs of files;
- **cross-run retrieval**: a query's relevant items are the files of the
  same catalog ``group`` from other repositories. Files of the query's own
  repository (its run and its checkpoints) are left out of its ranking,
  intermediate checkpoints are not used as queries, and unusable files are
  skipped. Reported as mean average precision, recall@5 and the research
  method's triplet accuracy (the fraction of (relevant, non-relevant) pairs
  ranked in the right order, ties counting one half).

The learned encoder is also measured with whole groups held out of its
training: the files are split into folds by positive label (run, group and
duplicates together), one model is trained per fold on the other folds, and
each file's similarities to all others come from the model that never saw
its fold.
"""

import logging
import time
from dataclasses import dataclass

import numpy as np
from scipy.stats import spearmanr

from . import augment
from .baselines import GramReference, RawFactorPCA, delta_cosine_matrix, random_similarity
from .features import extract_features
from .pooling import SketchPooling

logger = logging.getLogger(__name__)

__all__ = [
    "RetrievalQuery",
    "average_precision",
    "cosine_matrix",
    "evaluate_corpus",
    "format_report",
    "heldout_folds",
    "recall_at_k",
    "retrieval_metrics",
    "retrieval_queries",
    "spearman_fidelity",
    "triplet_accuracy",
]

RECALL_K = 5


@dataclass
class RetrievalQuery:
    """One cross-run retrieval query.

    Attributes
    ----------
    index : int
        The query file's position.
    candidates : ndarray of bool
        Files ranked for this query (other repositories, not the query).
    relevant : ndarray of bool
        Candidates of the query's group.
    """

    index: int
    candidates: np.ndarray
    relevant: np.ndarray


def _ranking(scores, relevant):
    """Return the relevance flags sorted by decreasing score (ties broken by position)."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    return np.asarray(relevant, dtype=bool)[order]


def average_precision(scores, relevant):
    """Return the average precision of ranking ``relevant`` items by decreasing ``scores``.

    Parameters
    ----------
    scores : array of float
    relevant : array of bool

    Returns
    -------
    float
        The mean over relevant items of the precision at their rank; 0.0 when
        nothing is relevant.
    """
    ranked = _ranking(scores, relevant)
    hits = np.flatnonzero(ranked)
    if hits.size == 0:
        return 0.0
    precisions = np.arange(1, hits.size + 1) / (hits + 1)
    return float(precisions.mean())


def recall_at_k(scores, relevant, k):
    """Return the fraction of relevant items ranked in the top ``k`` (0.0 when nothing is relevant)."""
    ranked = _ranking(scores, relevant)
    total = int(ranked.sum())
    return 0.0 if total == 0 else float(ranked[:k].sum()) / total


def triplet_accuracy(scores, relevant):
    """Return the fraction of (relevant, non-relevant) pairs where the relevant item scores higher.

    Ties count one half. Returns None when either side is empty.
    """
    scores = np.asarray(scores, dtype=np.float64)
    relevant = np.asarray(relevant, dtype=bool)
    positive, negative = scores[relevant], scores[~relevant]
    if positive.size == 0 or negative.size == 0:
        return None
    difference = positive[:, None] - negative[None, :]
    return float(np.mean((difference > 0) + 0.5 * (difference == 0)))


def retrieval_queries(entries):
    """Return the cross-run queries over catalog entries (those with a relevant candidate)."""
    groups = np.array([entry.group or "" for entry in entries], dtype=object)
    repos = np.array([entry.repo for entry in entries], dtype=object)
    queries = []
    for index, entry in enumerate(entries):
        if not entry.group or entry.intermediate or not entry.usable:
            continue
        candidates = repos != entry.repo
        relevant = candidates & (groups == entry.group)
        if relevant.any():
            queries.append(RetrievalQuery(index, candidates, relevant))
    return queries


def retrieval_metrics(similarity, queries):
    """Return mAP, recall@5, triplet accuracy and the query count for a similarity matrix.

    Row ``q.index`` of ``similarity`` ranks the candidates of query ``q``.
    """
    precisions, recalls, triplets = [], [], []
    for query in queries:
        scores = similarity[query.index][query.candidates]
        relevant = query.relevant[query.candidates]
        precisions.append(average_precision(scores, relevant))
        recalls.append(recall_at_k(scores, relevant, RECALL_K))
        accuracy = triplet_accuracy(scores, relevant)
        if accuracy is not None:
            triplets.append(accuracy)
    return {
        "map": _mean(precisions),
        f"recall_at_{RECALL_K}": _mean(recalls),
        "triplet_accuracy": _mean(triplets),
        "queries": len(queries),
    }


def _mean(values):
    return round(float(np.mean(values)), 4) if values else None


def spearman_fidelity(similarity, reference):
    """Return the Spearman correlation of two similarity matrices over pairs ``i < j`` (row ``i`` is used)."""
    rows, columns = np.triu_indices(len(reference), k=1)
    if rows.size < 3:
        return None
    correlation = spearmanr(similarity[rows, columns], reference[rows, columns]).statistic
    return None if np.isnan(correlation) else round(float(correlation), 4)


def cosine_matrix(vectors):
    """Return the cosine similarity matrix of row vectors (zero rows give zeros)."""
    vectors = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    unit = np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)
    return unit @ unit.T


def heldout_folds(labels, count, seed):
    """Split item indices into ``count`` folds so that items with one label share a fold.

    Labels are shuffled with ``seed`` and dealt to the folds, the largest first,
    each to the fold with the fewest items so far.
    """
    rng = np.random.default_rng(seed)
    unique = sorted(set(labels))
    rng.shuffle(unique)
    sizes = {label: labels.count(label) for label in unique}
    unique.sort(key=lambda label: -sizes[label])
    folds = [[] for _ in range(count)]
    for label in unique:
        target = min(range(count), key=lambda fold: len(folds[fold]))
        folds[target].extend(i for i, other in enumerate(labels) if other == label)
    return [sorted(fold) for fold in folds if fold]


def _invariance_files(items, count):
    """Pick up to ``count`` files with factored updates, preferring distinct dialects."""
    chosen, formats = [], set()
    for prefer_new_format in (True, False):
        for index, item in enumerate(items):
            if len(chosen) >= count or index in chosen:
                continue
            if not any(record.factors() is not None for record in item.lora.modules.values()):
                continue
            if prefer_new_format and item.lora.format in formats:
                continue
            chosen.append(index)
            formats.add(item.lora.format)
    return chosen


def _pair_cosine(first, second):
    return float(cosine_matrix(np.stack([first, second]))[0, 1])


def measure_invariance(items, indices, embedders, seed):
    """Return ``{method: minimum cosine}`` between files and their weight-preserving copies.

    Parameters
    ----------
    items : list of CorpusLora
    indices : list of int
        The files to transform.
    embedders : dict of str to callable
        Method name to ``function(lora_file, features) -> vector``; the exact
        references are added here.
    seed : int
    """
    rng = np.random.default_rng(seed)
    minimum = {name: 1.0 for name in [*embedders, "exact-gram", "exact-delta", "random"]}
    for index in indices:
        lora = items[index].lora
        features = items[index].features
        originals = {name: embed(lora, features) for name, embed in embedders.items()}
        for transform_name, transform in augment.WEIGHT_PRESERVING.items():
            copy = transform(lora, rng)
            copy_features = extract_features(copy)
            values = {name: _pair_cosine(originals[name], embed(copy, copy_features)) for name, embed in embedders.items()}
            values["exact-gram"] = GramReference([lora, copy]).cosine(0, 1)
            values["exact-delta"] = float(delta_cosine_matrix([lora, copy])[0, 1])
            values["random"] = float(random_similarity(2, int(rng.integers(1 << 31)))[0, 1])
            for name, value in values.items():
                minimum[name] = min(minimum[name], value)
            logger.debug("invariance %s %s: %s", items[index].entry.name, transform_name, values)
    return {name: round(value, 6) for name, value in minimum.items()}


def heldout_similarity(items, gram, fold_count, options, family):
    """Return a similarity matrix whose row ``i`` comes from a model trained without ``i``'s fold.

    Returns
    -------
    (ndarray, list of dict)
        The matrix and, per fold, its held-out files and groups.
    """
    from .training import build_mixtures, prepare_views, train_model

    rng = np.random.default_rng(options.seed)
    views = prepare_views(items, rng)
    mixture_pool = build_mixtures(items, 2 * options.mixtures, rng)
    features = [item.features for item in items]
    folds = heldout_folds([item.label for item in items], fold_count, options.seed)

    similarity = np.zeros((len(items), len(items)))
    descriptions = []
    for number, fold in enumerate(folds):
        held_out = set(fold)
        training = [i for i in range(len(items)) if i not in held_out]
        position = {old: new for new, old in enumerate(training)}
        mixtures = [(mixed, position[a], position[b], target_a, target_b)
                    for mixed, a, b, target_a, target_b in mixture_pool if a in position and b in position]
        model, _ = train_model(
            [items[i] for i in training], family, options, model_id=f"heldout-fold-{number}",
            gram=gram[np.ix_(training, training)], views=[views[i] for i in training], mixtures=mixtures,
        )
        fold_similarity = cosine_matrix(model.transform_many(features))
        similarity[fold] = fold_similarity[fold]
        descriptions.append({
            "held_out_files": len(fold),
            "held_out_groups": sorted({items[i].entry.group for i in fold if items[i].entry.group}),
        })
        logger.info("fold %d of %d done: %s", number + 1, len(folds), descriptions[-1])
    return similarity, descriptions


def _load_learned(model_dir, family):
    if model_dir:
        from .model_io import load_model

        return load_model(model_dir)
    from .bundled import load_bundled_model

    return load_bundled_model(family)


def evaluate_corpus(corpus_dir, catalog_path, family="SD1.x", model_dir=None, folds=3,
                    options=None, invariance_count=3, retrieval_only=False):
    """Evaluate every method on a catalogued corpus and return all numbers as a dict.

    Parameters
    ----------
    corpus_dir, catalog_path : str
    family : str
        Only files of this family are used.
    model_dir : str, optional
        A model folder to evaluate instead of the bundled model.
    folds : int
        Folds over groups for the held-out learned model; 0 skips it.
    options : TrainingOptions, optional
        Training options of the held-out models.
    invariance_count : int
        Files transformed for the invariance measurement.
    retrieval_only : bool
        Measure only the retrieval of the exact Gram reference, the
        training-free path and the learned model (fast).
    """
    from .training import TrainingOptions, load_catalog, read_corpus

    started = time.monotonic()
    options = options or TrainingOptions()
    items = read_corpus(load_catalog(catalog_path, corpus_dir), family)
    loras = [item.lora for item in items]
    features = [item.features for item in items]
    queries = retrieval_queries([item.entry for item in items])
    gram = GramReference(loras).matrix()
    logger.info("read %d files and their exact Gram cosines in %.0f s", len(items), time.monotonic() - started)

    pooling = SketchPooling(family)
    embedders = {"training-free": lambda lora, feats: pooling.transform(feats)}
    similarities = {"exact-gram": gram, "training-free": cosine_matrix([pooling.transform(f) for f in features])}
    model = _load_learned(model_dir, family)
    if model is not None:
        embedders["learned"] = lambda lora, feats: model.transform(feats)
        similarities["learned"] = cosine_matrix(model.transform_many(features))

    report = {"family": family, "files": len(items), "queries": [items[q.index].entry.name for q in queries],
              "model_id": None if model is None else model.model_id}
    if not retrieval_only:
        similarities["exact-delta"] = delta_cosine_matrix(loras)
        raw = RawFactorPCA().fit(loras)
        similarities["raw-factors-pca"] = cosine_matrix([raw.transform(lora) for lora in loras])
        similarities["random"] = random_similarity(len(items), options.seed)
        embedders["raw-factors-pca"] = lambda lora, feats: raw.transform(lora)
        if folds:
            similarities["learned-heldout"], report["folds"] = heldout_similarity(items, gram, folds, options, family)
        invariance = measure_invariance(items, _invariance_files(items, invariance_count), embedders, options.seed)
        report["invariance_files"] = [items[i].entry.name for i in _invariance_files(items, invariance_count)]

    methods = {}
    for name, similarity in similarities.items():
        result = {"retrieval": retrieval_metrics(similarity, queries)}
        if not retrieval_only:
            result["spearman_vs_exact_gram"] = spearman_fidelity(similarity, gram)
            result["invariance_min_cosine"] = invariance.get(name)
        methods[name] = result
    report["methods"] = methods
    report["seconds"] = round(time.monotonic() - started, 1)
    return report


METHOD_NOTES = {
    "learned": "bundled model (or --model); the bundled one saw every group (in-sample)",
    "learned-heldout": "same architecture, query groups held out of training",
    "training-free": "signed random pooling of Gram-sketch tokens",
    "exact-gram": "exact output-side Gram cosine (reference)",
    "exact-delta": "exact cosine of the whole ΔW",
    "raw-factors-pca": "flattened stored factors + per-module PCA",
    "random": "random vectors",
}


def _cell(value):
    return "-" if value is None else f"{value:.3f}"


def format_report(report):
    """Return the evaluation report as a plain-text table."""
    header = ["method", "mAP", f"R@{RECALL_K}", "triplet", "Spearman", "invariance", "what it is"]
    rows = []
    for name, result in report["methods"].items():
        retrieval = result["retrieval"]
        rows.append([
            name, _cell(retrieval["map"]), _cell(retrieval[f"recall_at_{RECALL_K}"]),
            _cell(retrieval["triplet_accuracy"]), _cell(result.get("spearman_vs_exact_gram")),
            _cell(result.get("invariance_min_cosine")), METHOD_NOTES.get(name, ""),
        ])
    widths = [max(len(header[i]), *(len(row[i]) for row in rows)) for i in range(len(header))]
    lines = [
        f"{report['files']} {report['family']} files, {len(report['queries'])} cross-run queries, "
        f"model {report['model_id'] or 'none'}, {report['seconds']} s",
        "  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip(),
    ]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)
