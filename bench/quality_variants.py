"""What else was tried for intel-scenes-dev NMI >= 0.80: graph and feature variants of the
default spectral clustering, on the stored embeddings, k = number of classes.

Run by hand (about a minute once the feature stores exist; embedding fills them first)::

    PYTHONPATH=src python bench/quality_variants.py [--datasets ../shared/datasets]
        [--cache-root /tmp] [--model efficientnet_lite0] [--precision auto]
        [--resolutions]   # also re-embed with torch at 224/256/288 px, crop 0.875 and 1.0

Writes ``bench/results/quality-variants.md`` (NMI per variant and set). The default row is
what ``imgclust evaluate DIR`` gives; every other row changes one thing.
"""

from __future__ import annotations

import argparse
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from scipy.sparse import csr_matrix

from imgclust.cluster.features import centre_and_normalize, l2_normalize, softmax
from imgclust.cluster.spectral import (
    cluster_qr,
    knn_affinity,
    nearest_neighbours,
    spectral_embedding,
    spectral_labels,
)
from imgclust.config import EmbedConfig
from imgclust.embed import model_for
from imgclust.evaluate import load_labelled, score

DATASETS = ("intel-scenes-dev", "coil100-dev")
Variant = Callable[[np.ndarray, np.ndarray, int], np.ndarray]  # (logits, embedding, k) -> labels


def centred(embedding: np.ndarray) -> np.ndarray:
    return centre_and_normalize(l2_normalize(embedding))


def spectral(x: np.ndarray, k: int, affinity: object | None = None) -> np.ndarray:
    """The default's labels; with ``affinity``, that graph instead of the 10-NN one."""
    if affinity is None:
        return spectral_labels(x, k)
    return cluster_qr(spectral_embedding(affinity, k, 0))


def snn_affinity(x: np.ndarray, n_neighbors: int) -> object:
    """Shared-nearest-neighbour weights (share of common neighbours) on the kNN edges."""
    n = len(x)
    idx = nearest_neighbours(x, n_neighbors)
    c = csr_matrix(
        (np.ones(n * n_neighbors), idx.ravel(), np.arange(0, n * n_neighbors + 1, n_neighbors)),
        shape=(n, n),
    )
    s = csr_matrix((c @ c.T).multiply((c + c.T) > 0), dtype=np.float64)
    s.data /= n_neighbors
    return 0.5 * (s + s.T)


def knn_vote(x: np.ndarray, labels: np.ndarray, n_neighbors: int, rounds: int = 3) -> np.ndarray:
    """Each image takes its neighbours' majority label, ``rounds`` times."""
    idx = nearest_neighbours(x, n_neighbors)
    rows = np.repeat(np.arange(len(x)), n_neighbors)
    for _ in range(rounds):
        votes = np.zeros((len(x), labels.max() + 1))
        np.add.at(votes, (rows, labels[idx].ravel()), 1)
        labels = votes.argmax(axis=1)
    return labels


def pca(
    embedding: np.ndarray, *, power: float = 0.0, dims: int | None = None, drop: int = 0
) -> np.ndarray:
    """Centred PCA projection: ``power`` 0 keeps the variances, 1 whitens; ``drop`` leading
    components taken out ("all-but-the-top", Mu & Viswanath 2018)."""
    x = l2_normalize(embedding)
    u, s, _ = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
    end = dims or len(s)
    return l2_normalize(u[:, drop:end] * s[drop:end] ** (1.0 - power))


