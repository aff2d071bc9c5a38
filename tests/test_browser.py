"""The gallery in a real browser: headless Chromium driven by Playwright (no browser download;
the system's Debian ``chromium`` is used). Skipped, with the reason, when either is missing."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from imgclust.config import ReportConfig
from imgclust.describe import ClusterSummary
from imgclust.report import ReportData, write_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (dev extra)")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium: apt-get install -y chromium chromium-driver"
)
SHOTS = os.environ.get("IMGCLUST_SCREENSHOTS")


@pytest.fixture(scope="module")
def report(demo_photos: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ReportData]:
    """A report over the demo photos: 3 clusters, one with more than a member page holds
    (padded with missing files, shown as placeholders)."""
    photos = sorted(str(p) for p in demo_photos.rglob("*.jpg") if p.name != "broken.jpg")
    big = photos + [f"/nonexistent/extra-{i:03d}.jpg" for i in range(150)]  # placeholders
    n = len(big)
    labels = np.where(np.arange(n) < 10, 1, np.where(np.arange(n) < 20, 2, 0))
    rng = np.random.default_rng(0)
    distances = rng.random(n).astype(np.float32)
    outliers = distances > 0.9
    names = ["espresso / cup", "tabby / tiger cat", "space shuttle"]
    clusters = []
    for cid in range(3):
        idx = np.flatnonzero(labels == cid)
        idx = idx[np.argsort(distances[idx], kind="stable")]
        tops = ((f"{names[cid]}, x", 0.5),)
        clusters.append(ClusterSummary(cid, names[cid], tops, idx, distances[idx], int(idx[0])))
    ranks = np.empty(n, np.int64)
    for c in clusters:
        ranks[c.members] = np.arange(c.size)
    duplicate_of = np.full(n, -1)
    duplicate_of[clusters[1].members[[2, 5]]] = clusters[1].members[0]  # 2 collapse under rank 0
    data = ReportData(
        paths=big, labels=labels, ranks=ranks, distances=distances,
        image_top_classes=[(("espresso", 0.9),)] * n, clusters=clusters, rejected=[],
        model="efficientnet_lite0", features="embedding", outliers=outliers,
        coords=np.c_[labels * 10.0, np.zeros(n)] + rng.normal(size=(n, 2)),
        duplicate_of=duplicate_of,
    )  # fmt: skip
    out = tmp_path_factory.mktemp("browser")
    write_report(out, data, ReportConfig(thumb_size=64, clusters_per_page=2, thumbs_per_row=20))
    return out, data


@pytest.fixture(scope="module")
def browser():  # type: ignore[no-untyped-def]
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--allow-file-access-from-files"])
        yield b
        b.close()


def _open(browser, url: str):  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport={"width": 1280, "height": 800}, accept_downloads=True)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(url)
    page.wait_for_load_state("load")
    return page, errors


def _shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    if SHOTS:
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=False)


def test_index_loads_filters_sorts_and_downloads(browser, report) -> None:  # type: ignore[no-untyped-def]
    out, data = report
    page, errors = _open(browser, (out / "index.html").as_uri())
    assert page.locator(".card").count() == 3
    page.fill("#filter", "tiger")
    page.wait_for_timeout(50)
    visible = page.locator(".card:not(.hidden)")
    assert visible.count() == 1 and "tabby" in visible.inner_text()
    _shot(page, "index-filtered")
    page.fill("#filter", "")
    page.select_option("#sort", "name")
    order = page.eval_on_selector_all(".card", "cs => cs.map(c => c.dataset.name)")
    assert order == sorted(names for names in order)
    page.check(".pick-cluster[data-cluster='1']")
    assert page.inner_text("#n-selected") == "10 selected"
    with page.expect_download() as dl:
        page.click("#download-txt")
    lines = Path(dl.value.path()).read_text("utf-8").split()
    assert sorted(lines) == sorted(data.paths[i] for i in data.clusters[1].members)
    _shot(page, "index-selected")
    assert errors == []


def test_anchor_lands_on_its_row_and_thumbnails_load(browser, report) -> None:  # type: ignore[no-untyped-def]
    out, _ = report
    page, errors = _open(browser, (out / "clusters-002.html").as_uri() + "#row2")
    top = page.evaluate("document.getElementById('row2').getBoundingClientRect().top")
    assert 0 <= top < 120  # just under the sticky header
    page.evaluate("document.querySelectorAll('img').forEach(i => i.loading = 'eager')")
    page.wait_for_function("[...document.images].every(i => i.complete)")
    sizes = page.eval_on_selector_all("img", "is => is.map(i => i.naturalWidth)")
    assert sizes and all(w > 0 for w in sizes)
    _shot(page, "clusters-row2")
    assert errors == []


def test_big_cluster_is_paged_with_outlier_tail_and_selection(browser, report) -> None:  # type: ignore[no-untyped-def]
    out, data = report
    assert (out / "cluster-0-2.html").exists() and not (out / "cluster-0-3.html").exists()
    page, errors = _open(browser, (out / "cluster-0-2.html").as_uri())
    assert page.locator(".tile").count() == data.clusters[0].size - 200
    assert page.locator(".tile.outlier").count() == int(
        data.outliers[data.clusters[0].members[200:]].sum()
    )
    assert page.locator(".tail-mark").count() == 1
    page.click("#select-page")
    with page.expect_download() as dl:
        page.click("#download-csv")
    rows = Path(dl.value.path()).read_text("utf-8").splitlines()
    assert rows[0] == "path,cluster" and len(rows) == 1 + data.clusters[0].size - 200
    page.evaluate("document.getElementById('outliers').scrollIntoView()")
    _shot(page, "members-outlier-tail")
    assert errors == []


def test_map_draws_pans_zooms_and_click_opens_the_image(browser, report) -> None:  # type: ignore[no-untyped-def]
    out, data = report
    page, errors = _open(browser, (out / "map.html").as_uri())
    page.wait_for_function("window.imgclustMapDrawn >= 1")
    scale = page.evaluate("imgclustMapApi.view.scale")
    page.mouse.move(640, 400)
    page.mouse.wheel(0, -400)
    page.wait_for_timeout(50)
    assert page.evaluate("imgclustMapApi.view.scale") > scale
    page.click("#map-reset")
    # click on the screen position of image 5 (cluster 1)
    x, y = page.evaluate(
        """([px, py]) => { const v = imgclustMapApi.view;
        const r = document.getElementById('map').getBoundingClientRect();
        return [px * v.scale + v.x + r.left, py * v.scale + v.y + r.top]; }""",
        [float(c) for c in data.coords[5]],
    )
    page.mouse.click(x, y)
    link = page.locator("#map-info a")
    href = link.get_attribute("href") or ""
    assert href.startswith("cluster-1-1.html#row1-")
    _shot(page, "map-clicked")
    link.click()
    page.wait_for_load_state("load")
    anchor = href.split("#")[1]
    assert page.evaluate(f"document.getElementById('{anchor}').getBoundingClientRect().top") >= 0
    assert errors == []


def test_near_duplicates_collapse_into_a_tile_whose_badge_expands(browser, report) -> None:  # type: ignore[no-untyped-def]
    out, data = report
    members = data.clusters[1].members
    page, errors = _open(browser, (out / "cluster-1-1.html").as_uri())
    assert page.locator(".tile").count() == len(members)  # all there, two collapsed
    assert page.locator(".tile:visible").count() == len(members) - 2
    badge = page.locator("#row1-0 .dup-badge")
    assert badge.inner_text() == "+2" and badge.get_attribute("aria-expanded") == "false"
    _shot(page, "members-collapsed")
    badge.click()
    assert page.locator(".tile:visible").count() == len(members)
    assert page.locator(".tile.dup:visible").count() == 2
    order = page.eval_on_selector_all(".tile:visible", "ts => ts.map(t => t.id)")
    assert order[:3] == ["row1-0", "row1-2", "row1-5"]  # the group sits together, leader first
    assert badge.get_attribute("aria-expanded") == "true"
    _shot(page, "members-expanded")
    badge.click()
    assert page.locator(".tile:visible").count() == len(members) - 2
    # a link to a collapsed image (from the map, say) opens its group
    page.goto((out / "cluster-1-1.html").as_uri() + "#row1-5")
    page.wait_for_load_state("load")
    assert page.locator("#row1-5").is_visible()
    assert errors == []


def test_map_draws_thumbnails_when_few_points_are_in_view(browser, report) -> None:  # type: ignore[no-untyped-def]
    out, data = report
    page, errors = _open(browser, (out / "map.html").as_uri())
    page.wait_for_function("imgclustMapApi.stats.thumbsDrawn >= 20", timeout=20_000)
    stats = page.evaluate("imgclustMapApi.stats")
    assert stats["maxLoading"] <= 12  # the cap on images in flight
    n_real = sum(1 for p in data.paths if Path(p).exists())
    assert stats["thumbsDrawn"] <= n_real  # placeholders (no thumbnail) stay dots
    _shot(page, "map-thumbnails")
    # zoom into cluster 2: fewer points in view, bigger thumbnails, still drawn from cache
    x, y = page.evaluate(
        """() => { const v = imgclustMapApi.view;
        const r = document.getElementById('map').getBoundingClientRect();
        return [20 * v.scale + v.x + r.left, v.y + r.top]; }"""
    )
    page.mouse.move(x, y)
    for _ in range(4):
        page.mouse.wheel(0, -300)
        page.wait_for_timeout(60)
    page.wait_for_function("imgclustMapApi.stats.thumbsDrawn >= 8")
    _shot(page, "map-thumbnails-zoomed")
    assert errors == []


def test_map_draws_thumbnails_when_the_members_loader_arrives_late(
    browser, report, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    """The map's first frame may come before gallery.js has run (seen on a slow machine);
    thumbnails must still appear once it has. Here gallery.js is held back until a frame is
    drawn."""
    out, _ = report
    late = tmp_path / "late"
    shutil.copytree(out, late)
    html = (late / "map.html").read_text()
    held = """<script>(function hold() {
      if (!window.imgclustMapDrawn) { requestAnimationFrame(hold); return; }
      var s = document.createElement("script"); s.src = "gallery.js"; document.body.append(s);
    }());</script>"""
    assert '<script src="gallery.js"></script>' in html
    (late / "map.html").write_text(html.replace('<script src="gallery.js"></script>', held))
    page, errors = _open(browser, (late / "map.html").as_uri())
    page.wait_for_function("imgclustMapApi.stats.thumbsDrawn >= 20", timeout=20_000)
    assert errors == []
