"""k-means: greedy k-means++ seeding + Lloyd iterations on faiss, scikit-learn contract.

Why faiss for the iterations: it trains on a sample (``max_points_per_centroid`` per
centroid) and then assigns every point exactly, 10-100x faster than scikit-learn on many
cores, which is what keeps a million images within minutes. Why k-means++ seeding: faiss
seeds with random points, and on real photo features that lands in visibly worse optima
(coil100-dev: inertia 147-161 vs 133, NMI 0.92 vs 0.96). Seeding is budgeted so that large
k or n falls back to fewer restarts rather than stalling. The seeding is scikit-learn's
greedy k-means++ written out in numpy (:func:`kmeans_plusplus`, ~30 lines): importing
``sklearn.cluster`` alone costs 1-2 s, a tenth of a whole run of a thousand photos.
"""

from __future__ import annotations

import math

import numpy as np

from .base import Clusterer

#: Floating-point operations we allow k-means++ seeding per restart (a few seconds on 2 cores).
_SEED_FLOP_BUDGET = 2e11
#: Lloyd work (2 x points x k x d x iterations) all restarts together may take (~10 s on 2
#: cores): small collections get every restart, 20,000 photos into k=100 get 3, larger ones 1.
_RESTART_FLOP_BUDGET = 1e12
#: Lloyd work (2 x points x k x d x iterations) one restart may take: about a minute on 2
#: cores. A million images into k=1000 then train on ~80 points per centroid, not 160.
_LLOYD_FLOP_BUDGET = 1e13
#: Most float32 training sample we hold (256 MiB, ~52k rows of 1280): a million points never
#: train all at once, and a million-image run stays under 4 GB.
_TRAIN_BYTES = 1 << 28
#: Rows converted to float32 and assigned at a time, so float16 input stays float16.
_ASSIGN_ROWS = 16384


def _as_features(X: np.ndarray) -> np.ndarray:
    """``X`` as float16 or float32, unchanged (no copy) when it already is one of those."""
    x = np.asarray(X)
    return x if x.dtype in (np.float16, np.float32) else x.astype(np.float32)


