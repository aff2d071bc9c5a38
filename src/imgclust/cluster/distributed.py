"""k-means as passes over the feature store's shards, on Ray Data: no process holds all rows.

The same clustering as :class:`~imgclust.cluster.kmeans.KMeans` followed by
:func:`~imgclust.steps.fit_clusters` (labels numbered by size, ranks, distances, outlier
fences) and the class statistics that name the clusters, computed where the shards are:

1. **sample** (a task per shard): the rows whose path hashes under a fraction, enough for
   ``k x 512`` training points; every row when the collection is that small, so a small run
   trains on exactly what the local path trains on. The driver trains faiss k-means on the
   sample (k-means++ seeding, :class:`KMeans`), sorted by path as the local matrix is.
2. **assign** (a task per shard): each row's nearest centroid and distance, its top classes;
   each task writes its rows to ``WORK/assign-NNNNNN.parquet`` and returns only per-cluster
   aggregates: member counts, softmax score sums (the names' class statistics), and the
   smallest member path (the tie-break of numbering by size).
3. **rank** (Ray Data ``groupby`` by cluster): each cluster's members ordered by distance
   (ties by path) and its Tukey fence; each group writes ``WORK/rank-NNNNN.parquet`` (path,
   cluster, rank, outlier) and returns its size and fence. With ``duplicates`` (a threshold),
   where the shuffle's aggregators have room (:data:`AGGREGATOR_BYTES` a CPU), the
   members' features go through the groupby too, and each group also finds its medoid
   and its near-duplicates (:func:`~imgclust.describe.medoid`,
   :func:`~imgclust.neardup.near_duplicates`, on the same rows in the same order as a
   driver holding the matrix): ``duplicate_of`` in its file, the medoid's path returned.

What comes back to the driver is the sample, k x d centroids and k-sized aggregates; the
per-image results stay in Parquet files under ``WORK`` (:func:`read_assignments` gathers
them, in path order, for a caller that wants them in memory). Only features whose rows are
final per shard are supported (not ``embedding-centred``, which needs the collection's mean
first) and only a given k (not ``auto``).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..embed import STORE_DTYPE
from .features import feature_source, row_features, softmax

#: Feature kinds the passes support (their rows need nothing from the other shards).
DISTRIBUTED_KINDS = ("embedding", "logits", "scores", "sqrt-scores")
#: Training points per centroid, as :class:`KMeans` (``max_points_per_centroid``).
POINTS_PER_CENTROID = 512
#: The most sample bytes (float32) brought to the driver, as :class:`KMeans` trains on.
SAMPLE_BYTES = 1 << 28
#: Class ids kept per image (the ``top_classes`` of the exports).
TOP = 3
#: Rows (path, cluster, distance) per block of the ranking pass's shuffle.
ROWS_PER_BLOCK = 1_000_000
#: Bytes of features per partition of the ranking pass, when they go through it.
FEATURE_BYTES_PER_PARTITION = 1 << 28
#: Bytes of features a shuffle aggregator of the ranking pass may hold (one per CPU): past
#: it, the medoids and near-duplicates are left to the caller. (Measured: 2M rows x 1280 on
#: 2 CPUs, 2.5 GB each, put the aggregators at 2.9 and 2.1 GiB resident.)
AGGREGATOR_BYTES = 1 << 29


@dataclass(frozen=True)
class ShardPart:
    """Rows of one committed shard to cluster (``None``: all of them)."""

    shard: int
    rows: tuple[int, ...] | None = None


@dataclass(frozen=True)
class ShardSource:
    """Where the rows to cluster are: a store's model folder and the shards' parts."""

    store_root: str
    model: str
    kind: str
    parts: tuple[ShardPart, ...]

    @classmethod
    def of(
        cls,
        store_root: Path,
        model: str,
        kind: str,
        paths: Sequence[str],
        found: Mapping[str, Any],
    ) -> ShardSource:
        """The parts holding ``paths`` at ``found``'s locations (a run's own rows: a store
        may hold other photos, and older copies of these)."""
        rows: dict[int, list[int]] = {}
        for p in paths:
            loc = found[p]
            rows.setdefault(loc.shard, []).append(loc.row)
        parts = tuple(ShardPart(s, tuple(sorted(r))) for s, r in sorted(rows.items()))
        return cls(str(store_root), model, kind, parts)

    def store(self) -> Any:
        from ..store import FeatureStore

        return FeatureStore(Path(self.store_root), self.model)  # read-only use: no open


@dataclass(frozen=True)
class FeatureRows:
    """A run's stored rows, as its engine may cluster them: the store, the model, the
    feature kind, and where each clustered path's row is (a :class:`~imgclust.store.Lookup`'s
    ``found``). Cheap to make; :meth:`source` does the per-image work, only when used."""

    store_root: Path
    model: str
    kind: str
    found: Mapping[str, Any]

    def source(self, paths: Sequence[str]) -> ShardSource:
        """The shard parts holding ``paths``."""
        return ShardSource.of(self.store_root, self.model, self.kind, paths, self.found)


@dataclass
class DistributedKMeans:
    """The result of :func:`fit_kmeans`, numbered by size (0 = the largest cluster).

    Attributes:
        centroids: ``(k, d)`` float32, row ``c`` the centroid of cluster ``c``.
        raw_centroids: the same in the trainer's order (``order[c]`` is cluster c's row).
        sizes, fences, first_paths: per cluster: members, Tukey fence, smallest path.
        cluster_scores: ``(k, n_classes)`` mean softmax scores of each cluster's members.
        medoids: each cluster's medoid (its path), with ``duplicates``; else ``None``.
        work_dir: the per-image Parquet files (``assign-*``, ``rank-*``).
        n_rows, n_sample: rows clustered; rows the centroids were trained on.
        timings: seconds per pass.
    """

    centroids: np.ndarray
    raw_centroids: np.ndarray
    order: np.ndarray
    sizes: np.ndarray
    fences: np.ndarray
    first_paths: list[str]
    cluster_scores: np.ndarray
    work_dir: Path
    n_rows: int
    n_sample: int
    medoids: list[str] | None = None
    timings: dict[str, float] = field(default_factory=dict)


def sample_fraction(n: int, k: int, dim: int) -> float:
    """The share of rows to train on: ``k x 512`` points, at most :data:`SAMPLE_BYTES`."""
    target = min(k * POINTS_PER_CENTROID, max(k, SAMPLE_BYTES // (4 * dim)))
    return 1.0 if n <= target else target / n


def path_hash(path: str, seed: int) -> float:
    """A path's place in [0, 1): the same on every node and in every order."""
    return zlib.crc32(path.encode("utf-8", "surrogateescape"), seed) / 2**32


