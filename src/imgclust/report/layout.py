"""The map's 2-D layout: every photo on its own cell of one square lattice, a cluster a disc.

One cell holds one photo, so thumbnails drawn a cell wide never overlap and a click on a cell
means one photo. A layout is fitted once (:func:`fit_layout`; seconds at 100,000 photos,
``bench/results/map.md``) and places photos by the same rule later (:meth:`MapLayout.place`,
which ``assign`` calls), without refitting:

* **clusters**: a t-SNE of the centroids puts similar clusters near each other; each cluster
  is a disc just big enough for its photos, and the discs are pushed apart until :data:`GAP`
  cells part any two, and snapped to whole cells. Given the clusters' groups (the
  clustering's tree), the t-SNE sees each group as a further axis (:data:`GROUP_PULL`) and
  a group's discs are drawn to its middle a few times (:func:`_gather_groups`): a group is
  one patch of the map.
* **inside a cluster**: a photo's offset from its centroid is projected on the main axes of
  all such offsets (``basis``); up to :data:`ANCHORS` members of each cluster (its anchors)
  get a t-SNE of their own, and every photo lands among its nearest anchors (inverse-distance
  weights): photos alike in feature space end up near each other (the cluster's *cloud*).
* **onto the disc**: the :data:`CORE` share of photos nearest the centroid take the middle
  cells, nearest first; every other photo aims at a point of the disc in its direction in
  the cloud, as far out as it ranks outward (its place in the cloud blended with its
  distance to the centroid, :data:`CENTRE_WEIGHT`), so that the aims spread evenly; photos
  then take cells by the least total squared move from their aims (an exact assignment,
  in parts of a few dozen photos for large clusters, cut by halving along the longer axis).
* **side by side**: photos then swap cells, the swaps that gain most first, until photos on
  neighbouring cells are among each other's nearest in feature space (:func:`_swap`, which
  lowers trustworthiness's own penalty; a cluster at once, or patches of a large one, up to
  :data:`_REFINE_PHOTOS` photos). This is what brings the map within reach of a t-SNE of
  all the photos (``bench/results/map.md``): dealing a cloud onto a filled disc tears it
  somewhere, and the swaps mend the tears.
* **photos added later** (fewer than the cluster had) go where the anchors nearest them went,
  and :func:`settle` moves photos outward until no two share a cell.

Discs get their colours from :func:`colour_regions`: no two touching groups alike (and,
called again per cluster, the shades of a group's hue that its clusters get).

Why not a t-SNE or UMAP of all the photos: on two cores they take minutes at 100,000 photos
and far longer at a million, and neither places a photo added later without a refit. The
t-SNE here (:func:`tsne`, exact, scikit-learn's schedule) runs on sets of at most a few
hundred points, many at once, and scikit-learn is not imported for it.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..store import rows_by_group

if TYPE_CHECKING:
    from ..store import Rows

#: Cells of empty lattice between two discs (keeps a photo's map neighbours in its cluster).
GAP = 2
#: How strongly a group holds its clusters together on the map: the distance between two
#: groups' clusters grows by this many times the median distance between centroids.
GROUP_PULL = 1.0
#: Each round of drawing a group's discs together moves them this share of the way to the
#: group's middle (then discs are pushed apart again).
_GATHER = 0.5
_GATHER_ROUNDS = 6
#: Members of a cluster laid out by their own t-SNE; the others are placed among them.
ANCHORS = 192
#: Main axes of the within-cluster offsets that the anchors are compared on.
AXES = 32
#: Share of a cluster's photos, the nearest its centroid, that fill the middle cells in order.
CORE = 0.05
#: How far out the other photos go: their rank outward in the cloud blended with their rank
#: by distance to the centroid, this much of the latter.
CENTRE_WEIGHT = 0.4
#: Clusters of up to this many photos (past the core) are dealt onto cells exactly; larger
#: ones in parts of at most ``_LEAF`` (the assignment costs grow as the cube of the size).
_EXACT = 384
_LEAF = 64
#: Cells of a patch a large cluster's photos are swapped within (:func:`_refine`).
_PATCH = 96
#: Feature neighbours a photo's map neighbours are held to (trustworthiness's 10).
_KEPT = 10
#: Rounds of swaps, and how many photos at most are swapped in all (about 6 CPU seconds a
#: 40,000 on this machine, ``bench/results/map.md``): beyond, photos keep the cells dealt.
_SWAP_ROUNDS = 20
_REFINE_PHOTOS = 40_000
#: Anchors a photo is placed among.
_NEIGHBOURS = 5
#: Quantiles of the distance to the centroid kept per cluster (for photos added later).
_QUANTILES = 65
#: Images placed at a time (bounded memory at a million images).
_PLACE_ROWS = 8192
#: How far apart the t-SNE of the centroids is spread: 1 makes t-SNE neighbours touch
#: (a sparse map, its voids as wide as t-SNE's); smaller is more compact.
_SPREAD = 0.4
#: Beyond this many clusters the centroids' main axes place them (t-SNE's memory grows as k^2).
_TSNE_MAX_CLUSTERS = 3000


@dataclass(frozen=True)
class MapLayout:
    """A fitted layout; :meth:`place` maps images (features, cluster, distance) to cells.

    Attributes:
        centres: ``(k, 2)`` disc centres, whole cells.
        radii: ``(k,)`` disc radii: every fitted photo's cell lies within.
        basis: ``(d, AXES)`` main axes of the offsets from the centroids.
        scale: ``(k, 2, _QUANTILES)`` per cluster the quantiles of the distance to the
            centroid, and (``[:, 1, 0]``) the fitted number of photos.
        anchors: ``(k, ANCHORS, AXES + 4)`` per cluster its anchors' projected offsets, their
            place in the cloud and their cell (offset from the centre); rows of NaN where a
            cluster has fewer. ``None`` in a layout saved without them: photos added later
            are then placed by distance and the first two axes alone.

    A layout saved by an older version (``basis`` of 2 columns, ``scale`` of one value per
    cluster) keeps placing photos as it did: out by distance, round by the axes.
    """

    centres: np.ndarray
    radii: np.ndarray
    basis: np.ndarray
    scale: np.ndarray
    anchors: np.ndarray | None = None

    def place(
        self,
        features: Rows,
        centroids: np.ndarray,
        labels: np.ndarray,
        distances: np.ndarray,
    ) -> np.ndarray:
        """``(n, 2)`` float32 cells (whole numbers) of images of the given clusters.

        A cluster whose photos all come (as many as were fitted) gets its disc filled, one
        photo a cell; fewer (photos added later) go where their nearest anchors are, and may
        share a cell with another photo: :func:`settle` parts them. ``features`` may be
        float16; they are read ``_PLACE_ROWS`` rows at a time (a float32 copy of a million
        1280-d rows would be 5 GB).
        """
        labels = np.asarray(labels, dtype=np.int64)
        distances = np.asarray(distances, dtype=np.float64)
        if np.ndim(self.scale) == 1:
            return self._place_legacy(features, centroids, labels, distances)
        near = self._near_anchors(features, centroids, labels)  # cloud (2), anchors' cells (2)
        fitted = self.scale[:, 1, 0].astype(np.int64)
        counts = np.bincount(labels, minlength=len(self.radii))
        whole = counts[labels] >= fitted[labels]
        cells = np.zeros((len(labels), 2))
        if whole.any():
            rows = np.flatnonzero(whole)
            cells[rows] = _refine(
                _fill_discs(near[rows, :2], labels[rows], distances[rows]),
                features,
                rows,
                labels[rows],
                distances[rows],
            )
        later = ~whole
        if later.any() and self.anchors is not None:
            cells[later] = near[later, 2:]
        elif later.any():  # saved without anchors: out by distance, round by the first axes
            cells[later] = self._by_distance(near[later, :2], labels[later], distances[later])
        return (self.centres[labels] + np.rint(cells)).astype(np.float32)

    def _near_anchors(
        self, features: Rows, centroids: np.ndarray, labels: np.ndarray
    ) -> np.ndarray:
        """``(n, 4)``: each image's place in its cluster's cloud and the cell its nearest
        anchors have (without anchors: its first two axes, twice)."""
        z = _project(features, centroids, labels, self.basis)
        if self.anchors is None:
            return np.c_[z[:, :2], z[:, :2]].astype(np.float64)
        out = np.zeros((len(labels), 4), dtype=np.float64)
        order = np.argsort(labels, kind="stable")
        bounds = np.flatnonzero(np.r_[True, np.diff(labels[order]) != 0, True])
        for start, end in itertools.pairwise(bounds):
            for part in range(start, end, _PLACE_ROWS):
                rows = order[part : min(end, part + _PLACE_ROWS)]
                out[rows] = _among_anchors(z[rows], self.anchors[labels[rows[0]]])
        return out

    def _by_distance(self, axes: np.ndarray, labels: np.ndarray, d: np.ndarray) -> np.ndarray:
        out = np.zeros((len(labels), 2))
        q = np.linspace(0, 1, self.scale.shape[2])
        for cid in np.unique(labels).tolist():
            rows = np.flatnonzero(labels == cid)
            outward = np.interp(d[rows], _increasing(self.scale[cid, 0]), q)
            angle = np.arctan2(axes[rows, 1], axes[rows, 0])
            reach = np.sqrt(outward) * (self.radii[cid] - 0.5)
            out[rows] = np.c_[np.cos(angle), np.sin(angle)] * reach[:, None]
        return out

    def _place_legacy(
        self, features: Rows, centroids: np.ndarray, labels: np.ndarray, d: np.ndarray
    ) -> np.ndarray:
        """The rule of layouts saved before the lattice: out by distance, round by axis."""
        direction = np.empty((len(features), 2), dtype=np.float64)
        for start in range(0, len(features), _PLACE_ROWS):
            part = slice(start, start + _PLACE_ROWS)
            offsets = np.asarray(features[part], dtype=np.float32) - centroids[labels[part]]
            direction[part] = offsets @ self.basis
        norm = np.linalg.norm(direction, axis=1, keepdims=True)
        direction = np.where(norm > 1e-12, direction / np.maximum(norm, 1e-12), [[1.0, 0.0]])
        reach = np.minimum(d / self.scale[labels], 1.0) * self.radii[labels]
        return (self.centres[labels] + direction * reach[:, None]).astype(np.float32)


def fit_layout(
    features: Rows,
    centroids: np.ndarray,
    labels: np.ndarray,
    distances: np.ndarray,
    *,
    groups: np.ndarray | None = None,
) -> MapLayout:
    """Fit the layout of a clustering (``labels`` ≥ 0, aligned with ``features``, which may be
    float16; ``centroids`` ``(k, d)``; ``groups``: ``(k,)`` each cluster's group, whose
    clusters are then placed side by side)."""
    labels = np.asarray(labels, dtype=np.int64)
    distances = np.asarray(distances, dtype=np.float64)
    centroids = np.asarray(centroids, dtype=np.float32)
    k = len(centroids)
    sizes = np.bincount(labels, minlength=k)
    radii = np.array([_disc_radius(int(m)) for m in sizes])
    rng = np.random.default_rng(0)
    sample = rng.choice(len(labels), min(len(labels), 10_000), replace=False)
    offsets = np.asarray(features[sample], dtype=np.float32) - centroids[labels[sample]]
    basis = _top_axes(offsets - offsets.mean(axis=0), AXES).astype(np.float32)
    anchors, chosen = _fit_anchors(features, centroids, labels, basis, rng)
    scale = np.zeros((k, 2, _QUANTILES))
    q = np.linspace(0, 1, _QUANTILES)
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(k + 1))
    for cid in range(k):
        d = distances[order[bounds[cid] : bounds[cid + 1]]]
        scale[cid, 0] = np.quantile(d, q) if len(d) else q
        scale[cid, 1] = len(d)
    # Where the anchors end up, for photos placed later among them: the anchors alone fill
    # a disc of their own, grown to the cluster's size (filling the whole cluster would cost
    # as much as placing it).
    for cid, members in chosen.items():
        m = len(members)
        cells = _fill_discs(
            anchors[cid, :m, -4:-2].astype(np.float64), np.zeros(m, np.int64), distances[members]
        )
        anchors[cid, :m, -2:] = cells * np.sqrt(sizes[cid] / m)
    return MapLayout(
        centres=_pack(centroids, radii, groups).astype(np.float32),
        radii=radii.astype(np.float32),
        basis=basis,
        scale=scale.astype(np.float32),
        anchors=anchors,
    )


def settle(coords: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Each photo's lattice cell, ``(n, 2)`` int64, no two alike.

    A layout's own photos already are on cells of their own. A photo that shares one (placed
    later by ``assign``, or from a layout saved before the lattice) takes it all the same,
    and the photos in its way move one cell outward from their cluster's middle, along the
    line from there, up to the first free cell: everyone stays next to where it was.
    """
    cells = np.rint(np.asarray(coords, dtype=np.float64)).astype(np.int64)
    n = len(cells)
    if n < 2:
        return cells
    _, first = np.unique(cells, axis=0, return_index=True)
    later = np.ones(n, dtype=bool)
    later[first] = False
    if not later.any():
        return cells
    ids, inverse = np.unique(np.asarray(labels), return_inverse=True)
    middle = np.zeros((len(ids), 2))
    np.add.at(middle, inverse, cells)
    middle /= np.bincount(inverse, minlength=len(ids))[:, None]
    at = {
        (int(x), int(y)): int(i)
        for i, (x, y) in zip(first.tolist(), cells[first].tolist(), strict=True)
    }
    for i in np.flatnonzero(later).tolist():
        path = _ray(cells[i], middle[inverse[i]], at)
        for step in range(len(path) - 1, 0, -1):  # the last cell is free: shift into it
            mover = at[path[step - 1]]
            at[path[step]] = mover
            cells[mover] = path[step]
        at[path[0]] = i
        cells[i] = path[0]
    return cells


