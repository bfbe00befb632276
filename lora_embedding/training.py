"""Train the learned embedding on a catalogued corpus of real LoRAs.

Training signals:

- **positives** that share a label: the same LoRA after weight-preserving
  augmentation and module dropout, other checkpoints of its training run
  (catalog ``run_id``), the same weights saved as another file
  (``same_weights_different_file_as``), and LoRAs trained on the same data in
  other repositories (catalog ``group``);
- **negatives** mined semi-hard in each batch: the most similar negative that
  is still less similar than the positive, else the most similar one;
- **cosine triplet loss** ``max(0, cos(a, n) − cos(a, p) + margin)``;
- **exact-teacher distillation**: for mixtures ``λ·ΔW_a + (1−λ)·ΔW_b`` of two
  real LoRAs, and for pairs of real LoRAs, the embedding cosine is pulled
  towards the exact output-side Gram cosine (mean over shared modules).

Everything runs on the CPU with fixed seeds (``torch.manual_seed`` and a
NumPy ``default_rng``), so a run on one machine is reproducible.
"""

import json
import logging
import os
from dataclasses import asdict, dataclass, field

import numpy as np

from .augment import cast_precision, pad_rank, refactorize
from .baselines import GramReference
from .canonical import FullDelta, LoraFile, LowRankDelta, ModuleRecord
from .errors import LoraEmbeddingError, LoraReadError
from .features import extract_features

logger = logging.getLogger(__name__)

__all__ = [
    "CorpusEntry",
    "CorpusLora",
    "TrainingOptions",
    "load_catalog",
    "mix_loras",
    "positive_labels",
    "build_mixtures",
    "gram_matrix",
    "prepare_views",
    "read_corpus",
    "train_model",
]


@dataclass
class CorpusEntry:
    """One catalogued LoRA file.

    Attributes
    ----------
    name : str
        The catalog's ``saved_as`` path, relative to the corpus folder.
    path : str
        The absolute file path.
    repo, run_id : str
        Source repository and training run.
    group : str or None
        The training data, where known.
    usable : bool
    intermediate : bool
        True for an intermediate checkpoint of a run.
    duplicates : list of str
        ``saved_as`` names of the same weights in other files.
    """

    name: str
    path: str
    repo: str
    run_id: str
    group: str = None
    usable: bool = True
    intermediate: bool = False
    duplicates: list = field(default_factory=list)


@dataclass
class CorpusLora:
    """A catalogued LoRA read into memory, with its features and positive label."""

    entry: CorpusEntry
    lora: LoraFile
    features: object
    label: str


def load_catalog(catalog_path, corpus_dir):
    """Read a corpus catalog (a JSON list with ``saved_as``, ``repo``, ``run_id``, ``group``, ...).

    Raises
    ------
    LoraEmbeddingError
        When the catalog is missing, not JSON, or an entry lacks ``saved_as``.
    """
    try:
        with open(catalog_path, encoding="utf-8") as handle:
            records = json.load(handle)
    except (OSError, json.JSONDecodeError) as exc:
        raise LoraEmbeddingError(f"{catalog_path}: cannot read the corpus catalog ({exc})") from exc
    if not isinstance(records, list):
        raise LoraEmbeddingError(f"{catalog_path}: the catalog must be a JSON list of file entries")

    entries = []
    for position, record in enumerate(records):
        if "saved_as" not in record:
            raise LoraEmbeddingError(f"{catalog_path}: entry {position} has no 'saved_as' field")
        name = record["saved_as"]
        entries.append(CorpusEntry(
            name=name,
            path=os.path.join(os.fspath(corpus_dir), name),
            repo=record.get("repo") or name.split("/", 1)[0],
            run_id=record.get("run_id") or name,
            group=record.get("group"),
            usable=bool(record.get("usable", True)),
            intermediate=bool(record.get("is_intermediate_checkpoint", False)),
            duplicates=list(record.get("same_weights_different_file_as") or []),
        ))
    return entries