class SampleShard:
    """Pass 1, over one shard: the rows of the sample (paths and features, float16)."""

    def __init__(self, source: ShardSource, fraction: float, seed: int) -> None:
        self.source, self.fraction, self.seed = source, fraction, seed

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        part = _part(batch)
        paths, (rows,), _ = _rows(self.source, part, [feature_source(self.source.kind)])
        keep = np.array([path_hash(p, self.seed) < self.fraction for p in paths], dtype=bool)
        feats = row_features(self.source.kind, rows[keep]).astype(STORE_DTYPE)
        kept = [p for p, k in zip(paths, keep, strict=True) if k]
        return {"paths": np.array([json.dumps(kept)]), "features": feats[None], **_peak()}


class AssignShard:
    """Pass 2, over one shard: nearest centroid, distance and top classes of every row
    (written to ``work_dir``, with the rows' features where ``features``: the clustered
    rows, and the embedding where that is another), and the per-cluster aggregates
    (returned)."""

    def __init__(
        self, source: ShardSource, centroids: np.ndarray, work_dir: str, features: bool = False
    ) -> None:
        self.source, self.centroids, self.work_dir = source, centroids, work_dir
        self.features = features

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import pyarrow as pa

        from ..describe import top_class_ids
        from ..store import STRING_COLUMNS
        from .kmeans import nearest_centroids

        part = _part(batch)
        kind = self.source.kind
        names = ["logits"] if feature_source(kind) == "logits" else ["embedding", "logits"]
        if self.features and "embedding" not in names:  # (near-duplicates: the embedding)
            names.append("embedding")
        paths, arrays, strings = _rows(self.source, part, names, STRING_COLUMNS)
        feats = row_features(kind, arrays[0]).astype(STORE_DTYPE)  # as the local matrix is
        labels, dist = nearest_centroids(self.centroids, feats)
        scores = softmax(arrays[-1])
        top = top_class_ids(scores, TOP).astype(np.int32)
        top_scores = np.take_along_axis(scores, top, axis=1).astype(np.float32)
        k = len(self.centroids)
        counts = np.bincount(labels, minlength=k)
        sums = np.zeros((k, scores.shape[1]), dtype=np.float64)
        order = np.argsort(labels, kind="stable")  # members together: one sum per cluster
        present, starts = np.unique(labels[order], return_index=True)
        if len(order):
            sums[present] = np.add.reduceat(scores[order], starts, axis=0, dtype=np.float64)
        first = [""] * k
        for p, c in zip(paths, labels.tolist(), strict=True):
            if not first[c] or p < first[c]:
                first[c] = p
        carried = {}
        if self.features:  # for the medoids and near-duplicates, a cluster at a time
            carried["features"] = _fixed(feats)
            if kind != "embedding":  # near-duplicates are judged on the embedding
                emb = arrays[names.index("embedding")]
                carried["embedding"] = _fixed(np.asarray(emb, dtype=STORE_DTYPE))
        table = pa.table(
            {
                "path": pa.array(paths, type=pa.string()),
                "label": pa.array(labels.astype(np.int32)),
                "distance": pa.array(dist.astype(np.float32)),
                "top_ids": _fixed(top),
                "top_scores": _fixed(top_scores),
                # what decoding recorded (the EXIF date): the driver need not read the shard
                **{name: pa.array(values, type=pa.string()) for name, values in strings.items()},
                **carried,
            }
        )
        _write(Path(self.work_dir) / f"assign-{part.shard:06d}.parquet", table)
        return {
            "counts": counts[None],
            "sums": sums[None],
            "first": np.array([json.dumps(first)]),
            **_peak(),
        }