def _ray(
    start: np.ndarray, middle: np.ndarray, taken: dict[tuple[int, int], int]
) -> list[tuple[int, int]]:
    """Cells from ``start`` outward (away from ``middle``) up to the first free one."""
    direction = start - middle
    length = float(np.hypot(*direction))
    direction = direction / length if length > 1e-9 else np.array([1.0, 0.0])
    path = [(int(start[0]), int(start[1]))]
    step = 1
    while path[-1] in taken:
        x, y = np.rint(start + direction * step).astype(np.int64).tolist()
        if (x, y) != path[-1]:
            path.append((x, y))
        step += 1
    return path


def colour_regions(
    cells: np.ndarray, labels: np.ndarray, groups: np.ndarray, n_colours: int
) -> np.ndarray:
    """A colour (``0..n_colours-1``) for each group, so that groups whose regions touch differ.

    Args:
        cells: ``(n, 2)`` each photo's cell.
        labels: ``(n,)`` each photo's region (cluster id, any integers).
        groups: ``(n_regions,)`` the group of each region, regions in ``np.unique(labels)``
            order; a group may hold many regions, and gets one colour.
        n_colours: the palette's size.

    Regions touch when the gap between their discs (centre and radius from their cells) is at
    most a third of the smaller radius plus :data:`GAP` cells. The greedy colouring takes the
    group with the most differently coloured neighbours first (DSatur), and the colour used
    least so far among those its neighbours leave; with more neighbours than colours it takes
    the colour fewest of them have.
    """
    ids, inverse = np.unique(np.asarray(labels), return_inverse=True)
    groups = np.asarray(groups, dtype=np.int64)
    if len(groups) != len(ids):
        raise ValueError(f"{len(groups)} groups given for {len(ids)} regions")
    counts = np.bincount(inverse, minlength=len(ids)).astype(np.float64)
    centre = np.zeros((len(ids), 2))
    np.add.at(centre, inverse, np.asarray(cells, dtype=np.float64))
    centre /= counts[:, None]
    radius = np.sqrt(counts / np.pi) + 0.5
    gap = np.linalg.norm(centre[:, None] - centre[None], axis=2) - radius[:, None] - radius[None]
    near = gap <= np.minimum(radius[:, None], radius[None]) / 3 + GAP + 1
    n_groups = int(groups.max()) + 1 if len(groups) else 0
    touch = np.zeros((n_groups, n_groups), dtype=bool)
    a, b = np.nonzero(near)
    touch[groups[a], groups[b]] = True
    np.fill_diagonal(touch, False)
    colour = np.full(n_groups, -1, dtype=np.int64)
    used = np.zeros(n_colours, dtype=np.int64)
    for _ in range(n_groups):
        free = np.flatnonzero(colour < 0)
        saturation = [len(set(colour[touch[g]].tolist()) - {-1}) for g in free]
        degree = touch[free].sum(axis=1)
        g = int(free[np.lexsort((free, -degree, -np.asarray(saturation)))[0]])
        taken = np.bincount(colour[touch[g] & (colour >= 0)], minlength=n_colours)
        best = np.lexsort((np.arange(n_colours), used, taken))[0]
        colour[g] = best
        used[best] += 1
    return colour