def positive_labels(entries):
    """Return one label per entry: entries joined by run, group or duplicate share a label."""
    parent = list(range(len(entries)))

    def find(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def union(i, j):
        parent[find(i)] = find(j)

    first_with_key = {}
    for i, entry in enumerate(entries):
        keys = [("run", entry.run_id), ("file", entry.name)]
        keys += [("group", entry.group)] if entry.group else []
        keys += [("file", name) for name in entry.duplicates]
        for key in keys:
            if key in first_with_key:
                union(i, first_with_key[key])
            else:
                first_with_key[key] = i
    return [entries[find(i)].name for i in range(len(entries))]


def read_corpus(entries, family=None):
    """Read the usable catalogued files, optionally of one family only.

    Files that fail to read are logged and skipped.

    Returns
    -------
    list of CorpusLora
    """
    from .reader import read_lora

    labels = positive_labels(entries)
    items = []
    for entry, label in zip(entries, labels):
        if not entry.usable:
            continue
        try:
            lora = read_lora(entry.path)
        except LoraReadError as exc:
            logger.warning("skipping %s: %s", entry.name, exc.reason)
            continue
        if family is not None and lora.family != family:
            continue
        items.append(CorpusLora(entry, lora, extract_features(lora), label))
    logger.info("read %d corpus files%s", len(items), f" of family {family}" if family else "")
    return items


def _mixed_record(record_a, record_b, weight):
    factors_a, factors_b = record_a.factors(), record_b.factors()
    if factors_a is not None and factors_b is not None:
        up = np.hstack([weight * factors_a[0], (1 - weight) * factors_b[0]])
        down = np.vstack([factors_a[1], factors_b[1]])
        return ModuleRecord(record_a.module_id, "lora", LowRankDelta(up, down, record_a.shape), scale=1.0)
    dense = weight * record_a.dense() + (1 - weight) * record_b.dense()
    return ModuleRecord(record_a.module_id, "full", FullDelta(dense.reshape(record_a.shape), record_a.shape))


def _scaled_record(record, weight):
    return ModuleRecord(record.module_id, record.algorithm, record.delta, alpha=record.alpha,
                        rank=record.rank, scale=record.scale * weight)


def mix_loras(lora_a, lora_b, weight):
    """Return the LoRA whose updates are ``weight·ΔW_a + (1 − weight)·ΔW_b``, module by module.

    A module only one of them adapts (or of another shape) keeps its own update, scaled.
    """
    modules = {}
    for module_id, record in lora_a.modules.items():
        if record.delta is None:
            continue
        other = lora_b.modules.get(module_id)
        if other is not None and other.delta is not None and other.shape == record.shape:
            modules[module_id] = _mixed_record(record, other, weight)
        else:
            modules[module_id] = _scaled_record(record, weight)
    for module_id, record in lora_b.modules.items():
        if module_id not in modules and record.delta is not None:
            modules[module_id] = _scaled_record(record, 1 - weight)
    return LoraFile(path=f"mix({lora_a.path},{lora_b.path},{weight:.2f})", container="memory",
                    format="mixture", family=lora_a.family, modules=modules, stored_modules=len(modules))


@dataclass
class TrainingOptions:
    """Training hyperparameters; the defaults are the ones the bundled model used.

    Attributes
    ----------
    epochs : int
        Passes over the training LoRAs as anchors.
    seed : int
    batch_size : int
        Anchors per step.
    learning_rate, weight_decay : float
        AdamW settings.
    margin : float
        Cosine triplet margin.
    mixtures : int
        Mixtures of real LoRAs built for distillation.
    mixtures_per_step : int
    distill_weight : float
        Weight of the distillation losses against the triplet loss.
    self_positive_rate : float
        Probability that a positive is an augmented view of the anchor itself
        when the anchor has other positives; anchors without any always use it.
    module_dropout : float
        Maximum fraction of modules dropped from a view.
    max_modules : int
        Modules kept at most in a training view (a random subset), which
        bounds the cost of attention; embedding uses every module.
    train_share : bool
        Train the weight of the learned part of the output; when False it
        stays at ``learned_share``.
    encoder : dict
        Overrides of :class:`~lora_embedding.encoder.EncoderConfig` fields.
    """

    epochs: int = 30
    seed: int = 0
    batch_size: int = 16
    learning_rate: float = 3e-4
    weight_decay: float = 0.01
    margin: float = 0.3
    mixtures: int = 32
    mixtures_per_step: int = 8
    distill_weight: float = 1.0
    self_positive_rate: float = 0.5
    module_dropout: float = 0.3
    max_modules: int = 64
    train_share: bool = False
    encoder: dict = field(default_factory=dict)

    def to_dict(self):
        """Return the options as a JSON-ready dict."""
        return asdict(self)


def _augmented_views(lora, rng):
    """Return features of weight-preserving copies: refactorized + rank-padded, fp16, bf16."""
    reshaped = pad_rank(refactorize(lora, rng), rng)
    return [
        extract_features(reshaped),
        extract_features(cast_precision(lora, "fp16")),
        extract_features(cast_precision(lora, "bf16")),
    ]


def _overlap(lora_a, lora_b):
    shared = len(set(lora_a.modules) & set(lora_b.modules))
    return shared / max(1, min(len(lora_a.modules), len(lora_b.modules)))


def build_mixtures(items, count, rng):
    """Return ``count`` mixtures ``(features, index_a, index_b, target_a, target_b)`` of item pairs.

    Only pairs that share at least half of their modules are mixed, so the
    targets compare updates rather than module sets, and only LoRAs stored as
    thin factors, so the mixtures stay thin and cheap to factor.
    """
    factored = [all(record.factors() is not None for record in item.lora.modules.values()) for item in items]
    pairs = [(i, j) for i in range(len(items)) for j in range(i + 1, len(items))
             if factored[i] and factored[j] and _overlap(items[i].lora, items[j].lora) >= 0.5]
    if not pairs:
        return []
    mixtures = []
    for choice in rng.choice(len(pairs), size=min(count, len(pairs)), replace=False):
        i, j = pairs[choice]
        weight = float(rng.uniform(0.2, 0.8))
        mixed = mix_loras(items[i].lora, items[j].lora, weight)
        reference = GramReference([mixed, items[i].lora, items[j].lora])
        mixtures.append((extract_features(mixed), i, j, reference.cosine(0, 1), reference.cosine(0, 2)))
    return mixtures


def gram_matrix(loras):
    """Return the symmetric matrix of exact output-side Gram cosines between LoRAs."""
    return GramReference(loras).matrix()


def prepare_views(items, rng):
    """Return, per item, its features followed by those of its weight-preserving copies."""
    return [[item.features] + _augmented_views(item.lora, rng) for item in items]


def train_model(items, family, options=None, model_id=None, gram=None, views=None, mixtures=None):
    """Train a learned model on corpus items of one family.

    Parameters
    ----------
    items : list of CorpusLora
        The training LoRAs (read with :func:`read_corpus`).
    family : str
    options : TrainingOptions, optional
    model_id : str, optional
        Defaults to ``<family>-encoder-custom``.
    gram : ndarray, optional
        Precomputed exact Gram cosines between the items.
    views : list of list of LoraFeatures, optional
        Precomputed :func:`prepare_views` output for the items.
    mixtures : list of tuple, optional
        Precomputed :func:`build_mixtures` output, indexed into ``items``.

    Returns
    -------
    (LearnedModel, list of dict)
        The model and the mean losses of each epoch.

    Raises
    ------
    LoraEmbeddingError
        When fewer than two LoRAs are given.
    """
    options = options or TrainingOptions()
    if len(items) < 2:
        raise LoraEmbeddingError(f"training needs at least 2 {family} LoRAs, got {len(items)}")
    model_id = model_id or f"{family.lower().replace('.', '')}-encoder-custom"
    rng = np.random.default_rng(options.seed)

    if views is None:
        views = prepare_views(items, rng)
    if mixtures is None:
        mixtures = build_mixtures(items, options.mixtures, rng)
    if gram is None:
        gram = gram_matrix([item.lora for item in items])
    logger.info("training on %d LoRAs with %d mixtures", len(items), len(mixtures))
    return _run_training(items, views, mixtures, gram, family, options, model_id, rng)


def _module_vocabulary(family, items):
    from .module_names import module_vocabulary

    try:
        vocabulary = module_vocabulary(family)
    except KeyError:
        vocabulary = []
    known = set(vocabulary)
    seen = sorted({m for item in items for m in item.features.module_ids} - known)
    return vocabulary + seen


def _fit_pca(views, size, seed):
    from sklearn.decomposition import PCA

    from .features import TOKEN_SIZE

    rows = np.concatenate([view.tokens[np.isfinite(view.log_norms)] for item_views in views for view in item_views])
    count = int(min(size, rows.shape[0] - 1, TOKEN_SIZE))
    components = np.zeros((size, TOKEN_SIZE), dtype=np.float32)
    if count < 1:
        return rows.mean(axis=0) if len(rows) else np.zeros(TOKEN_SIZE), components
    pca = PCA(n_components=count, random_state=seed).fit(rows)
    components[:count] = pca.components_
    return pca.mean_, components


def _dropped_view(features, rng, max_fraction, max_modules):
    fraction = rng.uniform(0.0, max_fraction)
    keep = [m for m in features.module_ids if rng.random() >= fraction] or features.module_ids[:1]
    if len(keep) > max_modules:
        keep = [keep[i] for i in sorted(rng.choice(len(keep), size=max_modules, replace=False))]
    return features.subset(keep)


class _BatchSampler:
    """Draw anchors, positives and mixtures for one training step."""

    def __init__(self, items, views, mixtures, options, rng):
        self.views = views
        self.mixtures = mixtures
        self.options = options
        self.rng = rng
        self.labels = [item.label for item in items]
        self.partners = [[j for j, other in enumerate(self.labels) if other == label and j != i]
                         for i, label in enumerate(self.labels)]

    def view(self, index):
        choice = self.views[index][self.rng.integers(len(self.views[index]))]
        return _dropped_view(choice, self.rng, self.options.module_dropout, self.options.max_modules)

    def positive(self, index):
        partners = self.partners[index]
        if partners and self.rng.random() >= self.options.self_positive_rate:
            return self.view(int(self.rng.choice(partners)))
        return self.view(index)

    def mixture_batch(self):
        if not self.mixtures:
            return []
        size = min(self.options.mixtures_per_step, len(self.mixtures))
        return [self.mixtures[i] for i in self.rng.choice(len(self.mixtures), size=size, replace=False)]

    def mixture_views(self, mixture):
        """Return the mixture and its two parents restricted to one random module subset."""
        mixed, first, second = mixture[0], self.views[mixture[1]][0], self.views[mixture[2]][0]
        module_ids = mixed.module_ids
        if len(module_ids) > self.options.max_modules:
            chosen = sorted(self.rng.choice(len(module_ids), size=self.options.max_modules, replace=False))
            module_ids = [module_ids[i] for i in chosen]
        return [mixed.subset(module_ids), first.subset(module_ids), second.subset(module_ids)]


def _semi_hard_negatives(similarity, positive_similarity, negative_mask, margin):
    """Pick one negative per anchor: the hardest semi-hard one, else the hardest one."""
    import torch

    semi_hard = negative_mask & (similarity < positive_similarity.unsqueeze(1)) \
        & (similarity > positive_similarity.unsqueeze(1) - margin)
    hardest_semi = similarity.masked_fill(~semi_hard, -2.0).max(dim=1)
    hardest_any = similarity.masked_fill(~negative_mask, -2.0).max(dim=1)
    chosen = torch.where(semi_hard.any(dim=1), hardest_semi.indices, hardest_any.indices)
    has_negative = negative_mask.any(dim=1)
    return chosen, has_negative


def _step_losses(encoder, sampler, anchors, gram, options, vocabulary_index):
    import torch

    from .encoder import make_batch

    mixtures = sampler.mixture_batch()
    features = [sampler.view(i) for i in anchors] + [sampler.positive(i) for i in anchors]
    for mixture in mixtures:
        features += sampler.mixture_views(mixture)
    embeddings = encoder(make_batch(features, vocabulary_index, pooled_size=encoder.config.pooled_size))

    count = len(anchors)
    anchor_embeddings, positive_embeddings = embeddings[:count], embeddings[count:2 * count]
    positive_similarity = (anchor_embeddings * positive_embeddings).sum(dim=1)
    similarity = anchor_embeddings @ anchor_embeddings.T
    labels = np.array([sampler.labels[i] for i in anchors])
    negative_mask = torch.from_numpy(labels[:, None] != labels[None, :])
    chosen, has_negative = _semi_hard_negatives(similarity.detach(), positive_similarity.detach(), negative_mask, options.margin)
    negative_similarity = similarity[torch.arange(count), chosen]
    triplet = torch.relu(negative_similarity - positive_similarity + options.margin)
    triplet = triplet[has_negative].mean() if has_negative.any() else similarity.sum() * 0.0

    target = torch.as_tensor(gram[np.ix_(anchors, anchors)], dtype=torch.float32)
    off_diagonal = ~torch.eye(count, dtype=torch.bool)
    distill = ((similarity - target)[off_diagonal] ** 2).mean()

    if mixtures:
        triples = embeddings[2 * count:].reshape(len(mixtures), 3, -1)
        cosines = torch.stack([(triples[:, 0] * triples[:, 1]).sum(-1), (triples[:, 0] * triples[:, 2]).sum(-1)], dim=1)
        targets = torch.tensor([[m[3], m[4]] for m in mixtures], dtype=torch.float32)
        distill = distill + ((cosines - targets) ** 2).mean()
    return triplet, distill


def _run_training(items, views, mixtures, gram, family, options, model_id, rng):
    import torch

    from .encoder import EncoderConfig, LearnedModel, LoraEncoder

    torch.manual_seed(options.seed)
    config = EncoderConfig(family=family, module_vocabulary=_module_vocabulary(family, items), **options.encoder)
    encoder = LoraEncoder(config)
    encoder.set_pca(*_fit_pca(views, config.pca_size, options.seed))
    encoder.share_logit.requires_grad_(options.train_share)
    parameters = [p for p in encoder.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(parameters, lr=options.learning_rate, weight_decay=options.weight_decay)
    vocabulary_index = {m: i + 1 for i, m in enumerate(config.module_vocabulary)}
    sampler = _BatchSampler(items, views, mixtures, options, rng)

    history = []
    encoder.train()
    for epoch in range(options.epochs):
        order = rng.permutation(len(items))
        totals = np.zeros(3)
        steps = 0
        for start in range(0, len(order), options.batch_size):
            anchors = order[start:start + options.batch_size].tolist()
            if len(anchors) < 2:
                continue
            triplet, distill = _step_losses(encoder, sampler, anchors, gram, options, vocabulary_index)
            loss = triplet + options.distill_weight * distill
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            optimizer.step()
            totals += [loss.item(), triplet.item(), distill.item()]
            steps += 1
        record = dict(zip(("loss", "triplet", "distill"), (totals / max(steps, 1)).round(5).tolist()))
        record.update(epoch=epoch + 1, learned_share=round(float(encoder.learned_share().detach()), 4))
        history.append(record)
        logger.info("epoch %d: %s", epoch + 1, record)

    return LearnedModel(encoder, model_id, {"training": {"options": options.to_dict()}}), history
