"""The map's layout (report/layout.py): one photo a cell, clusters as filled discs that keep
neighbours near, photos added later placed without a refit, and region colours."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from imgclust.report import layout as lay
from imgclust.report.layout import MapLayout, colour_regions, fit_layout, settle


def _photos(
    n_clusters: int = 8, per: int = 150, d: int = 48, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Clusters of photos, each made of 3 sub-groups (so there is structure inside a cluster
    to keep): float16 features, centroids, labels, distances to the centroid."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(n_clusters, d))
    parts = centres[:, None, :] + rng.normal(scale=1.0, size=(n_clusters, 3, d))
    labels = np.repeat(np.arange(n_clusters), per)
    part = rng.integers(0, 3, len(labels))
    feats = parts[labels, part] + rng.normal(scale=0.35, size=(len(labels), d))
    centroids = np.stack([feats[labels == c].mean(axis=0) for c in range(n_clusters)])
    distances = np.linalg.norm(feats - centroids[labels], axis=1)
    return feats.astype(np.float16), centroids.astype(np.float32), labels, distances


@pytest.fixture(scope="module")
def fitted() -> tuple[MapLayout, np.ndarray, tuple[np.ndarray, ...]]:
    data = _photos()
    layout = fit_layout(*data)
    return layout, layout.place(*data), data


def test_every_photo_has_a_cell_of_its_own_inside_its_disc(fitted) -> None:  # type: ignore[no-untyped-def]
    layout, cells, (_, _, labels, _) = fitted
    assert np.array_equal(cells, np.rint(cells))  # whole cells
    assert len(np.unique(cells, axis=0)) == len(cells)
    reach = np.linalg.norm(cells - layout.centres[labels], axis=1)
    assert (reach <= layout.radii[labels]).all()
    gaps = np.linalg.norm(layout.centres[:, None] - layout.centres[None], axis=2)
    need = layout.radii[:, None] + layout.radii[None] + lay.GAP
    upper = np.triu_indices(len(layout.radii), 1)
    assert (gaps[upper] >= need[upper] - 1e-6).all()  # discs apart by GAP cells


def test_members_fill_their_disc_without_holes_nearest_in_the_middle(fitted) -> None:  # type: ignore[no-untyped-def]
    layout, cells, (_, _, labels, distances) = fitted
    for cid in range(len(layout.radii)):
        idx = np.flatnonzero(labels == cid)
        offsets = cells[idx] - layout.centres[cid]
        disc = lay._disc_cells(len(idx))  # the len(idx) cells nearest the middle
        assert {tuple(o) for o in offsets.astype(int).tolist()} == {tuple(c) for c in disc.tolist()}
        by_distance = idx[np.argsort(distances[idx], kind="stable")]
        n_core = int(np.ceil(lay.CORE * len(idx)))
        core = cells[by_distance[:n_core]] - layout.centres[cid]
        assert np.array_equal(core, disc[:n_core])  # the nearest, nearest first, in the middle
        # and on the whole the nearer photos sit nearer the middle
        rho = np.corrcoef(np.argsort(np.argsort(distances[idx])), np.hypot(*offsets.T))[0, 1]
        assert rho > 0.3


def test_neighbours_in_feature_space_stay_neighbours_on_the_map(fitted) -> None:  # type: ignore[no-untyped-def]
    from sklearn.manifold import trustworthiness

    layout, cells, (feats, _, labels, _) = fitted
    x = feats.astype(np.float32)
    ours = trustworthiness(x, cells, n_neighbors=10)
    # the same discs with the photos of each dealt at random: clusters alone
    rng = np.random.default_rng(1)
    shuffled = cells.copy()
    for cid in range(len(layout.radii)):
        idx = np.flatnonzero(labels == cid)
        shuffled[idx] = cells[rng.permutation(idx)]
    assert ours > trustworthiness(x, shuffled, n_neighbors=10) + 0.02
    assert ours > 0.97


def test_placing_is_the_same_in_any_number_of_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _photos(n_clusters=4, per=90, seed=3)
    layout = fit_layout(*data)
    whole = layout.place(*data)
    monkeypatch.setattr(lay, "_PLACE_ROWS", 37)
    assert np.array_equal(layout.place(*data), whole)


def test_photos_added_later_land_by_their_neighbours_without_a_refit() -> None:
    feats, centroids, labels, distances = _photos(seed=5)
    rng = np.random.default_rng(0)
    later = rng.random(len(labels)) < 0.1
    layout = fit_layout(feats[~later], centroids, labels[~later], distances[~later])
    before = layout.place(feats[~later], centroids, labels[~later], distances[~later])
    added = layout.place(feats[later], centroids, labels[later], distances[later])
    # near their cluster's disc ...
    reach = np.linalg.norm(added - layout.centres[labels[later]], axis=1)
    assert (reach <= layout.radii[labels[later]] + 1).all()
    # ... and near the fitted photo nearest them in feature space, much nearer than chance
    x_old = feats[~later].astype(np.float32)
    x_new = feats[later].astype(np.float32)
    nearest = np.argmin(((x_new[:, None] - x_old[None]) ** 2).sum(axis=2), axis=1)
    gap = np.linalg.norm(added - before[nearest], axis=1)
    same = labels[~later][nearest] == labels[later]
    spread = np.linalg.norm(before[:, None] - before[None], axis=2)
    chance = np.mean([spread[i][labels[~later] == labels[~later][i]].mean() for i in nearest])
    assert np.median(gap[same]) < 0.5 * chance
    # once settled, every photo has a cell of its own again and the fitted ones barely moved
    both = settle(np.r_[before, added], np.r_[labels[~later], labels[later]])
    assert len(np.unique(both, axis=0)) == len(both)
    moved = np.abs(both[: len(before)] - before).max(axis=1)
    assert np.median(moved) == 0 and moved.mean() < 1.0


def test_settle_moves_photos_outward_one_cell_along_the_way() -> None:
    # a full 3x3 disc (centre 0,0) and a newcomer on the middle cell
    grid = np.array([(x, y) for x in (-1, 0, 1) for y in (-1, 0, 1)], dtype=float)
    coords = np.r_[grid, [[0.2, 0.1]]]  # rounds to the middle, taken
    out = settle(coords, np.zeros(len(coords), int))
    assert len(np.unique(out, axis=0)) == len(out)
    assert tuple(out[-1]) == (0, 0)  # the newcomer keeps the cell it came to
    moved = np.flatnonzero(np.abs(out[:-1] - grid).sum(axis=1) > 0)
    assert len(moved) >= 1 and (np.abs(out[moved] - grid[moved]).max(axis=1) <= 1).all()
    untouched = settle(grid, np.zeros(9, int))
    assert np.array_equal(untouched, grid)


def test_touching_regions_get_different_colours_and_a_group_one_colour() -> None:
    # 36 small regions on a 6x6 grid of discs, 2 cells between side neighbours
    centres = np.array([(x * 8, y * 8) for x in range(6) for y in range(6)])
    cells = np.concatenate([c + lay._disc_cells(20) for c in centres])
    labels = np.repeat(np.arange(36), 20)
    colour = colour_regions(cells, labels, np.arange(36), 6)
    for a in range(36):
        for b in range(a + 1, 36):
            if np.abs(centres[a] - centres[b]).sum() <= 8:  # side by side
                assert colour[a] != colour[b]
    assert len(set(colour.tolist())) >= 4
    groups = np.arange(36) // 6  # a column of regions per group
    per_group = colour_regions(cells, labels, groups, 6)
    assert len(per_group) == 6
    for g in range(5):
        assert per_group[g] != per_group[g + 1]  # neighbouring columns differ
    with pytest.raises(ValueError, match="groups"):
        colour_regions(cells, labels, np.arange(5), 6)


def test_layouts_saved_by_older_versions_still_place_photos() -> None:
    feats, centroids, labels, distances = _photos(n_clusters=3, per=40, seed=2)
    # as state.py loads one: the four saved arrays, positionally (no anchors)
    layout = fit_layout(feats, centroids, labels, distances)
    no_anchors = MapLayout(layout.centres, layout.radii, layout.basis, layout.scale)
    few = slice(0, 12)
    placed = no_anchors.place(feats[few], centroids, labels[few], distances[few])
    reach = np.linalg.norm(placed - layout.centres[labels[few]], axis=1)
    assert (reach <= layout.radii[labels[few]] + 1).all()
    # a layout from before the lattice: one projection, one scale per cluster
    legacy = MapLayout(
        centres=np.array([[0, 0], [30, 0], [0, 30]], np.float32),
        radii=np.array([6, 6, 6], np.float32),
        basis=np.eye(feats.shape[1], 2, dtype=np.float32),
        scale=np.ones(3, np.float32) * float(np.percentile(distances, 99)),
    )
    old = legacy.place(feats, centroids, labels, distances)
    assert (np.linalg.norm(old - legacy.centres[labels], axis=1) <= 6.001).all()


def test_small_sets_and_one_cluster() -> None:
    feats, centroids, labels, distances = _photos(n_clusters=1, per=5, seed=4)
    layout = fit_layout(feats, centroids, labels, distances)
    cells = layout.place(feats, centroids, labels, distances)
    assert len(np.unique(cells, axis=0)) == 5
    one = fit_layout(feats[:1], centroids, labels[:1], distances[:1])
    assert one.place(feats[:1], centroids, labels[:1], distances[:1]).tolist() == [[0.0, 0.0]]


def test_tsne_keeps_separate_groups_apart() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(size=(40, 10))
    b = rng.normal(size=(40, 10)) + 8
    y = lay.tsne([np.r_[a, b].astype(np.float32), a[:3].astype(np.float32)])
    assert y[0].shape == (80, 2) and y[1].shape == (3, 2)
    first, second = y[0][:40], y[0][40:]
    between = np.linalg.norm(first.mean(axis=0) - second.mean(axis=0))
    within = max(first.std(axis=0).max(), second.std(axis=0).max())
    assert between > 3 * within


# -- what the report writes for the map (report/html.py _write_map) ------------------------


def _report(tmp_path, n_clusters: int = 5, per: int = 30, tree=None):  # type: ignore[no-untyped-def]
    from imgclust.describe import ClusterSummary, rank_members
    from imgclust.report import ReportData

    feats, centroids, labels, distances = _photos(n_clusters=n_clusters, per=per, seed=7)
    layout = fit_layout(feats, centroids, labels, distances)
    coords = layout.place(feats, centroids, labels, distances)
    paths = [str(tmp_path / f"missing-{i:04d}.jpg") for i in range(len(labels))]
    ranks = rank_members(labels, distances)
    clusters = []
    for cid in range(n_clusters):
        idx = np.flatnonzero(labels == cid)
        idx = idx[np.argsort(ranks[idx])]
        tops = ((f"class {cid}, a synonym", 0.5),)
        clusters.append(ClusterSummary(cid, f"name {cid}", tops, idx, distances[idx], int(idx[0])))
    return ReportData(
        paths=paths, labels=labels, ranks=ranks, distances=distances,
        image_top_classes=[(("tabby, tabby cat", 0.75), ("tiger cat", 0.125))] * len(labels),
        clusters=clusters, rejected=[], model="m", features="embedding",
        coords=coords, tree=tree,
    )  # fmt: skip


def _map_data(out):  # type: ignore[no-untyped-def]
    import base64
    import json

    script = (out / "map-data.js").read_text("ascii")
    head, *arrays = script[len("imgclustMap(") :].rsplit(', "', 4)
    meta = json.loads(head)
    cells, labels, ranks, _ = (
        np.frombuffer(base64.b64decode(a.split('"')[0]), "<i4") for a in arrays
    )
    return meta, cells.reshape(-1, 2), labels, ranks


def test_the_map_data_holds_a_cell_per_photo_names_groups_and_hover_text(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from imgclust.config import ReportConfig
    from imgclust.report import write_report

    data = _report(tmp_path)
    write_report(tmp_path / "out", data, ReportConfig(), workers=1)
    meta, cells, labels, ranks = _map_data(tmp_path / "out")
    assert len(np.unique(cells, axis=0)) == len(cells) == meta["n"]
    assert np.array_equal(cells, np.asarray(data.coords).astype(int))  # already settled
    assert np.array_equal(labels, data.labels) and np.array_equal(ranks, data.ranks)
    # one group per cluster by default, named like it; regions that touch differ in colour
    assert [meta["clusters"][str(c)][:3] for c in range(5)] == [
        [f"name {c}", 30, c] for c in range(5)
    ]
    assert all(meta["clusters"][str(c)][3].startswith("#") for c in range(5))  # its shade
    assert [g[0] for g in meta["groups"]] == [f"name {c}" for c in range(5)]
    assert all(g[1].startswith("#") for g in meta["groups"])
    # map-2.js: every member of cluster 2 by rank: its path, rank, classes; its original
    script = (tmp_path / "out" / "map-2.js").read_text("ascii")
    assert script.startswith("imgclustMapInfo(2, ")
    members = data.clusters[2].members
    first = data.paths[int(members[0])]
    assert script.count("missing-") == 2 * len(members)
    assert f"{first.split('/')[-1]}\\nrank 0" in script and "tabby  0.750" in script
    assert "file://" in script


def test_groups_come_from_the_clusterings_tree_and_stale_map_files_go(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from imgclust.config import ReportConfig
    from imgclust.describe import ClusterTree
    from imgclust.report import write_report

    tree = ClusterTree(
        linkage=np.zeros((4, 4)),
        groups=np.array([0, 0, 1, 1, 1]),
        parents=np.full(5, -1),
        names=["cats", "cups"],
    )
    out = tmp_path / "out"
    write_report(out, _report(tmp_path, tree=tree), ReportConfig(), workers=1)
    meta, *_ = _map_data(out)
    assert [g[0] for g in meta["groups"]] == ["cats", "cups"]
    assert [meta["clusters"][str(c)][2] for c in range(5)] == [0, 0, 1, 1, 1]
    # a group one hue, its clusters shades of it (touching ones apart), the groups' hues apart
    hue = [_hls(meta["clusters"][str(c)][3]) for c in range(5)]
    group_hue = [_hls(g[1])[0] for g in meta["groups"]]
    for c, g in enumerate([0, 0, 1, 1, 1]):
        assert hue[c][0] == pytest.approx(group_hue[g], abs=0.02)
    assert abs(group_hue[0] - group_hue[1]) > 0.05
    assert len({meta["clusters"][str(c)][3] for c in (2, 3, 4)}) >= 2
    assert (out / "map-4.js").exists()
    write_report(out, _report(tmp_path, n_clusters=3), ReportConfig(), workers=1)
    assert (out / "map-2.js").exists() and not (out / "map-3.js").exists()
    assert not (out / "map-4.js").exists()


def _hls(hex_colour: str) -> tuple[float, float, float]:
    import colorsys

    return colorsys.rgb_to_hls(*(int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)))


# -- swaps that bring feature neighbours side by side (_refine, _swap) ----------------------


def _penalty(cells: np.ndarray, x: np.ndarray) -> float:
    """Trustworthiness's penalty among these photos: how far beyond each one's 10 nearest
    (cosine) its 10 nearest on the lattice are."""
    m = len(cells)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = xn @ xn.T
    np.fill_diagonal(sim, -np.inf)
    rank = np.empty((m, m))
    rank[np.arange(m)[:, None], np.argsort(-sim, axis=1)] = np.arange(1, m + 1)
    d2 = ((cells[:, None].astype(float) - cells[None]) ** 2).sum(axis=2)
    np.fill_diagonal(d2, np.inf)
    near = np.argsort(d2, axis=1, kind="stable")[:, : min(10, m - 1)]
    return float(np.maximum(np.take_along_axis(rank, near, axis=1) - 10, 0).sum())


def _swap_cost(cells: np.ndarray, x: np.ndarray) -> float:
    """What :func:`layout._swap` lowers, as its docstring defines it: over every two photos on
    neighbouring cells (the 8 around count 1, the 4 two cells away along the axes 1/2), how
    far each is beyond the other's ``_KEPT`` nearest by cosine."""
    m = len(cells)
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    sim = xn @ xn.T
    np.fill_diagonal(sim, -np.inf)
    rank = np.empty((m, m))
    rank[np.arange(m)[:, None], np.argsort(-sim, axis=1, kind="stable")] = np.arange(1, m + 1)
    beyond = np.maximum(rank - lay._KEPT, 0)
    np.fill_diagonal(beyond, 0)
    d2 = ((cells[:, None].astype(float) - cells[None]) ** 2).sum(axis=2)
    near = np.where(d2 <= 2, 1.0, np.where(d2 == 4, 0.5, 0.0))
    np.fill_diagonal(near, 0)
    return float(((beyond + beyond.T) * near).sum() / 2)