def kmeans(x: np.ndarray, k: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    return np.asarray(KMeans(k, n_init=10, random_state=0).fit_predict(x))


VARIANTS: dict[str, Variant] = {
    "default: spectral, 10-NN graph on centred cosine, QR labels": lambda lg, em, k: spectral(
        centred(em), k
    ),
    "k-means on the spectral vectors instead of QR": lambda lg, em, k: kmeans(
        spectral_embedding(knn_affinity(centred(em), 10), k, 0), k
    ),
    "k-means on 2k spectral vectors": lambda lg, em, k: kmeans(
        l2_normalize(spectral_embedding(knn_affinity(centred(em), 10), 2 * k, 0)), k
    ),
    "shared-nearest-neighbour weights, 10-NN": lambda lg, em, k: spectral(
        centred(em), k, snn_affinity(centred(em), 10)
    ),
    "shared-nearest-neighbour weights, 15-NN": lambda lg, em, k: spectral(
        centred(em), k, snn_affinity(centred(em), 15)
    ),
    "shared-nearest-neighbour weights, 30-NN": lambda lg, em, k: spectral(
        centred(em), k, snn_affinity(centred(em), 30)
    ),
    "default, then 3 rounds of 10-NN majority vote": lambda lg, em, k: knn_vote(
        centred(em), spectral(centred(em), k), 10
    ),
    "PCA to 256 dims": lambda lg, em, k: spectral(pca(em, dims=256), k),
    "PCA to 128 dims": lambda lg, em, k: spectral(pca(em, dims=128), k),
    "PCA, half-whitened (power 0.5)": lambda lg, em, k: spectral(pca(em, power=0.5), k),
    "PCA, quarter-whitened (power 0.25)": lambda lg, em, k: spectral(pca(em, power=0.25), k),
    "all-but-the-top: first component dropped": lambda lg, em, k: spectral(pca(em, drop=1), k),
    "all-but-the-top: first 3 components dropped": lambda lg, em, k: spectral(pca(em, drop=3), k),
    "centred logits instead of the embedding": lambda lg, em, k: spectral(
        centre_and_normalize(lg), k
    ),
    "embedding ‖ centred sqrt class scores": lambda lg, em, k: spectral(
        l2_normalize(np.hstack([centred(em), centre_and_normalize(np.sqrt(softmax(lg)))])), k
    ),
    "sum of the embedding and logit 10-NN graphs": lambda lg, em, k: spectral(
        centred(em), k, knn_affinity(centred(em), 10) + knn_affinity(centre_and_normalize(lg), 10)
    ),
}


def resolution_rows(model: str, datasets: Path) -> list[str]:
    """Re-embed both sets with torch at other input sizes and crops; default clustering."""
    import torch
    from PIL import Image

    from imgclust.decode import resize_center_crop
    from imgclust.models.registry import get_spec
    from imgclust.models.runtime import _features_module

    torch.set_num_threads(2)
    net = _features_module(model)
    base = get_spec(model).preprocess
    rows = []
    for size in (224, 256, 288):
        for crop in (0.875, 1.0):
            pre = type(base)(size, crop, base.interpolation, base.mean, base.std)
            nmis = []
            for name in DATASETS:
                root = datasets / name
                files = sorted(p for p in root.rglob("*") if p.is_file() and p.parent != root)
                truth = [p.relative_to(root).parts[0] for p in files]
                embs = []
                for i in range(0, len(files), 64):
                    batch = np.stack(
                        [
                            np.asarray(resize_center_crop(Image.open(p).convert("RGB"), pre))
                            for p in files[i : i + 64]
                        ]
                    )
                    with torch.inference_mode():
                        embs.append(net(torch.from_numpy(batch))[1].numpy())
                nmis.append(
                    score(truth, spectral(centred(np.concatenate(embs)), len(set(truth)))).nmi
                )
            rows.append(
                f"| torch fp32, input {size} px, crop {crop} | {nmis[0]:.3f} | {nmis[1]:.3f} |"
            )
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", type=Path, default=Path("../shared/datasets"))
    ap.add_argument("--cache-root", type=Path, default=Path("/tmp"))
    ap.add_argument("--model", default="efficientnet_lite0")
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--resolutions", action="store_true")
    ap.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "quality-variants.md"
    )
    args = ap.parse_args()
    embed = EmbedConfig(model=args.model, precision=args.precision)
    stored = {}
    for name in DATASETS:
        cache = args.cache_root / ("cache-intel" if "intel" in name else "cache-coil")
        stored[name] = load_labelled(args.datasets / name, embed, cache)
    lines = [
        "# Variants tried for intel-scenes-dev NMI ≥ 0.80",
        "",
        f"`PYTHONPATH=src python bench/quality_variants.py` · model {model_for(embed)} · "
        f"k = number of classes · {platform.processor() or platform.machine()}",
        "",
        "| variant | intel-scenes-dev NMI | coil100-dev NMI | seconds (both) |",
        "|---|---|---|---|",
    ]
    for label, variant in VARIANTS.items():
        start = time.perf_counter()
        nmis = []
        for name in DATASETS:
            s = stored[name]
            labels = variant(
                s.logits.astype(np.float32), s.embedding.astype(np.float32), len(set(s.truth))
            )
            nmis.append(score(s.truth, labels).nmi)
        lines.append(
            f"| {label} | {nmis[0]:.3f} | {nmis[1]:.3f} | {time.perf_counter() - start:.1f} |"
        )
        print(lines[-1], flush=True)
    if args.resolutions:
        lines += [
            "",
            "| input (torch, fp32 Lite0 weights) | intel NMI | coil NMI |",
            "|---|---|---|",
        ]
        lines += resolution_rows(args.model, args.datasets)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
