"""Evaluate: cluster a labelled folder (sub-folders are the true groups) and score it.

The same stages as a run (scan → embed/store → features → cluster), without the report:
the clusters are compared with the folders by NMI, ARI (scikit-learn) and purity. Noise
(label ``-1``, from HDBSCAN) counts as one more predicted group.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .cluster import create_clusterer, make_features
from .config import DEFAULT_K, ClusterConfig, EmbedConfig, default_k, parse_k
from .embed import check_device
from .exceptions import InputError
from .scan import scan
from .steps import embed_missing, embedder_for
from .store import FeatureStore


@dataclass(frozen=True)
class Scores:
    """Agreement of predicted clusters with the true groups (1.0 = identical)."""

    nmi: float
    ari: float
    purity: float


@dataclass(frozen=True)
class StoredFeatures:
    """The stored model outputs of a labelled folder, with the truth per image."""

    paths: list[str]
    truth: list[str]
    logits: np.ndarray
    embedding: np.ndarray
    model: str
    embed_seconds: float
    n_embedded: int
    n_outside: int = 0  # images directly in the folder, in no sub-folder: in no group
    n_rejected: int = 0  # files that could not be read or decoded


@dataclass(frozen=True)
class Evaluation:
    """What ``imgclust evaluate`` prints."""

    scores: Scores
    n_images: int
    n_groups: int
    k: int
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    n_outside: int = 0  # left out: images in no sub-folder
    n_rejected: int = 0  # left out: files that could not be read or decoded
    n_noise: int = 0  # in no cluster (HDBSCAN's noise): scored as one more group


def purity(truth: np.ndarray, labels: np.ndarray) -> float:
    """Share of images in their cluster's majority group (contingency matrix maxima)."""
    from sklearn.metrics.cluster import contingency_matrix

    table = contingency_matrix(truth, labels)
    return float(table.max(axis=0).sum() / table.sum())


def score(truth: np.ndarray | list[str], labels: np.ndarray) -> Scores:
    """NMI, ARI and purity of ``labels`` against ``truth``."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    t = np.asarray(truth)
    return Scores(
        nmi=float(normalized_mutual_info_score(t, labels)),
        ari=float(adjusted_rand_score(t, labels)),
        purity=purity(t, labels),
    )


def group_of(path: str, root: Path) -> str:
    """The true group of ``path``: its first folder below ``root``."""
    rel = Path(os.path.relpath(path, root))
    return rel.parts[0] if len(rel.parts) > 1 else ""


def load_labelled(
    root: Path, embed: EmbedConfig, cache_dir: Path, *, shard_size: int = 1024
) -> StoredFeatures:
    """Scan ``root``, embed what the store lacks, and load logits and embeddings.

    Raises:
        InputError: ``root`` has no sub-folder with a decodable image.
    """
    check_device(embed.device)
    root = root.resolve()
    found = scan([root])
    records = [r for r in found.records if group_of(r.path, root)]
    n_outside = len(found.records) - len(records)
    if not records:
        raise InputError(f"{root} has no images in sub-folders; each sub-folder is a true group")
    embedder = embedder_for(embed)
    spec = embedder.spec
    start = time.perf_counter()
    with FeatureStore(cache_dir.resolve(), spec.name) as store:
        embedded = embed_missing(records, embedder, store, shard_size=shard_size)
        paths = sorted(embedded.found)
        if not paths:
            raise InputError(f"no image under {root} could be decoded")
        stored = store.load(paths, embedded.found, arrays=("logits", "embedding"))
    return StoredFeatures(
        paths=paths,
        truth=[group_of(p, root) for p in paths],
        logits=stored["logits"],
        embedding=stored["embedding"],
        model=spec.name,
        embed_seconds=time.perf_counter() - start,
        n_embedded=embedded.n_embedded,
        n_outside=n_outside,
        n_rejected=len(embedded.rejected)
        + sum(1 for r in found.rejected if group_of(r.path, root)),
    )


def cluster_stored(stored: StoredFeatures, cluster: ClusterConfig, k: int | None) -> np.ndarray:
    """Labels of ``stored`` clustered as ``cluster`` says, with ``k`` clusters (None: auto)."""
    feats = make_features(cluster.features, logits=stored.logits, embedding=stored.embedding)
    model = create_clusterer(cluster.algorithm, k, random_state=cluster.seed).fit(feats)
    return np.asarray(model.labels_)


def evaluate(
    root: Path,
    *,
    k: int | str | None = None,
    embed: EmbedConfig | None = None,
    cluster: ClusterConfig | None = None,
    cache_dir: Path,
) -> Evaluation:
    """Cluster the labelled folder ``root`` and score the clusters against its sub-folders.

    Args:
        k: clusters; ``None`` takes the number of sub-folders, ``"auto"`` lets the
            algorithm choose (``--k auto``).
        cache_dir: the feature store; reuse it and only the clustering is timed again.

    Raises:
        InputError: ``root`` holds no labelled images.
        ModelUnavailableError: the model cannot be loaded.
    """
    embed = embed or EmbedConfig()
    cluster = cluster or ClusterConfig()
    timings: dict[str, float] = {}
    stored = load_labelled(root, embed, cache_dir)
    timings["embed+load"] = round(stored.embed_seconds, 3)
    n_groups = len(set(stored.truth))
    start = time.perf_counter()
    chosen = n_groups if k is None else parse_k(k)
    if chosen == DEFAULT_K:
        chosen = default_k(len(stored.paths))
    labels = cluster_stored(stored, cluster, chosen if not isinstance(chosen, str) else None)
    timings["cluster"] = round(time.perf_counter() - start, 3)
    return Evaluation(
        scores=score(stored.truth, labels),
        n_images=len(stored.paths),
        n_groups=n_groups,
        k=len(np.unique(labels[labels >= 0])),  # (as a run counts them: noise is none)
        seconds=round(sum(timings.values()), 3),
        timings=timings,
        n_outside=stored.n_outside,
        n_rejected=stored.n_rejected,
        n_noise=int((labels < 0).sum()),
    )