class KMeans(Clusterer):
    """k-means clustering.

    Args:
        n_clusters: k; lowered to the number of points when there are fewer.
        n_init: restarts (fewer when the data is large); the lowest inertia wins.
        max_iter: Lloyd iterations per restart.
        spherical: re-normalise centroids to unit length (for L2-normalised features).
        max_points_per_centroid: train on at most ``k *`` this many points (sampled); all
            points are then assigned to the trained centroids.
        random_state: seed; the same seed and data give the same labels.

    Attributes:
        labels_: cluster index of each training point.
        cluster_centers_: ``(k, d)`` centroids.
        distances_: Euclidean distance of each point to its centroid.
        inertia_: sum of squared distances.
    """

    def __init__(
        self,
        n_clusters: int = 100,
        *,
        n_init: int = 10,
        max_iter: int = 50,
        spherical: bool = False,
        max_points_per_centroid: int = 512,
        random_state: int = 0,
    ) -> None:
        super().__init__(n_clusters, random_state=random_state)
        self.n_init = n_init
        self.max_iter = max_iter
        self.spherical = spherical
        self.max_points_per_centroid = max_points_per_centroid

    def fit(self, X: np.ndarray) -> KMeans:
        """Cluster the rows of ``X`` (``(n, d)``).

        float16 input is kept as it is: only the training sample and one chunk of rows at a
        time are converted to float32, so a million rows need no float32 copy.
        """
        x = _as_features(X)
        n = x.shape[0]
        if n == 0:
            raise ValueError("cannot cluster zero points")
        k = max(1, min(self.n_clusters or 1, n))
        self.n_clusters_ = k
        self.cluster_centers_ = x.astype(np.float32) if k == n else self._train(x, k)
        self.labels_, self.distances_ = self._assign(x)
        used = np.unique(self.labels_)
        if len(used) < len(self.cluster_centers_):  # duplicate rows leave centroids empty
            self.cluster_centers_ = self.cluster_centers_[used]
            self.labels_ = np.searchsorted(used, self.labels_).astype(self.labels_.dtype)
            self.n_clusters_ = len(used)
        self.inertia_ = float((self.distances_.astype(np.float64) ** 2).sum())
        return self

    def _train(self, x: np.ndarray, k: int) -> np.ndarray:
        import faiss
        from threadpoolctl import threadpool_limits

        n, d = x.shape
        rng = np.random.default_rng(self.random_state)
        # The training sample: at most max_points_per_centroid per centroid, 1 GiB, and what
        # the Lloyd budget affords (but never under faiss's 39 points per centroid).
        affordable = int(_LLOYD_FLOP_BUDGET // (2 * k * d * max(1, self.max_iter)))
        n_train = min(
            n,
            k * self.max_points_per_centroid,
            max(k, _TRAIN_BYTES // (4 * d)),
            max(39 * k, affordable),
        )
        sample = x if n_train == n else x[np.sort(rng.choice(n, n_train, replace=False))]
        train = np.ascontiguousarray(sample, dtype=np.float32)
        trials = 2 + math.log(k)
        n_seed = int(min(n_train, max(4 * k, _SEED_FLOP_BUDGET / (k * d * trials))))
        lloyd_cost = 2.0 * n_train * k * d * self.max_iter
        restarts = max(1, min(self.n_init, int(_RESTART_FLOP_BUDGET // lloyd_cost)))
        best, best_obj = None, math.inf
        for r in range(max(1, restarts)):
            seed_rows = rng.choice(n_train, n_seed, replace=False) if n_seed < n_train else None
            seed_set = train if seed_rows is None else train[seed_rows]
            # One BLAS thread: seeding is many small products, and waking BLAS threads for
            # each one (against faiss's OpenMP threads) made it 5-10x slower on 2 cores.
            with threadpool_limits(limits=1, user_api="blas"):
                init = kmeans_plusplus(seed_set, k, seed=self.random_state + r)
            km = faiss.Kmeans(
                d,
                k,
                niter=self.max_iter,
                spherical=self.spherical,
                seed=self.random_state + r,
                max_points_per_centroid=self.max_points_per_centroid,
                min_points_per_centroid=1,
                verbose=False,
            )
            km.train(train, init_centroids=np.ascontiguousarray(init, dtype=np.float32))
            history = np.asarray(km.obj)
            obj = float(history[-1]) if history.size else math.inf
            if best is None or obj < best_obj:
                best, best_obj = np.asarray(km.centroids, dtype=np.float32).copy(), obj
        assert best is not None
        return best

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Index of the nearest centroid of each row of ``X``."""
        return self._assign(_as_features(X))[0]

    def nearest(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(nearest centroid, Euclidean distance to it) for each row of ``X``."""
        return self._assign(_as_features(X))

    def _assign(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return nearest_centroids(self.cluster_centers_, x)


def kmeans_plusplus(x: np.ndarray, k: int, *, seed: int = 0) -> np.ndarray:
    """k centres of the rows of ``x`` by greedy k-means++ (as scikit-learn seeds).

    Each new centre is the best of ``2 + ln k`` candidates drawn with probability
    proportional to their squared distance to the nearest centre so far: the one that lowers
    the total squared distance most (Arthur & Vassilvitskii 2007; the greedy variant).
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = len(x)
    rng = np.random.default_rng(seed)
    trials = 2 + int(np.log(k))
    sq = np.einsum("ij,ij->i", x, x)
    centres = np.empty((k, x.shape[1]), dtype=np.float32)
    first = int(rng.integers(n))
    centres[0] = x[first]
    closest = np.maximum(sq - 2.0 * (x @ x[first]) + sq[first], 0.0)
    for c in range(1, k):
        total = float(closest.sum())
        if total <= 0.0:  # every point already sits on a centre: any point will do
            candidates = rng.integers(n, size=trials)
        else:
            cumulative = np.cumsum(closest, dtype=np.float64)
            draws = rng.random(trials) * cumulative[-1]
            candidates = np.minimum(np.searchsorted(cumulative, draws), n - 1)
        dist = sq[candidates, None] - 2.0 * (x[candidates] @ x.T) + sq[None, :]
        np.minimum(np.maximum(dist, 0.0, out=dist), closest[None, :], out=dist)
        best = int(np.argmin(dist.sum(axis=1, dtype=np.float64)))
        centres[c] = x[candidates[best]]
        closest = dist[best]
    return centres


def nearest_centroids(centroids: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(index, Euclidean distance) of the nearest centroid of each row of ``x``.

    faiss finds the two nearest centroids; the distance to each is then computed again row
    by row (``|x - c|``, a float32 sum along the row) and the nearer one kept (the lower
    index on a tie), because faiss's own distances come from BLAS, whose last bits depend
    on how many rows are asked at once (measured: a shard of a few rows and the whole
    collection differ for k >= 20). A distance ranks a cluster's members, and a near-tie
    between two centroids picks the cluster: neither may depend on which other photos were
    asked with it (a shard, a Ray task, ``assign``). Rows are converted to float32 a chunk
    at a time, so float16 input needs no full copy.
    """
    import faiss

    c32 = np.ascontiguousarray(centroids, dtype=np.float32)
    index = faiss.IndexFlatL2(c32.shape[1])
    index.add(c32)
    labels = np.empty(len(x), dtype=np.int64)
    dist = np.empty(len(x), dtype=np.float32)
    for start in range(0, len(x), _ASSIGN_ROWS):
        part = np.ascontiguousarray(x[start : start + _ASSIGN_ROWS], dtype=np.float32)
        _, idx = index.search(part, min(2, len(c32)))
        idx = np.sort(idx, axis=1)  # candidates by index: a tie goes to the lower one
        exact = np.empty(idx.shape, dtype=np.float32)
        for j in range(idx.shape[1]):
            diff = part - c32[idx[:, j]]  # (``part`` may be the caller's own: never written)
            np.square(diff, out=diff)
            exact[:, j] = diff.sum(axis=1)
        best = np.argmin(exact, axis=1)
        rows = np.arange(len(part))
        labels[start : start + len(part)] = idx[rows, best]
        dist[start : start + len(part)] = np.sqrt(exact[rows, best])
    return labels, dist
