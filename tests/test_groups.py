"""Groups above the clusters, end to end: the exports, the saved state, the index page."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import normalized_mutual_info_score

from imgclust import cluster_folder
from imgclust.state import load_clustering

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="module")
def grouped(demo_photos: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    # 12 scenes x 8 variants cut into 24 clusters: about two clusters a scene.
    out = tmp_path_factory.mktemp("grouped")
    return cluster_folder([demo_photos], out=out, k=24, workers=0)


def test_groups_gather_the_clusters_of_a_scene(grouped) -> None:  # type: ignore[no-untyped-def]
    tree = grouped.clustering.tree
    assert tree is not None and 2 <= tree.n_groups < grouped.k
    scenes = [Path(p).parent.name for p in grouped.paths]
    groups = tree.groups[grouped.labels]
    assert normalized_mutual_info_score(scenes, groups) > 0.75  # bench/names.md measures more
    assert len(set(tree.names)) == tree.n_groups  # no two groups share a name


def test_clusters_table_has_group_and_parent(grouped) -> None:  # type: ignore[no-untyped-def]
    tree = grouped.clustering.tree
    with open(grouped.out_dir / "clusters.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert {"group", "group_name", "parent", "distinctive_classes"} <= set(rows[0])
    for row in rows:
        cid = int(row["cluster"])
        assert int(row["group"]) == tree.groups[cid]
        assert row["group_name"] == tree.names[tree.groups[cid]]
        assert grouped.k <= int(row["parent"]) < 2 * grouped.k - 1
    table = pq.read_table(grouped.out_dir / "clusters.parquet").to_pydict()
    assert table["group"] == [int(r["group"]) for r in rows]
    names = [r["name"] for r in rows]
    assert len(set(names)) == len(names)


def test_the_tree_is_saved_and_read_back(grouped) -> None:  # type: ignore[no-untyped-def]
    saved = load_clustering(grouped.out_dir / ".imgclust")
    tree = grouped.clustering.tree
    assert saved.tree is not None
    np.testing.assert_array_equal(saved.tree.groups, tree.groups)
    np.testing.assert_array_equal(saved.tree.linkage, tree.linkage)
    assert list(saved.tree.names) == list(tree.names)
    assert [c.distinctive for c in saved.named] == [c.distinctive for c in grouped.clustering.named]


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="no chromium (make browser)")
def test_the_index_shows_groups_to_expand_filter_and_sort(grouped) -> None:  # type: ignore[no-untyped-def]
    from playwright.sync_api import expect, sync_playwright

    tree = grouped.clustering.tree
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto((grouped.out_dir / "index.html").as_uri())
        assert page.locator(".group").count() == tree.n_groups
        assert page.locator(".card").count() == grouped.k
        page.click("#collapse-all")
        assert page.locator(".card:visible").count() == 0
        assert page.locator(".group-strip .tile:visible").count() > 0  # a closed group's strip
        page.click("#expand-all")
        # A group's name shows all its clusters; a cluster's own words show that cluster.
        first = tree.names[0]
        page.fill("#filter", first.split(" / ")[0].split(" · ")[0])
        # (the filter runs on a timer after the input: its count line says it has run)
        expect(page.locator("#shown")).to_contain_text(" of ")
        shown = page.eval_on_selector_all(".group:not(.hidden)", "gs => gs.map(g => g.id)")
        assert "group0" in shown
        in_group0 = (tree.groups == 0).sum()
        visible = page.eval_on_selector_all(
            "#group0 .card:not(.hidden)", "cs => cs.map(c => c.dataset.cluster)"
        )
        assert len(visible) == in_group0
        # file names are searchable too
        page.fill("#filter", "coffee-3.jpg")
        expect(page.locator(".card:not(.hidden)")).to_have_count(1)
        cards = page.eval_on_selector_all(
            ".card:not(.hidden)", "cs => cs.map(c => c.dataset.cluster)"
        )
        coffee = grouped.paths.index(
            str(next(p for p in grouped.paths if p.endswith("coffee-3.jpg")))
        )
        assert cards == [str(grouped.labels[coffee])]
        page.fill("#filter", "")
        page.select_option("#sort", "name")
        groups = page.eval_on_selector_all(".group", "gs => gs.map(g => g.dataset.name)")
        assert groups == sorted(groups, key=str)  # localeCompare and sorted agree on these
        inner = page.eval_on_selector_all("#group0 .card", "cs => cs.map(c => c.dataset.name)")
        assert len(inner) == in_group0
        assert not errors, errors
        browser.close()