# -- fitting ---------------------------------------------------------------------------------


def _fit_anchors(
    features: Rows,
    centroids: np.ndarray,
    labels: np.ndarray,
    basis: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Each cluster's anchors (up to :data:`ANCHORS` members, projected, and their t-SNE;
    their cells are filled in later), and which members they are."""
    k = len(centroids)
    anchors = np.full((k, ANCHORS, basis.shape[1] + 4), np.nan, dtype=np.float32)
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(k + 1))
    chosen = {}
    for cid in range(k):
        members = order[bounds[cid] : bounds[cid + 1]]
        if len(members) > ANCHORS:
            members = np.sort(rng.choice(members, ANCHORS, replace=False))
        if len(members):
            chosen[cid] = members
    # (rows kept in the store: read for all clusters at once, not once per cluster)
    sets = [
        (np.asarray(part, dtype=np.float32) - centroids[cid]) @ basis
        for cid, part in zip(chosen, rows_by_group(features, list(chosen.values())), strict=True)
    ]
    for (cid, members), z, y in zip(chosen.items(), sets, tsne(sets), strict=True):
        anchors[cid, : len(members), :-2] = np.c_[z, y]
    return anchors, chosen


def _among_anchors(z: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """``(n, 4)`` for rows ``z``: the inverse-distance means of the places in the cloud and
    of the cells of their nearest anchors (an anchor lands on its own place)."""
    anchors = anchors[~np.isnan(anchors[:, 0])]
    if not len(anchors):
        return np.c_[z[:, :2], z[:, :2]].astype(np.float64)
    az, ay = anchors[:, :-4], anchors[:, -4:].astype(np.float64)
    d2 = (z * z).sum(1)[:, None] + (az * az).sum(1)[None] - 2 * z @ az.T
    np.maximum(d2, 0, out=d2)
    take = min(_NEIGHBOURS, len(az))
    nearest = np.argpartition(d2, take - 1, axis=1)[:, :take] if take < len(az) else None
    if nearest is None:
        nearest = np.broadcast_to(np.arange(take), (len(z), take))
    near = np.take_along_axis(d2, nearest, axis=1).astype(np.float64)
    weight = 1.0 / (near + 1e-9 * (near.mean() + 1e-12))
    weight /= weight.sum(axis=1, keepdims=True)
    return np.einsum("nk,nkc->nc", weight, ay[nearest])


def _top_axes(x: np.ndarray, n_axes: int = 2, iterations: int = 8) -> np.ndarray:
    """The ``n_axes`` main axes of the rows of ``x``, ``(d, n_axes)``, by subspace iteration:
    a few matrix products instead of a full SVD (minutes at 20k x 1280)."""
    d = x.shape[1]
    n_axes = min(n_axes, d)
    if len(x) < 2:
        return np.eye(d, n_axes)
    x = x.astype(np.float32)
    v = np.random.default_rng(0).normal(size=(d, n_axes)).astype(np.float32)
    for _ in range(iterations):
        v, _ = np.linalg.qr(x.T @ (x @ v))
    return v.astype(np.float64)


def _project(
    features: Rows, centroids: np.ndarray, labels: np.ndarray, basis: np.ndarray
) -> np.ndarray:
    """``(n, axes)`` float32: each image's offset from its centroid on the ``basis`` axes,
    ``_PLACE_ROWS`` rows at a time through one float32 buffer (a fresh array a chunk costs
    ten times as much, in page faults)."""
    basis = np.asarray(basis, dtype=np.float32)
    out = np.empty((len(labels), basis.shape[1]), dtype=np.float32)
    buffer = np.empty((min(len(labels), _PLACE_ROWS), basis.shape[0]), dtype=np.float32)
    for start in range(0, len(labels), _PLACE_ROWS):
        rows = buffer[: min(_PLACE_ROWS, len(labels) - start)]
        np.copyto(rows, features[start : start + len(rows)])
        out[start : start + len(rows)] = rows @ basis
    out -= (np.asarray(centroids, dtype=np.float32) @ basis)[labels]
    return out


def _pack(centroids: np.ndarray, radii: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
    """Disc centres, whole cells: t-SNE of the centroids, scaled so that discs next to each
    other there nearly touch, then pushed apart until :data:`GAP` cells part any two.

    The scale trades how compact the map is against how well it keeps the centroids'
    neighbourhoods (``bench/map_layout.py``): squeezing the voids t-SNE leaves between
    groups of clusters further pushes unrelated clusters into each other.
    """
    k = len(centroids)
    if k == 1:
        return np.zeros((1, 2))
    points = _with_groups(centroids.astype(np.float64), groups)
    if k < 5 or k > _TSNE_MAX_CLUSTERS:  # too few for t-SNE, or too many: main axes
        c = points - points.mean(axis=0)
        start = c @ _top_axes(c, 2)
    else:
        start = tsne([points.astype(np.float32)], iterations=1000)[0]
    start -= start.mean(axis=0)
    reach = radii + GAP / 2
    from scipy.spatial import cKDTree

    gap, nearest = cKDTree(start).query(start, k=2)
    touching = (reach + reach[nearest[:, 1]]) / np.maximum(gap[:, 1], 1e-9)
    p = _separate(start * float(np.median(touching)) * _SPREAD, reach)
    if groups is not None and len(groups) == k:
        p = _gather_groups(p, reach, np.asarray(groups))
    margin = 0.0
    while True:  # whole cells, and no two discs closer than GAP
        q = np.rint(p - p.mean(axis=0))
        if not len(_overlaps(q, reach)[0]):
            return q
        margin += 0.5
        p = _separate(p, reach + margin)


def _gather_groups(p: np.ndarray, reach: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Discs drawn towards their group's middle (by area) and pushed apart again, a few
    times: a group's clusters close ranks into one patch, the map's order kept."""
    _, group = np.unique(groups, return_inverse=True)
    if group.max() < 1:  # one group: nothing to gather
        return p
    area = reach**2
    for _ in range(_GATHER_ROUNDS):
        middle = np.zeros((int(group.max()) + 1, 2))
        np.add.at(middle, group, p * area[:, None])
        middle /= np.bincount(group, weights=area)[:, None]
        p = _separate(p + _GATHER * (middle[group] - p), reach)
    return p