@settings(max_examples=25, deadline=None)
@given(m=st.integers(0, 120), n_fixed=st.integers(0, 8), seed=st.integers(0, 2**16))
# Swaps that lower their own cost may still raise trustworthiness's penalty (it takes 2 of
# the 4 cells two away, by index, at full weight): 12 > 11 here, so the small-m check is on
# the swaps' own cost.
@example(m=12, n_fixed=0, seed=91)
def test_swaps_keep_the_cells_and_the_fixed_photos_and_never_cost_more(m, n_fixed, seed) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    cells = lay._disc_cells(m).astype(np.int64)
    t = rng.random(m) * 2 * np.pi  # photos along a ring in feature space, dealt at random
    x = np.c_[np.cos(t), np.sin(t), 0.1 * rng.normal(size=(m, 3))] + 3
    fixed = np.zeros(m, dtype=bool)
    fixed[: min(n_fixed, m)] = True
    out = lay._swap(cells, x, fixed)
    assert sorted(map(tuple, out.tolist())) == sorted(map(tuple, cells.tolist()))
    assert np.array_equal(out[fixed], cells[fixed])
    if m >= 4:
        assert _swap_cost(out, x) <= _swap_cost(cells, x)
    if m >= 60 and n_fixed < m // 2:
        assert _penalty(out, x) < 0.7 * _penalty(cells, x)  # much better than dealt at random


