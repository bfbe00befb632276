"""Group a library's LoRAs by style and place them on a 2-D map.

Up to ``AGGLOMERATIVE_MAX_ITEMS`` LoRAs are clustered with average-linkage
agglomerative clustering on cosine distance. Larger libraries use mini-batch
k-means on the unit vectors, where squared Euclidean distance is
``2 - 2·cosine``. When the number of clusters is not given, it is the one
with the best silhouette score over ``2 .. max_clusters(n)``. Agglomerative
clustering tries every count in that range, and k-means tries 12 counts
spread geometrically over it. Every step uses a fixed random state, so the
same library gives the same clusters.
"""

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from .cluster_names import name_clusters

logger = logging.getLogger(__name__)

__all__ = ["Cluster", "ClusterResult", "cluster_library", "max_clusters"]

RANDOM_STATE = 0

AGGLOMERATIVE_MAX_ITEMS = 3000
"""Above this many LoRAs the O(n²) distance matrix is too large; k-means is used instead."""

SILHOUETTE_SAMPLE = 2000
"""Silhouette scores of larger libraries are estimated on a random sample of this size."""

TSNE_MIN_ITEMS = 30
TSNE_MAX_ITEMS = 5000
"""The ``auto`` layout uses t-SNE between these sizes and PCA outside them."""


def max_clusters(n_items):
    """Return the largest number of clusters tried for ``n_items`` LoRAs: about √(2n), at most 60."""
    return int(max(2, min(n_items - 1, round(math.sqrt(2 * n_items)), 60)))


@dataclass
class Cluster:
    """One group of similar LoRAs.

    Attributes
    ----------
    id : int
        Cluster number, from 1; clusters are numbered largest first.
    name : str
        Readable, folder-safe name, unique within the result.
    members : list of LibraryEntry
        Sorted by name.
    """

    id: int
    name: str
    members: list

    @property
    def size(self):
        """Number of members."""
        return len(self.members)

    def to_json(self):
        """Return ``id``, ``name``, ``size`` and member names."""
        return {"id": self.id, "name": self.name, "size": self.size, "members": [m.name for m in self.members]}


@dataclass
class ClusterResult:
    """The clusters of one family of a library and a 2-D position for every LoRA.

    Attributes
    ----------
    clusters : list of Cluster
        Largest first.
    assignments : dict
        ``{path: cluster id}`` for every entry.
    family : str or None
        The base-model family of the clustered entries.
    layout : str
        ``pca``, ``tsne`` or ``auto``: how :attr:`coordinates` are computed.
    """

    clusters: list
    assignments: dict
    matrix: np.ndarray = field(repr=False, default=None)
    entries: list = field(repr=False, default_factory=list)
    family: str = None
    layout: str = "pca"
    _coordinates: dict = field(repr=False, default=None)

    @property
    def coordinates(self):
        """``{path: (x, y)}``: the 2-D position of every entry, computed on first use."""
        if self._coordinates is None:
            points = project_2d(self.matrix, self.layout)
            self._coordinates = {
                entry.path: (float(x), float(y)) for entry, (x, y) in zip(self.entries, points)
            }
        return self._coordinates

    def names(self):
        """Return ``{cluster id: name}``."""
        return {cluster.id: cluster.name for cluster in self.clusters}

    def to_json(self, coordinates=True):
        """Return the family, the clusters and, unless disabled, each member's ``[x, y]``."""
        data = {"family": self.family, "clusters": [cluster.to_json() for cluster in self.clusters]}
        if coordinates:
            by_path = self.coordinates
            data["coordinates"] = {e.name: [round(v, 6) for v in by_path[e.path]] for e in self.entries}
        return data


def _agglomerative_labels(matrix, n_clusters):
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import pdist, squareform
    from sklearn.metrics import silhouette_score

    distances = np.clip(pdist(matrix.astype(np.float64), metric="cosine"), 0.0, 2.0)
    tree = linkage(distances, method="average")
    if n_clusters is not None:
        return fcluster(tree, n_clusters, criterion="maxclust")

    square = squareform(distances)
    best_labels, best_score = None, -2.0
    for k in range(2, max_clusters(len(matrix)) + 1):
        labels = fcluster(tree, k, criterion="maxclust")
        if len(set(labels)) < 2:
            continue
        score = silhouette_score(square, labels, metric="precomputed")
        logger.debug("agglomerative k=%d silhouette=%.4f", k, score)
        if score > best_score + 1e-9:
            best_labels, best_score = labels, score
    return best_labels if best_labels is not None else np.ones(len(matrix), dtype=int)