def _with_groups(centroids: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
    """The centroids with each cluster's group appended (one-hot, :data:`GROUP_PULL` times the
    median distance between centroids): clusters of one group end up side by side."""
    if groups is None or len(groups) != len(centroids):
        return centroids
    if not 1 < len(np.unique(groups)) < len(groups):  # one group, or a group a cluster
        return centroids
    from scipy.spatial.distance import pdist

    _, group = np.unique(np.asarray(groups), return_inverse=True)
    scale = GROUP_PULL * float(np.median(pdist(centroids))) / np.sqrt(2)
    return np.c_[centroids, np.eye(int(group.max()) + 1)[group] * scale]


def _overlaps(p: np.ndarray, reach: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of discs that overlap, by how much, and the unit vector from the second to the
    first."""
    from scipy.spatial import cKDTree

    pairs = cKDTree(p).query_pairs(2 * float(reach.max()), output_type="ndarray")
    if not len(pairs):
        return pairs, np.zeros(0), np.zeros((0, 2))
    a, b = pairs[:, 0], pairs[:, 1]
    delta = p[a] - p[b]
    dist = np.hypot(delta[:, 0], delta[:, 1])
    over = reach[a] + reach[b] - dist
    keep = over > 0
    unit = np.where(
        dist[keep, None] > 1e-9,
        delta[keep] / np.maximum(dist[keep], 1e-9)[:, None],
        np.c_[np.cos(a[keep]), np.sin(a[keep])],  # coinciding centres: any fixed direction
    )
    return pairs[keep], over[keep], unit


def _separate(p: np.ndarray, reach: np.ndarray, iterations: int = 1000) -> np.ndarray:
    """Push overlapping discs (radius ``reach``) apart along the line between their centres,
    the smaller one further, until none overlap."""
    p = p.astype(np.float64).copy()
    for _ in range(iterations):
        pairs, over, unit = _overlaps(p, reach)
        if not len(pairs):
            break
        a, b = pairs[:, 0], pairs[:, 1]
        share = reach[b] / (reach[a] + reach[b])  # the smaller disc moves more
        move = np.zeros_like(p)
        np.add.at(move, a, unit * (over * share * 1.02)[:, None])
        np.add.at(move, b, -unit * (over * (1 - share) * 1.02)[:, None])
        p += move
    return p


# -- dealing photos onto cells ---------------------------------------------------------------


# -- dealing photos onto cells ---------------------------------------------------------------


def _increasing(quantiles: np.ndarray) -> np.ndarray:
    """Quantiles made strictly increasing (np.interp needs it; many may be equal)."""
    span = float(quantiles[-1] - quantiles[0]) or 1.0
    return quantiles.astype(np.float64) + np.arange(len(quantiles)) * span * 1e-9


def _disc_radius(m: int) -> float:
    """The radius of the disc that ``m`` photos fill: beyond its farthest cell's middle by
    half a cell."""
    return float(np.hypot(*_disc_cells(max(m, 1))[-1])) + 0.5


_SPIRAL: dict[str, np.ndarray] = {}


def _disc_cells(m: int) -> np.ndarray:
    """The ``m`` cells nearest a disc's middle (offsets from it), nearest first: a disc with
    no holes. Cells as near as each other go in angle order from -pi."""
    cells = _SPIRAL.get("cells", np.zeros((0, 2), np.int64))
    reach = 8
    while len(cells) < m:
        reach *= 2
        grid = np.arange(-reach, reach + 1)
        x, y = (a.ravel() for a in np.meshgrid(grid, grid, indexing="ij"))
        d2 = x * x + y * y
        keep = d2 <= reach * reach  # every cell of the disc of radius `reach`, none beyond
        x, y, d2 = x[keep], y[keep], d2[keep]
        order = np.lexsort((np.arctan2(y, x), d2))
        cells = np.c_[x[order], y[order]].astype(np.int64)
        _SPIRAL["cells"] = cells
    return cells[:m]


def _fill_discs(cloud: np.ndarray, labels: np.ndarray, distances: np.ndarray) -> np.ndarray:
    """Cell offsets (from each disc's middle) of every photo of whole clusters, one photo a
    cell.

    The :data:`CORE` nearest their centroid take the middle cells, nearest first. Each of the
    others gets a target in the disc: the direction of its place in the cloud, and as far out
    as it ranks outward, by its place in the cloud blended with its distance to the centroid
    (:data:`CENTRE_WEIGHT`), so that targets spread evenly over the disc. Photos go to cells
    by the least total squared move from their targets (scipy's ``linear_sum_assignment``),
    exactly for a cluster of up to :data:`_EXACT` photos; a larger one is first halved again
    and again (:func:`_halve`) into parts of at most ``_LEAF``, each then solved alike.
    """
    from scipy.optimize import linear_sum_assignment

    n = len(labels)
    out = np.zeros((n, 2), dtype=np.int64)
    order = np.lexsort((np.arange(n), distances, labels))  # by cluster, nearest first
    bounds = np.flatnonzero(np.r_[True, np.diff(labels[order]) != 0, True])
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # photos, targets, cells
    big: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for start, end in itertools.pairwise(bounds):
        members = order[start:end]
        m = len(members)
        disc = _disc_cells(m)
        n_core = min(m, int(np.ceil(CORE * m)))
        out[members[:n_core]] = disc[:n_core]
        rest = members[n_core:]
        if not len(rest):
            continue
        p = cloud[rest] - np.median(cloud[members], axis=0)
        outward = _ranks(np.hypot(p[:, 0], p[:, 1]))
        outward = _ranks((1 - CENTRE_WEIGHT) * outward + CENTRE_WEIGHT * np.arange(len(rest)))
        reach = np.sqrt((n_core + outward + 0.5) / m) * (float(np.hypot(*disc[-1])) + 0.5)
        angle = np.arctan2(p[:, 1], p[:, 0])
        target = np.c_[np.cos(angle), np.sin(angle)] * reach[:, None]
        (parts if len(rest) <= _EXACT else big).append((rest, target, disc[n_core:]))
    if big:  # halve the large ones into parts, all at once
        who = np.concatenate([b[0] for b in big])
        target = np.concatenate([b[1] for b in big])
        cells = np.concatenate([b[2] for b in big]).astype(np.float64)
        owner = np.concatenate([np.full(len(b[0]), i) for i, b in enumerate(big)])
        p_order, c_order, leaf = _halve(target, cells, owner, _LEAF)
        for lo, hi in itertools.pairwise(leaf):
            parts.append((who[p_order[lo:hi]], target[p_order[lo:hi]], cells[c_order[lo:hi]]))
    for photos, target, cells in parts:
        cost = ((target[:, None, :] - cells[None, :, :]) ** 2).sum(axis=2)
        rows, cols = linear_sum_assignment(cost)
        out[photos[rows]] = cells[cols]
    return out


def _refine(
    cells: np.ndarray,
    features: Rows,
    rows: np.ndarray,
    labels: np.ndarray,
    distances: np.ndarray,
) -> np.ndarray:
    """The cells of :func:`_fill_discs` with photos swapped until feature neighbours sit side by
    side: :func:`_swap` over each cluster of up to :data:`_EXACT` photos, and each patch of
    up to :data:`_PATCH` cells of a larger one (cut by :func:`_halve`), smallest cluster
    first, up to :data:`_REFINE_PHOTOS` photos in all. The core keeps its cells.

    ``features`` are the images' rows ``rows`` (as ``labels``, ``distances`` and ``cells``).
    """
    cells = cells.copy()
    order = np.lexsort((np.arange(len(labels)), distances, labels))
    bounds = np.flatnonzero(np.r_[True, np.diff(labels[order]) != 0, True])
    clusters = sorted(itertools.pairwise(bounds), key=lambda b: (b[1] - b[0], b[0]))
    done = 0
    work: list[tuple[np.ndarray, np.ndarray]] = []  # (photos, which of them keep their cell)
    for start, end in clusters:
        members = order[start:end]  # nearest first
        fixed = np.zeros(len(members), dtype=bool)
        fixed[: int(np.ceil(CORE * len(members)))] = True
        if len(members) <= _EXACT:
            units = [np.arange(len(members))]
        else:
            c = cells[members].astype(np.float64)
            p_order, _, leaf = _halve(c, c, np.zeros(len(members), np.int64), _PATCH)
            units = [p_order[lo:hi] for lo, hi in itertools.pairwise(leaf)]
        for unit in units:
            done += len(unit)
            if done > _REFINE_PHOTOS:
                break
            work.append((members[unit], fixed[unit]))
        if done > _REFINE_PHOTOS:
            break
    if not work:
        return cells
    # (rows kept in the store: every swapped photo's read at once, at most _REFINE_PHOTOS)
    parts = rows_by_group(features, [rows[photos] for photos, _ in work])
    for (photos, fixed_unit), part in zip(work, parts, strict=True):
        cells[photos] = _swap(cells[photos], np.asarray(part, dtype=np.float32), fixed_unit)
    return cells


def _swap(cells: np.ndarray, x: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """Photos (features ``x``) moved among their own ``cells`` so that photos on neighbouring
    cells are near in feature space: pairwise swaps by the greatest gain, many at once.

    The cost of two photos side by side is how far each is beyond the other's
    :data:`_KEPT` nearest (by cosine, among these photos): trustworthiness's penalty. Cells
    next to each other (8 around) count fully, the 4 two cells away along the axes half
    (trustworthiness's 10 map neighbours are the 8 and two of those 4). Each round takes
    the best swaps whose cells' neighbourhoods do not meet, so that every gain is exact;
    ``fixed`` photos stay. Rounds stop at :data:`_SWAP_ROUNDS` or when no swap gains.
    """
    m = len(cells)
    movable = ~np.asarray(fixed, dtype=bool)
    if m < 4 or movable.sum() < 2:
        return cells
    x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    similarity = x @ x.T
    np.fill_diagonal(similarity, -np.inf)
    rank = np.empty((m, m), dtype=np.float32)  # rank[i, j]: j is i's rank[i, j]-th nearest
    rank[np.arange(m)[:, None], np.argsort(-similarity, axis=1, kind="stable")] = np.arange(
        1, m + 1, dtype=np.float32
    )
    beyond = np.maximum(rank - _KEPT, 0)
    np.fill_diagonal(beyond, 0)
    w = beyond + beyond.T
    c = cells.astype(np.float64)
    d2 = ((c[:, None] - c[None]) ** 2).sum(axis=2)
    adjacent = np.where(d2 <= 2.5, 1.0, np.where(np.abs(d2 - 4) < 0.5, 0.5, 0.0))
    np.fill_diagonal(adjacent, 0)
    adjacent = adjacent.astype(np.float32)
    touching = adjacent > 0
    # each cell's (at most 12) neighbours, padded with m (a column of zeros below)
    n_near = int(touching.sum(axis=1).max())
    around = np.argsort(~touching, axis=1, kind="stable")[:, :n_near]
    weight = np.take_along_axis(adjacent, around, axis=1)
    around = np.where(weight > 0, around, m)
    neighbours = [np.flatnonzero(row).tolist() for row in touching]
    at = np.arange(m)  # the photo on each cell (cells are slots; photos move)
    s_pad = np.zeros((m, m + 1), dtype=np.float32)
    for _ in range(_SWAP_ROUNDS):
        s = w[at][:, at]  # cost between the photos on two cells
        s_pad[:, :m] = s
        # cost[a, b]: the photo on cell a, were it on cell b, by b's neighbours
        cost = np.einsum("abj,bj->ab", s_pad[:, around], weight)
        own = np.diagonal(cost)
        gain = own[:, None] + own[None, :] - cost - cost.T - 2 * s * adjacent
        free = movable[at]
        gain[~free] = 0
        gain[:, ~free] = 0
        flat = np.flatnonzero(np.triu(gain, 1) > 1e-6)
        if not len(flat):
            break
        if len(flat) > m:  # the m best; sorting all m^2 would cost more than the round
            flat = flat[np.argpartition(-gain.ravel()[flat], m - 1)[:m]]
        flat = flat[np.argsort(-gain.ravel()[flat], kind="stable")]
        busy = bytearray(m)
        swapped = 0
        for a, b in zip(*(i.tolist() for i in np.unravel_index(flat, gain.shape)), strict=True):
            if busy[a] or busy[b]:
                continue
            at[a], at[b] = at[b], at[a]
            for c in (a, b, *neighbours[a], *neighbours[b]):
                busy[c] = 1
            swapped += 1
        if not swapped:
            break
    out = np.empty_like(cells)
    out[at] = cells
    return out


def _ranks(x: np.ndarray) -> np.ndarray:
    """Each value's rank (0 = the smallest; ties in input order)."""
    rank = np.empty(len(x), dtype=np.float64)
    rank[np.argsort(x, kind="stable")] = np.arange(len(x))
    return rank


def _halve(
    points: np.ndarray, cells: np.ndarray, groups: np.ndarray, leaf: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Split points and as many cells into parts of at most ``leaf``, group by group
    (``groups``: the same for a group's points and its cells, which come in equal numbers):
    halve a group's cells along their longer axis and its points in the same numbers along
    the same axis, and again in each half. Every level is a pair of sorts over all groups.

    Returns the points' and the cells' order and the bounds of the parts in both.
    """
    n = len(points)
    p_order = np.lexsort((np.arange(n), groups))
    c_order = p_order.copy()
    group = groups[p_order].astype(np.int64)
    while True:
        bounds = np.flatnonzero(np.r_[True, np.diff(group) != 0, True])
        sizes = np.diff(bounds)
        if sizes.max() <= leaf:
            return p_order, c_order, bounds
        c = cells[c_order]
        lo_x = np.minimum.reduceat(c[:, 0], bounds[:-1])
        hi_x = np.maximum.reduceat(c[:, 0], bounds[:-1])
        lo_y = np.minimum.reduceat(c[:, 1], bounds[:-1])
        hi_y = np.maximum.reduceat(c[:, 1], bounds[:-1])
        axis = np.repeat((hi_y - lo_y > hi_x - lo_x).astype(np.int64), sizes)
        slot = np.arange(n) - np.repeat(bounds[:-1], sizes)  # position inside the group
        split = np.repeat(sizes > leaf, sizes)
        second = split & (slot >= np.repeat(sizes // 2, sizes))
        p = points[p_order]
        key = np.where(axis == 1, p[:, 1], p[:, 0])
        p_order = p_order[np.lexsort((p_order, np.where(split, key, 0), group))]
        cross = np.where(axis == 1, c[:, 0], c[:, 1])
        along = np.where(axis == 1, c[:, 1], c[:, 0])
        c_order = c_order[
            np.lexsort((c_order, np.where(split, cross, 0), np.where(split, along, 0), group))
        ]
        group = 2 * group + second  # sorting kept each group's rows together, in place


# -- t-SNE of small sets -------------------------------------------------------------------


#: Entries of the ``(sets, points, points)`` arrays one t-SNE batch holds (memory bound).
_TSNE_BATCH = 1 << 19


def tsne(sets: list[np.ndarray], iterations: int = 500) -> list[np.ndarray]:
    """2-D t-SNE of each of several small point sets (rows of each array), exact gradients.

    scikit-learn's method (perplexity 30, or a third of the points for a small set;
    PCA start; early exaggeration 12; momentum, gains and learning rate as there) with
    fewer iterations, on many sets at once: sets of similar size are padded into one batch.
    A set of up to 3 points is placed along its main axis. ``iterations``: 500 place the
    anchors of a cluster about as well as scikit-learn's 1000 (a quarter of them with early
    exaggeration); the centroids, few and cheap, get 1000.
    """
    out: list[np.ndarray] = [np.zeros((len(s), 2)) for s in sets]
    order = sorted(range(len(sets)), key=lambda i: len(sets[i]))
    small = [i for i in order if len(sets[i]) <= 3]
    for i in small:
        x = sets[i].astype(np.float64) - sets[i].mean(axis=0)
        out[i] = x @ _top_axes(x, 2) if len(x) > 1 else np.zeros((len(x), 2))
    rest = [i for i in order if len(sets[i]) > 3]
    start = 0
    while start < len(rest):
        size = len(sets[rest[start]])
        end = start + 1
        while end < len(rest):
            grown = len(sets[rest[end]])
            if grown > 1.25 * size + 8 or (end - start + 1) * grown * grown > _TSNE_BATCH:
                break
            end += 1
        batch = rest[start:end]
        width = max(len(sets[i]) for i in batch)
        x = np.zeros((len(batch), width, sets[batch[0]].shape[1]), dtype=np.float32)
        mask = np.zeros((len(batch), width), dtype=bool)
        for b, i in enumerate(batch):
            x[b, : len(sets[i])] = sets[i]
            mask[b, : len(sets[i])] = True
        y = _tsne_batch(x, mask, iterations)
        for b, i in enumerate(batch):
            out[i] = y[b, : len(sets[i])].astype(np.float64)
            if not np.isfinite(out[i]).all():  # a last guard (_tsne_batch clamps 1 + d²)
                centred = sets[i].astype(np.float64) - sets[i].mean(axis=0)
                out[i] = centred @ _top_axes(centred, 2)
        start = end
    return out


def _tsne_batch(x: np.ndarray, mask: np.ndarray, iterations: int) -> np.ndarray:
    """t-SNE of each set of a padded batch ``(B, L, p)``; ``mask`` marks the real points."""
    n_sets, width, _ = x.shape
    n = mask.sum(axis=1).astype(np.float32)
    pair = mask[:, :, None] & mask[:, None, :]
    pair &= ~np.eye(width, dtype=bool)[None]
    sq = (x * x).sum(axis=2)
    d2 = np.maximum(sq[:, :, None] + sq[:, None, :] - 2 * x @ x.transpose(0, 2, 1), 0)
    mean = (d2 * pair).sum(axis=(1, 2)) / np.maximum(pair.sum(axis=(1, 2)), 1)
    d2 /= np.maximum(mean, 1e-12)[:, None, None]
    p = _affinities(d2, pair, np.clip((n - 1) / 3, 1, 30))
    p = p + p.transpose(0, 2, 1)
    p /= np.maximum(p.sum(axis=(1, 2), keepdims=True), 1e-12)
    p = np.maximum(p, 1e-12) * pair
    centred = (x - (x * mask[..., None]).sum(axis=1, keepdims=True) / n[:, None, None]) * mask[
        ..., None
    ]
    y = np.zeros((n_sets, width, 2), dtype=np.float32)
    for b in range(n_sets):  # PCA start, scaled as scikit-learn does
        _, vectors = np.linalg.eigh(centred[b].T @ centred[b])  # a small (p, p) matrix
        y[b] = centred[b] @ vectors[:, ::-1][:, :2]
        spread = float(y[b, mask[b], 0].std()) or 1.0
        y[b] *= 1e-4 / spread
    rate = np.maximum(n / 12 / 4, 50)[:, None, None].astype(np.float32)
    update = np.zeros_like(y)
    gains = np.ones_like(y)
    fpair = pair.astype(np.float32)
    strong = (12.0 * p).astype(np.float32)  # early exaggeration
    p = p.astype(np.float32)
    num = np.empty_like(p)
    w = np.empty_like(p)
    for it in range(iterations):
        attract, momentum = (strong, 0.5) if it < iterations // 4 else (p, 0.8)
        sy = (y * y).sum(axis=2)
        np.matmul(y, y.transpose(0, 2, 1), out=num)  # 1 / (1 + squared distance), in place
        num *= -2
        num += sy[:, :, None]
        num += sy[:, None, :] + 1
        # 1 + d² >= 1; in float32 |a|² + |b|² - 2a·b cancels below that once points lie far
        # apart (a set of 4 flew to ~300 and gave 0: inf, NaN cells, a crashed run)
        np.maximum(num, 1, out=num)
        np.reciprocal(num, out=num)
        num *= fpair
        total = num.sum(axis=(1, 2), keepdims=True)
        np.multiply(num, -1 / np.maximum(total, 1e-12), out=w)
        w += attract
        w *= num
        grad = 4.0 * (w.sum(axis=2)[..., None] * y - w @ y)
        grows = update * grad < 0
        gains = np.where(grows, gains + 0.2, gains * 0.8)
        np.maximum(gains, 0.01, out=gains)
        update = momentum * update - rate * gains * grad
        y += update
    return y


def _affinities(d2: np.ndarray, pair: np.ndarray, perplexity: np.ndarray) -> np.ndarray:
    """Conditional affinities with each row's Gaussian width found by bisection, so that the
    row's entropy is ``log(perplexity)`` of its set."""
    target = np.log(perplexity)[:, None]
    beta = np.ones(d2.shape[:2])
    lo = np.zeros_like(beta)
    hi = np.full_like(beta, np.inf)
    base = np.where(pair, d2, np.inf).min(axis=2, keepdims=True)
    base = np.where(np.isfinite(base), base, 0)
    shifted = np.where(pair, d2 - base, 0)
    for _ in range(60):
        p = np.exp(-shifted * beta[..., None]) * pair
        total = np.maximum(p.sum(axis=2), 1e-300)
        entropy = np.log(total) + beta * (shifted * p).sum(axis=2) / total
        wide = entropy > target  # too flat: narrow the Gaussian
        lo = np.where(wide, beta, lo)
        hi = np.where(wide, hi, beta)
        beta = np.where(np.isinf(hi), beta * 2, (lo + hi) / 2)
    p = np.exp(-shifted * beta[..., None]) * pair
    return p / np.maximum(p.sum(axis=2, keepdims=True), 1e-300)