def test_refinement_keeps_neighbours_better_and_stops_at_its_budget(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from sklearn.manifold import trustworthiness

    data = _photos(n_clusters=4, per=120, seed=9)
    layout = fit_layout(*data)
    refined = layout.place(*data)
    monkeypatch.setattr(lay, "_REFINE_PHOTOS", 0)
    dealt = layout.place(*data)
    x = data[0].astype(np.float32)
    gain = trustworthiness(x, refined, n_neighbors=10) - trustworthiness(x, dealt, n_neighbors=10)
    assert gain > 0.003
    for cells in (refined, dealt):  # either way: the same discs, filled, core in the middle
        assert len(np.unique(cells, axis=0)) == len(cells)
    monkeypatch.setattr(lay, "_REFINE_PHOTOS", 200)  # the two smallest clusters' worth, not more
    part = layout.place(*data)
    changed = {int(c) for c in np.unique(data[2][(part != dealt).any(axis=1)])}
    assert 1 <= len(changed) <= 2


def _touching(layout: MapLayout) -> np.ndarray:
    c, r = layout.centres.astype(float), layout.radii.astype(float)
    gap = np.linalg.norm(c[:, None] - c[None], axis=2) - r[:, None] - r[None]
    near = gap <= np.minimum(r[:, None], r[None]) / 3 + lay.GAP + 1
    np.fill_diagonal(near, False)
    return near


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_groups_clusters_are_placed_together(seed: int) -> None:
    from scipy.sparse.csgraph import connected_components

    rng = np.random.default_rng(seed)
    n_groups, per_group, d = 4, 5, 32
    tops = rng.normal(scale=2.0, size=(n_groups, d))  # groups only a little apart
    centroids = np.repeat(tops, per_group, axis=0) + rng.normal(size=(n_groups * per_group, d))
    labels = np.repeat(np.arange(len(centroids)), 30)
    feats = centroids[labels] + rng.normal(scale=0.4, size=(len(labels), d))
    distances = np.linalg.norm(feats - centroids[labels], axis=1)
    groups = np.repeat(np.arange(n_groups), per_group)
    args = (feats.astype(np.float16), centroids.astype(np.float32), labels, distances)
    layout = fit_layout(*args, groups=groups)
    near = _touching(layout)
    for g in range(n_groups):
        idx = np.flatnonzero(groups == g)
        assert connected_components(near[np.ix_(idx, idx)])[0] == 1  # one patch
    cells = layout.place(*args)
    assert len(np.unique(cells, axis=0)) == len(cells)
    # with one group, or groups of one cluster each, the layout is the plain one
    plain = fit_layout(*args)
    for trivial in (np.zeros(len(groups), int), np.arange(len(groups))):
        assert np.array_equal(fit_layout(*args, groups=trivial).centres, plain.centres)


def test_tsne_of_small_sets_stays_finite() -> None:
    # A cluster of 4 coil photos once flew to ~300 and its float32 |a|²+|b|²-2a·b cancelled
    # to 0: inf, then NaN cells, and `imgclust run --algorithm kmeans` crashed on 15 photos.
    # 300 small sets of every scale: 2 of them did that before the fix (no guard counted).
    from imgclust.report.layout import _tsne_batch

    rng = np.random.default_rng(1)
    for _ in range(300):
        n = int(rng.integers(4, 9))
        scale = rng.choice([0.01, 0.1, 1, 10])
        x = (rng.standard_normal((n, 32)) * scale).astype(np.float32)[None]
        y = _tsne_batch(x, np.ones((1, n), dtype=bool), 500)
        assert np.isfinite(y).all(), (n, scale)