def _kmeans_labels(matrix, n_clusters):
    from sklearn.cluster import MiniBatchKMeans
    from sklearn.metrics import silhouette_score

    # float64 rows take scikit-learn's direct distance path. float32 rows are
    # upcast block by block, which makes k-means++ initialisation slower.
    matrix = np.asarray(matrix, dtype=np.float64)

    def fit(k):
        model = MiniBatchKMeans(n_clusters=k, n_init=3, batch_size=2048, random_state=RANDOM_STATE)
        return model.fit_predict(matrix)

    if n_clusters is not None:
        return fit(n_clusters)

    top = max_clusters(len(matrix))
    candidates = sorted({int(round(k)) for k in np.geomspace(2, top, num=min(12, top - 1))})
    best_labels, best_score = None, -2.0
    for k in candidates:
        labels = fit(k)
        if len(set(labels)) < 2:
            continue
        score = silhouette_score(matrix, labels, metric="cosine",
                                 sample_size=min(SILHOUETTE_SAMPLE, len(matrix)), random_state=RANDOM_STATE)
        logger.debug("k-means k=%d silhouette=%.4f", k, score)
        if score > best_score + 1e-9:
            best_labels, best_score = labels, score
    return best_labels if best_labels is not None else np.zeros(len(matrix), dtype=int)


def _cluster_labels(matrix, n_clusters):
    n_items = len(matrix)
    if n_clusters is not None:
        n_clusters = int(max(1, min(n_clusters, n_items)))
        if n_clusters == 1:
            return np.zeros(n_items, dtype=int)
    elif n_items < 4:
        return np.zeros(n_items, dtype=int)

    if n_items <= AGGLOMERATIVE_MAX_ITEMS:
        return _agglomerative_labels(matrix, n_clusters)
    return _kmeans_labels(matrix, n_clusters)


def project_2d(matrix, layout="pca"):
    """Project unit vectors to 2-D points.

    Parameters
    ----------
    matrix : ndarray of shape (n, dim)
    layout : {"pca", "tsne", "auto"}
        ``auto`` uses t-SNE (fixed seed) for ``TSNE_MIN_ITEMS`` to
        ``TSNE_MAX_ITEMS`` rows and PCA otherwise. ``tsne`` falls back to PCA
        below ``TSNE_MIN_ITEMS`` rows, where t-SNE is not meaningful.

    Returns
    -------
    ndarray of shape (n, 2)
    """
    if layout not in ("pca", "tsne", "auto"):
        raise ValueError(f"layout={layout!r} is invalid; use 'pca', 'tsne' or 'auto'")
    matrix = np.asarray(matrix, dtype=np.float64)
    n_items = len(matrix)
    if n_items == 0:
        return np.zeros((0, 2))
    if n_items == 1:
        return np.zeros((1, 2))

    use_tsne = n_items >= TSNE_MIN_ITEMS and (layout == "tsne" or (layout == "auto" and n_items <= TSNE_MAX_ITEMS))
    if use_tsne:
        from sklearn.manifold import TSNE

        perplexity = min(30.0, (n_items - 1) / 3.0)
        return TSNE(n_components=2, perplexity=perplexity, init="pca", metric="cosine",
                    random_state=RANDOM_STATE).fit_transform(matrix)

    from sklearn.decomposition import PCA

    components = min(2, n_items, matrix.shape[1])
    points = PCA(n_components=components, random_state=RANDOM_STATE).fit_transform(matrix)
    if components < 2:
        points = np.hstack([points, np.zeros((n_items, 2 - components))])
    return points


def cluster_library(entries, matrix, n_clusters=None, layout="pca"):
    """Cluster LoRAs by their embeddings and name each cluster.

    Parameters
    ----------
    entries : list of LibraryEntry
        One family's LoRAs, in the row order of ``matrix``.
    matrix : ndarray of shape (n, dim)
        Unit-length embeddings.
    n_clusters : int, optional
        Number of clusters; chosen by silhouette score when None. Fewer
        than 4 LoRAs form one cluster unless a number is given.
    layout : {"pca", "tsne", "auto"}, default="pca"
        How :attr:`ClusterResult.coordinates` places the LoRAs.

    Returns
    -------
    ClusterResult
    """
    matrix = np.asarray(matrix, dtype=np.float32)
    if len(entries) != len(matrix):
        raise ValueError(f"{len(entries)} entries but {len(matrix)} embedding rows; both must list the same LoRAs")
    if n_clusters is not None and n_clusters < 1:
        raise ValueError(f"n_clusters={n_clusters} is invalid; give at least 1 or None for automatic")

    family = entries[0].family if entries else None
    if not entries:
        return ClusterResult([], {}, matrix, [], family, layout)

    labels = _cluster_labels(matrix, n_clusters)
    groups = {}
    for entry, label in zip(entries, labels):
        groups.setdefault(int(label), []).append(entry)

    ordered = sorted(groups.values(), key=lambda members: (-len(members), min(m.name for m in members)))
    numbered = [(number, sorted(members, key=lambda m: m.name)) for number, members in enumerate(ordered, start=1)]
    names = name_clusters(numbered)

    clusters = [Cluster(number, names[number], members) for number, members in numbered]
    assignments = {member.path: cluster.id for cluster in clusters for member in cluster.members}
    logger.info("clustered %d LoRAs of %s into %d clusters", len(entries), family, len(clusters))
    return ClusterResult(clusters, assignments, matrix, list(entries), family, layout)