def rank_group(
    batch: dict[str, np.ndarray],
    new_ids: np.ndarray,
    work_dir: str,
    duplicates: float | None = None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Pass 3, over one cluster's members (a Ray Data group): ranks, fence, outliers; with
    ``duplicates`` (the batch then has the members' ``features``, and ``embedding`` unless
    those are it) also the medoid and each member's near-duplicate group leader."""
    import pyarrow as pa

    from ..describe import outlier_thresholds, rank_members

    by_path = np.argsort(batch["path"].astype(str), kind="stable")  # ties: path order
    paths = batch["path"][by_path].astype(str)
    dist = np.asarray(batch["distance"], dtype=np.float32)[by_path]
    cid = int(new_ids[int(batch["label"][0])])
    same = np.zeros(len(dist), dtype=np.int64)
    ranks = rank_members(same, dist)
    fence = float(outlier_thresholds(same, dist, 1)[0])
    columns = {
        "path": pa.array(paths.tolist(), type=pa.string()),
        "cluster": pa.array(np.full(len(dist), cid, dtype=np.int32)),
        "rank": pa.array(ranks.astype(np.int64)),
        "outlier": pa.array(dist > fence),
    }
    found: dict[str, np.ndarray] = {}
    if duplicates is not None:
        from ..describe import medoid
        from ..neardup import near_duplicates

        feats = _matrix(batch["features"])[by_path]
        emb = _matrix(batch["embedding"])[by_path] if "embedding" in batch else feats
        # As describe() and near_duplicates() do on the driver's matrix, whose rows are in
        # path order: the members nearest first, ties by path.
        nearest = np.lexsort((np.arange(len(dist)), dist))
        found["medoid"] = np.array([paths[medoid(feats, nearest, seed)]])
        lead = near_duplicates(emb, same, dist, threshold=duplicates)
        columns["duplicate_of"] = pa.array(
            [paths[i] if i >= 0 else None for i in lead.tolist()], type=pa.string()
        )
    _write(Path(work_dir) / f"rank-{cid:05d}.parquet", pa.table(columns))
    return {
        "cluster": np.array([cid]),
        "fence": np.array([fence], dtype=np.float32),
        "size": np.array([len(dist)]),
        **found,
        **_peak(),
    }


def _matrix(column: np.ndarray) -> np.ndarray:
    """A fixed-size-list column as Ray Data hands it to numpy (a 2-D array, or an object
    array of rows) → a 2-D float16 matrix."""
    if column.dtype == object:
        return np.stack(list(column)).astype(STORE_DTYPE, copy=False)
    return np.asarray(column, dtype=STORE_DTYPE)


@contextlib.contextmanager
def data_settings(ray: Any, **settings: Any) -> Iterator[None]:
    """Ray Data's ``DataContext`` with ``settings`` for the block, as it was after it (it
    is the process's: a notebook's own jobs keep theirs)."""
    ctx = ray.data.DataContext.get_current()
    saved = {name: getattr(ctx, name) for name in settings}
    for name, value in settings.items():
        setattr(ctx, name, value)
    try:
        yield
    finally:
        for name, value in saved.items():
            setattr(ctx, name, value)


def fit_kmeans(
    ray: Any,
    source: ShardSource,
    *,
    k: int,
    seed: int,
    work_dir: Path,
    on_peak: Any = None,
    duplicates: float | None = None,
) -> DistributedKMeans:
    """Cluster ``source``'s rows into (at most) ``k`` clusters with the three passes.

    ``ray`` is the connected ``ray`` module (see :class:`~imgclust.engines.ray.RayEngine`).
    ``on_peak(pid, peak_rss_bytes)``, if given, hears each task's process peak memory.
    ``duplicates``: also each cluster's medoid and near-duplicates (this cosine-distance
    threshold; ``0``: the medoids only), found by the ranking pass, where the cluster's
    CPUs have room for the features in its shuffle (:data:`AGGREGATOR_BYTES` each; the
    result's ``medoids`` is ``None`` where not).

    Raises:
        ValueError: the feature kind is not one the passes support, or there are no rows.
    """
    with data_settings(ray, enable_progress_bars=False):
        return _fit_kmeans(
            ray, source, k=k, seed=seed, work_dir=work_dir, on_peak=on_peak,
            duplicates=duplicates,
        )  # fmt: skip


def _fit_kmeans(
    ray: Any,
    source: ShardSource,
    *,
    k: int,
    seed: int,
    work_dir: Path,
    on_peak: Any = None,
    duplicates: float | None = None,
) -> DistributedKMeans:
    from .kmeans import KMeans

    if source.kind not in DISTRIBUTED_KINDS:
        raise ValueError(f"{source.kind!r} features cannot be clustered shard by shard")
    work_dir.mkdir(parents=True, exist_ok=True)
    for old in work_dir.glob("*.parquet"):
        old.unlink()
    n = sum(len(p.rows) if p.rows is not None else _n_rows(source, p.shard) for p in source.parts)
    if n == 0:
        raise ValueError("cannot cluster zero points")
    timings: dict[str, float] = {}
    items = [{"shard": p.shard, "rows": json.dumps(p.rows)} for p in source.parts]

    def over_shards(fn: Any) -> Any:
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        return ds.map_batches(fn, batch_size=1, batch_format="numpy", num_cpus=1)

    dim = _width(source)
    start = time.perf_counter()
    fraction = sample_fraction(n, k, dim)
    got_paths: list[str] = []
    chunks: list[np.ndarray] = []
    for row in over_shards(SampleShard(source, fraction, seed)).iter_rows():
        _report(row, on_peak)
        got_paths += json.loads(str(row["paths"]))
        chunks.append(np.asarray(row["features"], dtype=STORE_DTYPE))
    order = np.argsort(np.array(got_paths, dtype=object), kind="stable")
    sample = np.concatenate(chunks)[order] if chunks else np.zeros((0, dim), STORE_DTYPE)
    del chunks
    model = KMeans(min(k, len(sample)), random_state=seed).fit(sample)
    raw = np.asarray(model.cluster_centers_, dtype=np.float32)
    n_sample = len(sample)
    del sample, model
    timings["sample_train"] = time.perf_counter() - start

    start = time.perf_counter()
    kk = len(raw)
    counts = np.zeros(kk, dtype=np.int64)
    sums: np.ndarray | None = None
    first = [""] * kk
    # The features go through the ranking pass's shuffle only where its aggregators (Ray
    # 2.60: at most one a CPU, each holding its partitions until it finalises) can hold them;
    # else the caller finds the medoids and near-duplicates (``medoids`` is None).
    n_cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    carried = ["features", *([] if source.kind == "embedding" else ["embedding"])]
    feature_bytes = n * dim * np.dtype(STORE_DTYPE).itemsize * len(carried)
    with_features = duplicates is not None and feature_bytes <= n_cpus * AGGREGATOR_BYTES
    if not with_features:
        carried, feature_bytes = [], 0
    assign = AssignShard(source, raw, str(work_dir), features=with_features)
    for row in over_shards(assign).iter_rows():
        _report(row, on_peak)
        counts += np.asarray(row["counts"], dtype=np.int64)
        part_sums = np.asarray(row["sums"], dtype=np.float64)
        sums = part_sums if sums is None else sums + part_sums
        for c, p in enumerate(json.loads(str(row["first"]))):
            if p and (not first[c] or p < first[c]):
                first[c] = p
    timings["assign"] = time.perf_counter() - start

    # Numbered by size, ties by smallest member path (relabel_by_size); empty ones dropped.
    used = [c for c in range(kk) if counts[c]]
    by_size = sorted(used, key=lambda c: (-counts[c], first[c]))
    new_ids = np.full(kk, -1, dtype=np.int64)
    new_ids[by_size] = np.arange(len(by_size))

    start = time.perf_counter()
    fences = np.full(len(by_size), np.inf, dtype=np.float32)
    # Pass 2's files, read a block of ~1M rows (~80 MB) a task: the shuffle's cost grows
    # with its blocks (with the square of them, for Ray's sort-based one). (Not
    # ray.data.read_parquet: in Ray 2.60 it fails where fsspec lacks its http extra.)
    files = [str(p) for p in sorted(work_dir.glob("assign-*.parquet"))]
    # With the features, blocks and partitions of at most ~256 MB of them.
    n_parts = max(2 * n_cpus, -(-feature_bytes // FEATURE_BYTES_PER_PARTITION))
    n_blocks = max(min(len(files), n_parts), -(-n // ROWS_PER_BLOCK))
    per_block = -(-len(files) // n_blocks)
    blocks = [
        {"files": json.dumps(files[i : i + per_block])} for i in range(0, len(files), per_block)
    ]
    ds = ray.data.from_items(blocks, override_num_blocks=len(blocks)).map_batches(
        _read_assigned, fn_args=(["path", "label", "distance", *carried],), batch_size=1,
        batch_format="pyarrow", num_cpus=1,
    )  # fmt: skip
    # Few partitions, each with whole clusters: Ray's default (200) costs seconds.
    grouped = ds.groupby("label", num_partitions=max(1, min(len(by_size), n_parts))).map_groups(
        rank_group, fn_args=(new_ids, str(work_dir), duplicates if with_features else None, seed),
        batch_format="numpy", num_cpus=1,
    )  # fmt: skip
    medoids = [""] * len(by_size) if with_features else None
    for row in grouped.iter_rows():
        _report(row, on_peak)
        fences[int(row["cluster"])] = float(row["fence"])
        if medoids is not None:
            medoids[int(row["cluster"])] = str(row["medoid"])
    timings["rank"] = time.perf_counter() - start
    assert sums is not None
    means = sums[by_size] / np.maximum(counts[by_size], 1)[:, None]
    return DistributedKMeans(
        centroids=raw[by_size],
        raw_centroids=raw,
        order=np.asarray(by_size, dtype=np.int64),
        sizes=counts[by_size],
        fences=fences,
        first_paths=[first[c] for c in by_size],
        cluster_scores=means,
        work_dir=work_dir,
        n_rows=n,
        n_sample=n_sample,
        medoids=medoids,
        timings=timings,
    )


def read_assignments(result: DistributedKMeans, paths: Sequence[str]) -> dict[str, np.ndarray]:
    """The per-image results for ``paths`` (every clustered path), in that order:
    ``labels`` (by size), ``raw_labels`` (the trainer's), ``distances``, ``ranks``,
    ``outliers``, ``top_ids``, ``top_scores``, and the store's string columns (``taken``: an
    object array, ``None`` where a shard lacks it); with the passes' ``duplicates`` also
    ``duplicate_of`` (each image's group leader's index, ``-1`` for none) and ``medoids``
    (k-sized: each cluster's medoid's index). n-sized: for callers that hold the
    collection."""
    import pyarrow.parquet as pq

    from ..store import STRING_COLUMNS

    where = {p: i for i, p in enumerate(paths)}
    n = len(paths)
    out: dict[str, np.ndarray] = {
        "labels": np.full(n, -1, dtype=np.int64),
        "raw_labels": np.full(n, -1, dtype=np.int64),
        "distances": np.zeros(n, dtype=np.float32),
        "ranks": np.zeros(n, dtype=np.int64),
        "outliers": np.zeros(n, dtype=bool),
        "top_ids": np.zeros((n, TOP), dtype=np.int32),
        "top_scores": np.zeros((n, TOP), dtype=np.float32),
        **{name: np.full(n, None, dtype=object) for name in STRING_COLUMNS},
    }
    for file in sorted(result.work_dir.glob("assign-*.parquet")):
        t = pq.read_table(file)
        idx = np.array([where[p] for p in t.column("path").to_pylist()], dtype=np.int64)
        for name in STRING_COLUMNS:
            out[name][idx] = t.column(name).to_pylist()
        out["raw_labels"][idx] = t.column("label").to_numpy()
        out["distances"][idx] = t.column("distance").to_numpy()
        out["top_ids"][idx] = np.stack(t.column("top_ids").to_numpy(zero_copy_only=False))
        out["top_scores"][idx] = np.stack(t.column("top_scores").to_numpy(zero_copy_only=False))
    if result.medoids is not None:
        out["duplicate_of"] = np.full(n, -1, dtype=np.int64)
        out["medoids"] = np.array([where[p] for p in result.medoids], dtype=np.int64)
    for file in sorted(result.work_dir.glob("rank-*.parquet")):
        t = pq.read_table(file)
        idx = np.array([where[p] for p in t.column("path").to_pylist()], dtype=np.int64)
        out["labels"][idx] = t.column("cluster").to_numpy()
        out["ranks"][idx] = t.column("rank").to_numpy()
        out["outliers"][idx] = t.column("outlier").to_numpy(zero_copy_only=False)
        if "duplicate_of" in out:
            leads = t.column("duplicate_of").to_pylist()
            out["duplicate_of"][idx] = [-1 if p is None else where[p] for p in leads]
    return out


def _read_assigned(batch: Any, columns: list[str]) -> Any:
    """Some pass-2 files' ``columns``, one table (a block of pass 3's input)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = json.loads(batch.column("files")[0].as_py())
    return pa.concat_tables([pq.read_table(f, columns=columns) for f in files])


def _part(batch: dict[str, np.ndarray]) -> ShardPart:
    rows = json.loads(str(batch["rows"][0]))
    return ShardPart(int(batch["shard"][0]), None if rows is None else tuple(rows))


def _rows(
    source: ShardSource, part: ShardPart, names: Sequence[str], strings: Sequence[str] = ()
) -> tuple[list[str], list[np.ndarray], dict[str, list[str | None]]]:
    """(paths, rows of each array of ``names``) of one part (one checked read of its shard),
    and with ``strings`` also those string columns' values (``None`` throughout where the
    shard was written without the column)."""
    from ..store import decode_path, feature_rows

    store = source.store()
    table = store.read_table(part.shard, ["path", *names, *strings], missing_ok=bool(strings))
    if not set(names) <= set(table.column_names):  # (only the string columns may be missing)
        table = store.read_table(part.shard, ["path", *names])  # raises, naming the shard
    arrays = [feature_rows(table, name) for name in names]
    paths = [decode_path(p) for p in table.column("path").to_pylist()]
    values: dict[str, list[str | None]] = {
        name: table.column(name).to_pylist() if name in table.column_names else [None] * len(paths)
        for name in strings
    }
    if part.rows is not None:
        take = np.asarray(part.rows, dtype=np.int64)
        arrays = [a[take] for a in arrays]
        paths = [paths[i] for i in part.rows]
        values = {name: [v[i] for i in part.rows] for name, v in values.items()}
    return paths, arrays, values


def _n_rows(source: ShardSource, shard: int) -> int:
    return source.store().n_rows(shard)


def _width(source: ShardSource) -> int:
    first = source.parts[0].shard
    table = source.store().read_table(first, [feature_source(source.kind)])
    return int(table.schema.field(feature_source(source.kind)).type.list_size)


def _fixed(rows: np.ndarray) -> Any:
    import pyarrow as pa

    rows = np.ascontiguousarray(rows)
    return pa.FixedSizeListArray.from_arrays(pa.array(rows.reshape(-1)), rows.shape[1])


def _write(path: Path, table: Any) -> None:
    import pyarrow.parquet as pq

    from .._fs import atomic_write

    atomic_write(path, write_path=lambda tmp: pq.write_table(table, tmp), fsync=False)


def _peak() -> dict[str, np.ndarray]:
    """This process's id and peak resident memory so far (bytes), for the bench."""
    import resource

    return {
        "pid": np.array([os.getpid()]),
        "peak": np.array([resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024]),
    }


def _report(row: dict[str, Any], on_peak: Any) -> None:
    if on_peak is not None:
        on_peak(int(row["pid"]), int(row["peak"]))
